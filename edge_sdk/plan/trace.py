"""The activation trace the arena is planned for.

The scratch buffers of one layer-range graph come from the native core's
mirror, `edge_sdk.plan.native_buffers.layer_buffers` (every layer of a
range reuses the same buffers, so one layer's trace is the whole graph's).
The head graph reuses the layer plan's first buffers, so it needs no arena of
its own. Besides the arena, a run holds I/O buffers outside it (the residual
stream `x` for the tokens in flight and one row of logits) and the RoPE table.

Example::

    bufs = layer_trace(cfg, QuantConfig(), n_tokens=128, ctx=2048, n_threads=4)
    io_bytes(cfg, n_tokens=64), rope_bytes(cfg, ctx=2048)
"""

from __future__ import annotations

from ..model.config import ModelConfig, QuantConfig
from ..errors import PlanError
from .native_buffers import layer_buffers
from .records import Buffer

F32 = 4


def layer_trace(cfg: ModelConfig, q: QuantConfig, n_tokens: int, ctx: int, n_threads: int) -> list[Buffer]:
    """One decoder layer's scratch buffers and lifetimes, as the native core allocates them."""
    return layer_buffers(cfg, n_tokens, ctx, n_threads, act_block=q.act_block)


def io_bytes(cfg: ModelConfig, n_tokens: int) -> int:
    """Buffers outside the arena: residual stream x (n_tokens, dim) f32 and logits (vocab,) f32 for the last token."""
    if n_tokens <= 0:
        raise PlanError(f"n_tokens must be positive, got {n_tokens}")
    return n_tokens * cfg.dim * F32 + cfg.vocab_size * F32


def rope_bytes(cfg: ModelConfig, ctx: int) -> int:
    """The RoPE table the native core keeps: cos and sin, (ctx, head_dim / 2) f32 each."""
    return 2 * ctx * (cfg.head_dim // 2) * F32
