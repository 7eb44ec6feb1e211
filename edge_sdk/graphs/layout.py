"""The layout of `weights.bin`: which tensors, in which order, at which offsets, from the configs alone.

`flatten_weights` names every tensor of a `QWeights` in file order; the
package writer (`export.package.write_weights_bin`) stores them back to back,
each at a multiple of `ALIGN`, and `unflatten_weights` rebuilds a `QWeights`
from such a table. `weight_table` reproduces the offsets without any weights:
it runs `flatten_weights` over zero-stride placeholder arrays and applies the
same alignment rule. Graph records can then name byte ranges before a file
exists; `convert` checks the table against the written manifest.

Example::

    table = weight_table(cfg, QuantConfig())
    table["layers.0.wq.q"]   # TensorRef(name='layers.0.wq.q', shape=(576, 576), dtype='int8', offset=..., ...)
"""

from __future__ import annotations

import numpy as np

from ..model.config import ModelConfig, QuantConfig
from ..model.quantize import QLayer, QMat, QWeights
from .spec import TensorRef

ALIGN = 64  # every tensor of weights.bin starts at a multiple of this (cache lines, SIMD loads, mmap)
WEIGHTS = "weights.bin"
QMAT_FIELDS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


def flatten_weights(w: QWeights) -> dict[str, np.ndarray]:
    """Tensor name -> array, in file order (embedding, layers, norm, head)."""
    out: dict[str, np.ndarray] = {"tok_embd.q": w.tok_embd.q, "tok_embd.scale": w.tok_embd.scale}
    for i, layer in enumerate(w.layers):
        out[f"layers.{i}.attn_norm"] = layer.attn_norm
        out[f"layers.{i}.ffn_norm"] = layer.ffn_norm
        for name in QMAT_FIELDS:
            m = getattr(layer, name)
            out[f"layers.{i}.{name}.q"] = m.q
            out[f"layers.{i}.{name}.scale"] = m.scale
    out["out_norm"] = w.out_norm
    if w.output is not None:
        out["output.q"], out["output.scale"] = w.output.q, w.output.scale
    return out


def unflatten_weights(t: dict[str, np.ndarray], cfg: ModelConfig, q: QuantConfig) -> QWeights:
    def qm(prefix: str) -> QMat:
        return QMat(q=t[f"{prefix}.q"], scale=t[f"{prefix}.scale"], group_size=q.group_size)

    layers = [
        QLayer(attn_norm=t[f"layers.{i}.attn_norm"], ffn_norm=t[f"layers.{i}.ffn_norm"],
               **{n: qm(f"layers.{i}.{n}") for n in QMAT_FIELDS})
        for i in range(cfg.n_layers)
    ]
    output = qm("output") if "output.q" in t else None
    return QWeights(tok_embd=qm("tok_embd"), layers=layers, out_norm=t["out_norm"], output=output)


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
