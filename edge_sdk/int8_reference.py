"""The int8 numpy forward: the exact arithmetic the native core implements.

Activations are quantized per token (symmetric, `amax / 127`, round half to
even); each product accumulates int8 x int8 in int32 per weight group, then
sums the groups in float32 in order, `sumf += float(acc_g) * wscale[r, g]`, and
finally multiplies by the token's scale. Everything between the products
(norms, RoPE, attention, SwiGLU) is the float reference's code.

numpy has no fast int8 matrix product, so the integer sums are computed with
float32 BLAS on chunks of at most 1024 inputs: |sum| <= 1024 * 127 * 127 <
2**24, so each chunk sum is an exact integer in float32, and chunks are added
in int64. The result equals int32 accumulation bit for bit.

Example::

    model = Int8Forward(cfg, quantize_weights(cfg, w, QuantConfig()), ctx=256)
    logits = model.forward(np.array([1, 2, 3]), pos=0)
"""

from __future__ import annotations

import numpy as np

from .config import ModelConfig
from .quantize import QMAX, QMat, QWeights
from .reference import FloatForward, rmsnorm

EXACT_CHUNK = 1024  # inputs per float32 partial sum that stays exact


def quantize_activations(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8: returns q (T, K) int8 and scale (T,) float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    amax = np.abs(x).max(axis=-1)
    nz = amax > 0
    scale = np.where(nz, amax / np.float32(QMAX), np.float32(0)).astype(np.float32)
    inv = np.divide(np.float32(QMAX), amax, out=np.zeros_like(amax), where=nz)
    q = np.clip(np.rint(x * inv[:, None]), -QMAX, QMAX).astype(np.int8)
    return q, scale


def int_dot_groups(xq: np.ndarray, m: QMat) -> np.ndarray:
    """Exact int32 group sums: (n_groups, T, rows) int64 of sum_k xq[t, k] * q[r, k] per group."""
    T, K = xq.shape
    rows = m.q.shape[0]
    ng = m.n_groups
    g = K // ng
    xf = xq.astype(np.float32).reshape(T, ng, g).transpose(1, 0, 2)  # (ng, T, g)
    wf = m.q_as_f32().reshape(rows, ng, g).transpose(1, 2, 0)  # (ng, g, rows)
    out = np.zeros((ng, T, rows), dtype=np.int64)
    for c in range(0, g, EXACT_CHUNK):
        out += np.matmul(xf[:, :, c : c + EXACT_CHUNK], wf[:, c : c + EXACT_CHUNK]).astype(np.int64)
    return out


def qmatmul(xq: np.ndarray, xs: np.ndarray, m: QMat) -> np.ndarray:
    """y (T, rows) float32 = the int8 product of quantized activations with an int8 matrix."""
    acc = int_dot_groups(xq, m)  # (ng, T, rows)
    sumf = np.zeros(acc.shape[1:], dtype=np.float32)
    for g in range(acc.shape[0]):
        sumf = sumf + acc[g].astype(np.float32) * m.scale[:, g][None, :]
    return sumf * xs[:, None]


def int8_linear(x: np.ndarray, m: QMat) -> np.ndarray:
    xq, xs = quantize_activations(x)
    return qmatmul(xq, xs, m)


def dequantize_rows(m: QMat, rows: np.ndarray) -> np.ndarray:
    """Embedding lookup: float32 (len(rows), cols) of the selected int8 rows times their scales."""
    q = m.q[rows]
    n, cols = q.shape
    g = cols // m.n_groups
    return (q.reshape(n, m.n_groups, g).astype(np.float32) * m.scale[rows][..., None]).reshape(n, cols)


class Int8Forward(FloatForward):
    """The int8 model with its KV cache; same interface as FloatForward."""

    def __init__(self, cfg: ModelConfig, weights: QWeights, ctx: int | None = None, kv_dtype: str = "f32") -> None:
        super().__init__(cfg, weights, ctx, kv_dtype)  # type: ignore[arg-type]

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        return dequantize_rows(self.w.tok_embd, tokens)

    def head(self, x: np.ndarray) -> np.ndarray:
        return int8_linear(rmsnorm(x, self.w.out_norm, self.cfg.rms_eps), self.w.head)

    def forward(self, tokens: np.ndarray, pos: int, last_only: bool = False) -> np.ndarray:
        return self._forward(tokens, pos, last_only, int8_linear)
