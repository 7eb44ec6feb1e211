"""Quantize float weights to symmetric int8 with float32 scales.

Each matrix W (rows, cols) becomes `QMat(q, scale)`: `q` int8 in [-127, 127]
and one float32 scale per output row (`group_size=0`) or per group of
`group_size` consecutive input values, so that `W ~= q * scale` (the scale
broadcast over its group). Scales are `max|w| / 127` over the row or group:
symmetric quantization keeps the zero point at 0, which lets the products run
as plain int8 x int8 -> int32 dot products.

Example::

    qm = quantize_matrix(w, QuantConfig(group_size=64))
    w_hat = dequantize(qm)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import ModelConfig, QuantConfig
from ..errors import UnsupportedModelError
from .weights import FloatWeights

QMAX = 127


@dataclass
class QMat:
    q: np.ndarray  # (rows, cols) int8
    scale: np.ndarray  # (rows, n_groups) float32; n_groups = 1 when per row
    group_size: int  # 0 = per row
    act_block: int = 32  # activation values per dynamic scale in products with this matrix
    _f32: np.ndarray | None = field(default=None, repr=False, compare=False)  # cached float copy of q

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape  # type: ignore[return-value]

    @property
    def n_groups(self) -> int:
        return self.scale.shape[1]

    @property
    def nbytes(self) -> int:
        return self.q.nbytes + self.scale.nbytes

    def q_as_f32(self) -> np.ndarray:
        """q as float32 (exact), kept once computed: the numpy int8 path multiplies in float."""
        if self._f32 is None:
            self._f32 = self.q.astype(np.float32)
        return self._f32


@dataclass
class QLayer:
    attn_norm: np.ndarray  # (dim,) float32
    wq: QMat  # (n_heads * head_dim, dim)
    wk: QMat  # (n_kv_heads * head_dim, dim)
    wv: QMat  # (n_kv_heads * head_dim, dim)
    wo: QMat  # (dim, n_heads * head_dim)
    ffn_norm: np.ndarray  # (dim,) float32
    w_gate: QMat  # (ffn_dim, dim)
    w_up: QMat  # (ffn_dim, dim)
    w_down: QMat  # (dim, ffn_dim)


@dataclass
class QWeights:
    tok_embd: QMat  # (vocab_size, dim)
    layers: list[QLayer]
    out_norm: np.ndarray  # (dim,) float32
    output: QMat | None  # (vocab_size, dim); None when tied to tok_embd

    @property
    def head(self) -> QMat:
        return self.tok_embd if self.output is None else self.output

    @property
    def nbytes(self) -> int:
        total = self.tok_embd.nbytes + self.out_norm.nbytes + (self.output.nbytes if self.output else 0)
        for layer in self.layers:
            total += layer.attn_norm.nbytes + layer.ffn_norm.nbytes
            total += sum(getattr(layer, n).nbytes for n in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"))
        return total


def quantize_matrix(w: np.ndarray, qc: QuantConfig) -> QMat:
    """Symmetric int8 quantization of w (rows, cols) per row or per group of input values."""
    w = np.asarray(w, dtype=np.float32)
    rows, cols = w.shape
    g = qc.group_size or cols
    if cols % g or cols % qc.act_block:
        raise UnsupportedModelError(
            f"a {w.shape} matrix cannot be quantized with group_size={qc.group_size}, act_block={qc.act_block}: "
            f"both must divide its {cols} input columns"
        )
    wg = w.reshape(rows, cols // g, g)
    amax = np.abs(wg).max(axis=-1)  # (rows, n_groups)
    scale = (amax / np.float32(QMAX)).astype(np.float32)
    inv = np.divide(np.float32(1.0), scale, out=np.zeros_like(scale), where=scale > 0)
    q = np.clip(np.rint(wg * inv[..., None]), -QMAX, QMAX).astype(np.int8).reshape(rows, cols)
    return QMat(q=q, scale=scale, group_size=qc.group_size, act_block=qc.act_block)


def quantize_last_axis(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 over the last axis, as the native core quantizes activations (and int8 KV rows):
    q (..., n) int8 and scale (...) float32, scale = amax / 127, q = rint(x * (127 / amax)) in [-127, 127]
    (round half to even); an all-zero row gets scale 0 and q 0."""
    x = np.asarray(x, dtype=np.float32)
    amax = np.abs(x).max(axis=-1)
    nz = amax > 0
    scale = np.where(nz, amax / np.float32(QMAX), np.float32(0)).astype(np.float32)
    inv = np.divide(np.float32(QMAX), amax, out=np.zeros_like(amax), where=nz)
    q = np.clip(np.rint(x * inv[..., None]), -QMAX, QMAX).astype(np.int8)
    return q, scale


def dequantize(m: QMat) -> np.ndarray:
    rows, cols = m.shape
    g = cols // m.n_groups
    return (m.q.reshape(rows, m.n_groups, g).astype(np.float32) * m.scale[..., None]).reshape(rows, cols)


def quantize_weights(cfg: ModelConfig, w: FloatWeights, qc: QuantConfig, quiet: bool = True) -> QWeights:
    """Quantize every linear layer, the embedding table and the head (tied heads share the table).

    `quiet=False` shows progress on standard error (`progress.Progress`)."""
    from ..progress import Progress

    layers = []
    with Progress("quantizing to int8", len(w.layers) + 2, enabled=False if quiet else None) as p:
        tok_embd = quantize_matrix(w.tok_embd, qc)
        p.update(1)
        for lw in w.layers:
            layers.append(QLayer(
                attn_norm=np.ascontiguousarray(lw.attn_norm, dtype=np.float32),
                wq=quantize_matrix(lw.wq, qc),
                wk=quantize_matrix(lw.wk, qc),
                wv=quantize_matrix(lw.wv, qc),
                wo=quantize_matrix(lw.wo, qc),
                ffn_norm=np.ascontiguousarray(lw.ffn_norm, dtype=np.float32),
                w_gate=quantize_matrix(lw.w_gate, qc),
                w_up=quantize_matrix(lw.w_up, qc),
                w_down=quantize_matrix(lw.w_down, qc),
            ))
            p.update(1)
        output = None if w.output is None else quantize_matrix(w.output, qc)
        p.update(1)
    return QWeights(
        tok_embd=tok_embd,
        layers=layers,
        out_norm=np.ascontiguousarray(w.out_norm, dtype=np.float32),
        output=output,
    )
