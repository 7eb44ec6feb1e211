"""Float reductions in the native core's fixed order, for the int8 reference.

The C core sums every float reduction (RMSNorm's sum of squares, attention
dot products, the softmax sum) in one order: element i goes to lane i % 16 in
index order, then the 16 lanes fold 8, 4, 2, 1; it computes `exp` with its own
`es_expf` (native/src/es_math.h), and accumulates attention outputs position
by position. Doing the same here makes the numpy int8 reference equal the core
bit for bit instead of to float rounding, which matters because int8
re-quantization turns a one-ulp difference into a whole quantization step
and, over 30 layers, into different greedy tokens at near ties.

Example::

    canonical_sum(np.arange(40, dtype=np.float32))   # 780.0, summed as the core sums
"""

from __future__ import annotations

import numpy as np

F = np.float32
LANES = 16


def canonical_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis: lane i % 16 in index order, then fold 8, 4, 2, 1."""
    a = np.asarray(a, dtype=F)
    n = a.shape[-1]
    pad = (-n) % LANES
    if pad:
        a = np.concatenate([a, np.zeros(a.shape[:-1] + (pad,), F)], axis=-1)
    a = a.reshape(a.shape[:-1] + (-1, LANES))
    lanes = a[..., 0, :].copy()
    for j in range(1, a.shape[-2]):
        lanes = lanes + a[..., j, :]
    for w in (8, 4, 2, 1):
        lanes = lanes[..., :w] + lanes[..., w : 2 * w]
    return lanes[..., 0]


def es_expf(x: np.ndarray) -> np.ndarray:
    """The core's exp: Cephes-style range reduction and polynomial, step by step in float32."""
    x = np.asarray(x, dtype=F)
    under = x < F(-87.33654)
    x = np.maximum(np.minimum(x, F(88.0)), F(-87.33654))
    n = np.rint(x * F(1.44269504088896341))
    r = x - n * F(0.693359375)
    r = r - n * F(-2.12194440e-4)
    z = r * r
    y = np.full_like(x, F(1.9875691500e-4))
    for p in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        y = y * r + F(p)
    y = y * z + r
    y = y + F(1.0)
    p2 = ((n.astype(np.int32) + 127) << 23).view(F)
    return np.where(under, F(0.0), y * p2)


def rmsnorm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """x (T, dim): `(x * (1 / sqrt(ss / n + eps))) * w` with the canonical sum of squares."""
    n = x.shape[-1]
    ss = canonical_sum(x * x)[..., None]
    inv = F(1.0) / np.sqrt(ss / F(n) + F(eps))
    return (x * inv) * w


def silu(g: np.ndarray) -> np.ndarray:
    return g / (F(1.0) + es_expf(-g))


def attention(cfg, q: np.ndarray, cache, layer: int, pos: int) -> np.ndarray:
    """Causal GQA like the core: canonical dot products, es_expf softmax, outputs summed position by position.

    An int8 cache is read as the core reads it: the dot with the integer key row times the row's scale, then
    times 1/sqrt(head_dim); each probability times its value row's scale, then times the integer values.
    """
    T = q.shape[0]
    end = pos + T
    rep = cfg.n_heads // cfg.n_kv_heads
    k = cache.k[layer, :, :end].astype(F)  # (kvh, end, hd); int8: the integers
    v = cache.v[layer, :, :end].astype(F)
    kh = np.repeat(k, rep, axis=0)  # (n_heads, end, hd)
    vh = np.repeat(v, rep, axis=0)
    qh = q.transpose(1, 0, 2)  # (n_heads, T, hd)
    scale = F(1.0) / np.sqrt(F(cfg.head_dim))
    scores = canonical_sum(qh[:, :, None, :] * kh[:, None, :, :])  # (n_heads, T, end)
    int8 = getattr(cache, "k_scale", None) is not None
    if int8:
        scores = scores * np.repeat(cache.k_scale[layer, :, :end], rep, axis=0)[:, None, :]
    scores = scores * scale
    valid = np.arange(end)[None, :] <= (pos + np.arange(T))[:, None]  # (T, end)
    scores = np.where(valid[None], scores, F(-np.inf))
    e = es_expf(scores - scores.max(axis=-1, keepdims=True))
    p = e / canonical_sum(e)[..., None]
    if int8:
        p = p * np.repeat(cache.v_scale[layer, :, :end], rep, axis=0)[:, None, :]
    out = np.zeros((cfg.n_heads, T, cfg.head_dim), F)
    for j in range(end):  # the core adds position j's value vector after position j-1's
        out = out + p[:, :, j : j + 1] * vh[:, None, j, :]
    return out.transpose(1, 0, 2).reshape(T, cfg.q_dim)
