"""The KV cache of the numpy forwards: keys and values of every layer as float32, float16 or int8.

An int8 cache stores each (layer, kv head, position) row of `head_dim` keys (after RoPE) or values as one
symmetric int8 block with a float32 scale, `amax / 127`, rounded as the native core quantizes activations
(`quantize.quantize_last_axis`); the core's `ES_KV_I8` stores the same bytes. Attention reads the int8 rows
either dequantized (`read`, for numpy's own float order) or as integers with their scales applied the way the
core applies them (`canonical.attention`).

Example::

    cache = KVCache(cfg, ctx=256, dtype="int8")
    cache.store(layer=0, pos=0, k=k, v=v)        # k, v (T, n_kv_heads, head_dim) float32
    k, v = cache.read(layer=0, end=3)            # (n_kv_heads, 3, head_dim) float32 each
"""

from __future__ import annotations

import numpy as np

from .config import ModelConfig
from ..errors import InvalidArgumentError
from .quantize import quantize_last_axis

KV_DTYPES = {"f32": np.float32, "f16": np.float16, "int8": np.int8}
"""What a KV cache can hold, by the name `load(kv_dtype=...)` takes, and its numpy dtype."""


class KVCache:
    """Keys and values of every layer, stored as float32, float16 or int8 with a scale per row."""

    def __init__(self, cfg: ModelConfig, ctx: int, dtype: str = "f32") -> None:
        np_dtype = KV_DTYPES.get(dtype)
        if np_dtype is None:
            raise InvalidArgumentError(f"KV cache dtype must be one of {', '.join(KV_DTYPES)}, got {dtype!r}")
        shape = (cfg.n_layers, cfg.n_kv_heads, ctx, cfg.head_dim)
        self.k = np.zeros(shape, dtype=np_dtype)  # (n_layers, n_kv_heads, ctx, head_dim)
        self.v = np.zeros(shape, dtype=np_dtype)  # (n_layers, n_kv_heads, ctx, head_dim)
        scaled = dtype == "int8"
        self.k_scale = np.zeros(shape[:3], np.float32) if scaled else None  # (n_layers, n_kv_heads, ctx)
        self.v_scale = np.zeros(shape[:3], np.float32) if scaled else None  # (n_layers, n_kv_heads, ctx)
        self.ctx = ctx
        self.dtype = dtype

    def store(self, layer: int, pos: int, k: np.ndarray, v: np.ndarray) -> None:
        """Write k, v (T, n_kv_heads, head_dim) float32 at positions pos .. pos+T-1 of `layer`."""
        end = pos + k.shape[0]
        kt, vt = k.transpose(1, 0, 2), v.transpose(1, 0, 2)  # (n_kv_heads, T, head_dim)
        if self.k_scale is None:
            self.k[layer, :, pos:end] = kt
            self.v[layer, :, pos:end] = vt
            return
        self.k[layer, :, pos:end], self.k_scale[layer, :, pos:end] = quantize_last_axis(kt)
        self.v[layer, :, pos:end], self.v_scale[layer, :, pos:end] = quantize_last_axis(vt)

    def read(self, layer: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """K and V of positions 0 .. end-1 of `layer` as float32 (n_kv_heads, end, head_dim), dequantized."""
        k = self.k[layer, :, :end].astype(np.float32)
        v = self.v[layer, :, :end].astype(np.float32)
        if self.k_scale is not None:
            k = k * self.k_scale[layer, :, :end, None]
            v = v * self.v_scale[layer, :, :end, None]
        return k, v
