"""The float32 numpy forward pass: the oracle every backend is checked against.

One decoder layer is RMSNorm -> Q/K/V projections -> RoPE -> grouped-query
attention over a KV cache -> output projection -> residual -> RMSNorm ->
SwiGLU MLP -> residual. Linear layers are a parameter (`Linear`), so the int8
reference (`int8_reference.py`) reuses everything here and swaps only the
matrix products, the embedding lookup and the head.

Example::

    model = FloatForward(cfg, weights, ctx=256)
    logits = model.forward(np.array([1, 2, 3]), pos=0)   # (3, vocab)
    logits = model.forward(np.array([4]), pos=3)          # decode with the cache
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .config import ModelConfig
from ..errors import ContextOverflowError, InvalidArgumentError
from .kv_cache import KVCache
from .rope import apply_rope, rope_table
from .weights import FloatWeights

Linear = Callable[[np.ndarray, Any], np.ndarray]  # (x (T, in), weight) -> (T, out) float32


def rmsnorm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """x (T, dim) * w / sqrt(mean(x^2) + eps), in float32."""
    ms = np.mean(x * x, axis=-1, keepdims=True, dtype=np.float32)
    return (x * (np.float32(1.0) / np.sqrt(ms + np.float32(eps)))) * w


def silu(x: np.ndarray) -> np.ndarray:
    return x / (np.float32(1.0) + np.exp(-x))


def attention(cfg: ModelConfig, q: np.ndarray, cache: KVCache, layer: int, pos: int) -> np.ndarray:
    """Causal GQA for q (T, n_heads, head_dim) at positions pos..pos+T-1; returns (T, q_dim)."""
    T = q.shape[0]
    n_rep = cfg.n_heads // cfg.n_kv_heads
    end = pos + T
    k, v = cache.read(layer, end)  # (n_kv_heads, end, head_dim)
    qh = q.reshape(T, cfg.n_kv_heads, n_rep, cfg.head_dim).transpose(1, 2, 0, 3)  # (kvh, rep, T, hd)
    scores = np.matmul(qh, k[:, None].swapaxes(-1, -2)) * np.float32(1.0 / np.sqrt(cfg.head_dim))  # (kvh, rep, T, end)
    causal = np.arange(end)[None, :] > (pos + np.arange(T))[:, None]  # (T, end)
    scores = np.where(causal, np.float32(-np.inf), scores)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs = scores / scores.sum(axis=-1, keepdims=True)
    out = np.matmul(probs, v[:, None])  # (kvh, rep, T, hd)
    return out.transpose(2, 0, 1, 3).reshape(T, cfg.q_dim).astype(np.float32)


class FloatOps:
    """The float operations between the products; the int8 reference swaps in the core's (canonical.py)."""

    rmsnorm = staticmethod(rmsnorm)
    attention = staticmethod(attention)
    silu = staticmethod(silu)


def layer_forward(
    cfg: ModelConfig, lw: Any, x: np.ndarray, cache: KVCache, layer: int, pos: int,
    cos: np.ndarray, sin: np.ndarray, linear: Linear, ops: type = FloatOps,
) -> np.ndarray:
    """One decoder layer on x (T, dim); writes K/V for positions pos.. into the cache."""
    T = x.shape[0]
    xn = ops.rmsnorm(x, lw.attn_norm, cfg.rms_eps)
    q = linear(xn, lw.wq).reshape(T, cfg.n_heads, cfg.head_dim)
    k = linear(xn, lw.wk).reshape(T, cfg.n_kv_heads, cfg.head_dim)
    v = linear(xn, lw.wv).reshape(T, cfg.n_kv_heads, cfg.head_dim)
    c, s = cos[pos : pos + T], sin[pos : pos + T]
    q, k = apply_rope(q, c, s), apply_rope(k, c, s)
    cache.store(layer, pos, k, v)
    x = x + linear(ops.attention(cfg, q, cache, layer, pos), lw.wo)
    xn = ops.rmsnorm(x, lw.ffn_norm, cfg.rms_eps)
    h = ops.silu(linear(xn, lw.w_gate)) * linear(xn, lw.w_up)
    return x + linear(h, lw.w_down)


def float_linear(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x @ w.T


class FloatForward:
    """The float32 model with its own KV cache. Not thread-safe; one sequence at a time."""

    ops: type = FloatOps

    def __init__(self, cfg: ModelConfig, weights: FloatWeights, ctx: int | None = None, kv_dtype: str = "f32") -> None:
        self.cfg = cfg
        self.w = weights
        self.ctx = ctx or cfg.max_ctx
        self.cache = KVCache(cfg, self.ctx, kv_dtype)
        self.cos, self.sin = rope_table(cfg, self.ctx)

    def check_span(self, n_tokens: int, pos: int) -> None:
        if n_tokens < 1:
            raise InvalidArgumentError("forward needs at least one token")
        if pos < 0 or pos + n_tokens > self.ctx:
            raise ContextOverflowError(f"positions {pos}..{pos + n_tokens - 1} do not fit in the context of {self.ctx} tokens")

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        return self.w.tok_embd[tokens]

    def head(self, x: np.ndarray) -> np.ndarray:
        return float_linear(rmsnorm(x, self.w.out_norm, self.cfg.rms_eps), self.w.head)

    def forward(self, tokens: np.ndarray, pos: int, last_only: bool = False) -> np.ndarray:
        """Logits (T, vocab) for tokens at positions pos..pos+T-1 (or (1, vocab) with last_only)."""
        return self._forward(tokens, pos, last_only, float_linear)

    def _forward(self, tokens: np.ndarray, pos: int, last_only: bool, linear: Linear) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        self.check_span(len(tokens), pos)
        if tokens.min() < 0 or tokens.max() >= self.cfg.vocab_size:
            raise InvalidArgumentError(f"token ids must be in [0, {self.cfg.vocab_size})")
        x = self.embed(tokens).astype(np.float32)
        for i, lw in enumerate(self.w.layers):
            x = layer_forward(self.cfg, lw, x, self.cache, i, pos, self.cos, self.sin, linear, self.ops)
        if last_only:
            x = x[-1:]
        return self.head(x)
