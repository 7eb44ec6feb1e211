"""Where each weight tensor sits in `weights.bin`, computed from the configs alone.

The package writer (`package.write_weights_bin`) stores the tensors of
`package.flatten_weights` back to back, each at a multiple of `package.ALIGN`.
This module reproduces that table without any weights: it runs
`flatten_weights` over zero-stride placeholder arrays (so the order and the
names come from the package code itself) and applies the same alignment
rule. Graph records can then name byte ranges before a file exists; `convert`
checks the table against the written manifest.

Example::

    table = weight_table(cfg, QuantConfig())
    table["layers.0.wq.q"]   # TensorRef(name='layers.0.wq.q', shape=(576, 576), dtype='int8', offset=..., ...)
"""

from __future__ import annotations

import numpy as np

from ..model.config import ModelConfig, QuantConfig
from ..export.package import ALIGN, WEIGHTS, flatten_weights
from ..model.quantize import QLayer, QMat, QWeights
from .spec import TensorRef


def _placeholder(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)  # no memory behind it


def _qmat(rows: int, cols: int, q: QuantConfig) -> QMat:
    n_groups = 1 if q.group_size == 0 else cols // q.group_size
    return QMat(q=_placeholder((rows, cols), np.int8), scale=_placeholder((rows, n_groups), np.float32),
                group_size=q.group_size, act_block=q.act_block)


def placeholder_weights(cfg: ModelConfig, q: QuantConfig) -> QWeights:
    """A QWeights of the right shapes and dtypes whose arrays hold no memory."""
    d, f = cfg.dim, cfg.ffn_dim
    layers = [
        QLayer(attn_norm=_placeholder((d,), np.float32), wq=_qmat(cfg.q_dim, d, q), wk=_qmat(cfg.kv_dim, d, q),
               wv=_qmat(cfg.kv_dim, d, q), wo=_qmat(d, cfg.q_dim, q), ffn_norm=_placeholder((d,), np.float32),
               w_gate=_qmat(f, d, q), w_up=_qmat(f, d, q), w_down=_qmat(d, f, q))
        for _ in range(cfg.n_layers)
    ]
    output = None if cfg.tied_embeddings else _qmat(cfg.vocab_size, d, q)
    return QWeights(tok_embd=_qmat(cfg.vocab_size, d, q), layers=layers, out_norm=_placeholder((d,), np.float32),
                    output=output)


def weight_table(cfg: ModelConfig, q: QuantConfig) -> dict[str, TensorRef]:
    """Tensor name -> TensorRef in `weights.bin`, in file order."""
    table: dict[str, TensorRef] = {}
    offset = 0
    for name, arr in flatten_weights(placeholder_weights(cfg, q)).items():
        offset += (-offset) % ALIGN
        nbytes = int(np.prod(arr.shape)) * arr.dtype.itemsize
        table[name] = TensorRef(name=name, shape=tuple(arr.shape), dtype=arr.dtype.name, offset=offset, nbytes=nbytes,
                                file=WEIGHTS)
        offset += nbytes
    return table
