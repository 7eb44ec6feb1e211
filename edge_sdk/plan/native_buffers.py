"""The scratch buffers one decoder layer of the native core uses, and when.

This is the Python mirror of `es_layer_buffers()` in
`native/include/edge_sdk.h` (a test checks the two agree). A layer runs the
op sequence below; every intermediate tensor gets its own buffer, live from
the op that writes it to the last op that reads it (inclusive), so a memory
planner can overlap buffers whose lifetimes do not meet. The residual stream
`x` and the KV cache are not scratch and are not listed.

    op  0  attn_norm     x            -> xn
    op  1  attn_quant    xn           -> xq, xs
    op  2  qkv           xq, xs       -> q, k, v
    op  3  rope_store    q, k, v      -> q (rotated in place), KV cache
    op  4  attention     q, KV cache  -> att (per-thread scores), attn_out
    op  5  out_quant     attn_out     -> aq, as
    op  6  wo            aq, as       -> o
    op  7  attn_residual x += o
    op  8  ffn_norm      x            -> fxn
    op  9  ffn_quant     fxn          -> fxq, fxs
    op 10  gate_up       fxq, fxs     -> gate, up
    op 11  swiglu        gate, up     -> h
    op 12  h_quant       h            -> hq, hs
    op 13  down          hq, hs       -> d
    op 14  ffn_residual  x += d

Ops 0-1, 7-9 and 11-12 run fused, one token at a time, so the inputs of a
fused group stay live until the group's last op (a planner must not put a
later token's input under an earlier token's output).

The head graph reuses the first three buffers (xn, xq, xs) of the same plan.
Activation scales (xs, as, fxs, hs) hold one float per `act_block` values of
each token (`QuantConfig.act_block`; 0 means one scale per token).

Example::

    bufs = layer_buffers(cfg, n_tokens=1, ctx=512, n_threads=2)
    offsets = sequential_offsets(bufs)   # until the planner supplies better
"""

from __future__ import annotations

from ..model.config import ModelConfig
from ..errors import PlanError
from .records import Buffer

ALIGN = 64
"""Every buffer offset (and the arena base) must be a multiple of this."""

N_OPS = 15
"""Ops in one layer; lifetimes are inclusive indices in [0, N_OPS)."""

BUFFER_NAMES = (
    "xn", "xq", "xs", "q", "k", "v", "att", "attn_out", "aq", "as", "o",
    "fxn", "fxq", "fxs", "gate", "up", "h", "hq", "hs", "d",
)
"""Buffer names in the order of the C enum `es_buffer_id` (ES_BUF_XN = 0 ...)."""


def _round_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


DEFAULT_ACT_BLOCK = 32
"""The default of `QuantConfig.act_block`."""


def layer_buffers(
    cfg: ModelConfig, n_tokens: int, ctx: int, n_threads: int, act_block: int = DEFAULT_ACT_BLOCK
) -> list[Buffer]:
    """Sizes (bytes) and inclusive op lifetimes of one layer's scratch buffers.

    `n_tokens` tokens are processed per call, `ctx` is the KV-cache length
    (attention scores need one row of `ctx` floats per thread), `n_threads`
    the size of the native thread pool and `act_block` the activation
    quantization block (0 = one scale per token).

    Example::

        >>> from edge_sdk.model.config import ModelConfig
        >>> cfg = ModelConfig(vocab_size=49152, dim=576, n_layers=30, n_heads=9,
        ...                   n_kv_heads=3, ffn_dim=1536)
        >>> layer_buffers(cfg, 1, 512, 1)[0]
        Buffer(name='xn', size_bytes=2304, first_use=0, last_use=1)
    """
    for name, value in (("n_tokens", n_tokens), ("ctx", ctx), ("n_threads", n_threads)):
        if int(value) <= 0:
            raise PlanError(f"{name} must be positive, got {value}")
    t, d, f = int(n_tokens), cfg.dim, cfg.ffn_dim
    qd, kvd = cfg.q_dim, cfg.kv_dim
    ab = int(act_block)
    if ab < 0 or (ab and (d % ab or qd % ab or f % ab)):
        raise PlanError(f"act_block={act_block} must be 0 or divide dim={d}, q_dim={qd} and ffn_dim={f}")

    def scales(n: int) -> int:  # activation scales per token for an input of n values
        return n // ab if ab else 1

    f32 = 4
    spec = (
        ("xn", t * d * f32, 0, 1),
        ("xq", t * d, 1, 2),
        ("xs", t * scales(d) * f32, 1, 2),
        ("q", t * qd * f32, 2, 4),
        ("k", t * kvd * f32, 2, 3),
        ("v", t * kvd * f32, 2, 3),
        ("att", int(n_threads) * _round_up(int(ctx) * f32, ALIGN), 4, 4),
        ("attn_out", t * qd * f32, 4, 5),
        ("aq", t * qd, 5, 6),
        ("as", t * scales(qd) * f32, 5, 6),
        ("o", t * d * f32, 6, 9),  # ops 7-9 run fused per token: o stays live through op 9
        ("fxn", t * d * f32, 8, 9),
        ("fxq", t * d, 9, 10),
        ("fxs", t * scales(d) * f32, 9, 10),
        ("gate", t * f * f32, 10, 12),  # ops 11-12 run fused per token
        ("up", t * f * f32, 10, 12),
        ("h", t * f * f32, 11, 12),
        ("hq", t * f, 12, 13),
        ("hs", t * scales(f) * f32, 12, 13),
        ("d", t * d * f32, 13, 14),
    )
    return [Buffer(name, size, first, last) for name, size, first, last in spec]


def sequential_offsets(buffers: list[Buffer]) -> list[int]:
    """Place each buffer after the previous one, every offset 64-aligned.

    The trivial plan (no reuse): the arena is the naive sum of all buffers.

    Example::

        >>> from edge_sdk.plan.records import Buffer
        >>> sequential_offsets([Buffer("a", 10, 0, 1), Buffer("b", 100, 1, 2), Buffer("c", 1, 0, 0)])
        [0, 64, 192]
    """
    offsets = []
    end = 0
    for b in buffers:
        offsets.append(end)
        end = _round_up(end + int(b.size_bytes), ALIGN)
    return offsets


def arena_bytes(buffers: list[Buffer], offsets: list[int]) -> int:
    """Smallest arena that holds every buffer at its offset.

    Example::

        >>> from edge_sdk.plan.records import Buffer
        >>> arena_bytes([Buffer("a", 10, 0, 1), Buffer("b", 100, 1, 2)], [0, 64])
        164
    """
    if len(buffers) != len(offsets):
        raise PlanError(f"{len(buffers)} buffers but {len(offsets)} offsets")
    return max((int(o) + int(b.size_bytes) for b, o in zip(buffers, offsets)), default=0)
