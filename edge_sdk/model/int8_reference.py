"""The int8 numpy forward: the exact arithmetic the native core implements.

Activations are quantized per token, with one symmetric scale per block of
`act_block` values (`amax / 127`, round half to even). A product accumulates
int8 x int8 in int32 over each block, then sums the blocks in float32 in
order: `sumf += (float(acc_b) * xscale[t, b]) * wscale[r, g(b)]`, where g(b)
is the weight group holding block b (always 0 for per-row scales). Between the products
(norms, RoPE, attention, SwiGLU) it runs the float reference's layer code with
the native core's float operations (`canonical.py`), so the two are bit-exact.

numpy has no fast int8 matrix product, so the block sums are computed with
float32 BLAS: |sum| <= act_block * 127 * 127 < 2**24 for blocks of up to 1040
values, so every block sum is an exact integer in float32, equal to int32
accumulation bit for bit.

Example::

    model = Int8Forward(cfg, quantize_weights(cfg, w, QuantConfig()), ctx=256)
    logits = model.forward(np.array([1, 2, 3]), pos=0)
"""

from __future__ import annotations

import numpy as np

from . import canonical
from .config import ModelConfig
from .quantize import QMat, QWeights, quantize_last_axis
from .reference import FloatForward


class CoreOps:
    """The native core's float operations (fixed reduction order, its exp): see canonical.py."""

    rmsnorm = staticmethod(canonical.rmsnorm)
    attention = staticmethod(canonical.attention)
    silu = staticmethod(canonical.silu)


def quantize_activations(x: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per block of each row: q (T, K) int8 and scale (T, K // block) float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    T, K = x.shape
    q, scale = quantize_last_axis(x.reshape(T, K // block, block))  # scale (T, nb)
    return q.reshape(T, K), scale


def block_sums(xq: np.ndarray, m: QMat) -> np.ndarray:
    """Exact integer block sums (nb, T, rows) float32 of sum_k xq[t, k] * q[r, k] within each block."""
    T, K = xq.shape
    rows = m.q.shape[0]
    b = m.act_block
    nb = K // b
    xf = xq.astype(np.float32).reshape(T, nb, b).transpose(1, 0, 2)  # (nb, T, b)
    wf = m.q_as_f32().reshape(rows, nb, b).transpose(1, 2, 0)  # (nb, b, rows)
    return np.matmul(xf, wf)


def qmatmul(xq: np.ndarray, xs: np.ndarray, m: QMat) -> np.ndarray:
    """y (T, rows) float32: the int8 product of block-quantized activations with an int8 matrix."""
    acc = block_sums(xq, m)  # (nb, T, rows)
    nb = acc.shape[0]
    blocks_per_group = nb // m.n_groups
    sumf = np.zeros(acc.shape[1:], dtype=np.float32)
    for b in range(nb):
        sumf = sumf + (acc[b] * xs[:, b : b + 1]) * m.scale[:, b // blocks_per_group][None, :]
    return sumf


def int8_linear(x: np.ndarray, m: QMat) -> np.ndarray:
    xq, xs = quantize_activations(x, m.act_block)
    return qmatmul(xq, xs, m)


def dequantize_rows(m: QMat, rows: np.ndarray) -> np.ndarray:
    """Embedding lookup: float32 (len(rows), cols) of the selected int8 rows times their scales."""
    q = m.q[rows]
    n, cols = q.shape
    g = cols // m.n_groups
    return (q.reshape(n, m.n_groups, g).astype(np.float32) * m.scale[rows][..., None]).reshape(n, cols)


class Int8Forward(FloatForward):
    """The int8 model with its KV cache; same interface as FloatForward.

    Between the products it uses the native core's float arithmetic (CoreOps), so
    the two agree bit for bit.
    """

    ops = CoreOps

    def __init__(self, cfg: ModelConfig, weights: QWeights, ctx: int | None = None, kv_dtype: str = "f32") -> None:
        super().__init__(cfg, weights, ctx, kv_dtype)  # type: ignore[arg-type]

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        return dequantize_rows(self.w.tok_embd, tokens)

    def head(self, x: np.ndarray) -> np.ndarray:
        return int8_linear(self.ops.rmsnorm(x, self.w.out_norm, self.cfg.rms_eps), self.w.head)

    def forward(self, tokens: np.ndarray, pos: int, last_only: bool = False) -> np.ndarray:
        return self._forward(tokens, pos, last_only, int8_linear)
