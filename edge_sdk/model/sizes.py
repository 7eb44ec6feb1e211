"""Byte sizes of a quantized model's parts, computed from its config alone.

Used by the graph splitter, the memory planner and the benchmarks, so that
every stage agrees on what a weight costs without loading it.

Example::

    cfg = ModelConfig(vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3, ffn_dim=1536)
    layer_weight_bytes(cfg, QuantConfig(group_size=0))  # 3,564,288 bytes
"""

from __future__ import annotations

from .config import ModelConfig, QuantConfig
from ..errors import InvalidArgumentError

F32 = 4


def qmat_bytes(rows: int, cols: int, q: QuantConfig) -> int:
    """An int8 matrix plus its float32 scales (one per row, or per group of inputs)."""
    n_groups = 1 if q.group_size == 0 else cols // q.group_size
    return rows * cols + rows * n_groups * F32


def layer_weight_bytes(cfg: ModelConfig, q: QuantConfig) -> int:
    d, f = cfg.dim, cfg.ffn_dim
    return (
        2 * d * F32
        + qmat_bytes(cfg.q_dim, d, q)
        + 2 * qmat_bytes(cfg.kv_dim, d, q)
        + qmat_bytes(d, cfg.q_dim, q)
        + 2 * qmat_bytes(f, d, q)
        + qmat_bytes(d, f, q)
    )


def embed_weight_bytes(cfg: ModelConfig, q: QuantConfig) -> int:
    return qmat_bytes(cfg.vocab_size, cfg.dim, q)


def head_weight_bytes(cfg: ModelConfig, q: QuantConfig) -> int:
    """The head's own bytes: a tied head reuses the embedding table and adds only its norm."""
    own = 0 if cfg.tied_embeddings else qmat_bytes(cfg.vocab_size, cfg.dim, q)
    return cfg.dim * F32 + own


def model_weight_bytes(cfg: ModelConfig, q: QuantConfig) -> int:
    return embed_weight_bytes(cfg, q) + cfg.n_layers * layer_weight_bytes(cfg, q) + head_weight_bytes(cfg, q)


def decode_bytes_per_token(cfg: ModelConfig, q: QuantConfig) -> int:
    """Weight bytes read to generate one token: one embedding row, every layer, the whole head matrix."""
    n_groups = 1 if q.group_size == 0 else cfg.dim // q.group_size
    embed_row = cfg.dim + n_groups * F32
    head = qmat_bytes(cfg.vocab_size, cfg.dim, q) + cfg.dim * F32
    return embed_row + cfg.n_layers * layer_weight_bytes(cfg, q) + head


def kv_cache_bytes(cfg: ModelConfig, ctx: int, kv_dtype: str) -> int:
    """K and V for every layer: (n_layers, n_kv_heads, ctx, head_dim) each."""
    per = {"f32": 4, "f16": 2, "int8": 1}
    if kv_dtype not in per:
        raise InvalidArgumentError(f"kv dtype must be one of {sorted(per)}, got {kv_dtype!r}")
    elems = 2 * cfg.n_layers * cfg.n_kv_heads * ctx * cfg.head_dim
    scales = 2 * cfg.n_layers * cfg.n_kv_heads * ctx * F32 if kv_dtype == "int8" else 0
    return elems * per[kv_dtype] + scales
