"""Backends that run the numpy reference forwards: "numpy" (int8) and "float".

The int8 one computes exactly what the native core computes, in numpy; it is
the fallback when the native core is not built, and the reference in tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model.config import ModelConfig
from ..model.int8_reference import Int8Forward
from ..model.quantize import QWeights
from ..model.reference import FloatForward
from ..model.weights import FloatWeights
from .base import check_files, check_forward_tokens
from .kv_state import KVSnapshots


def cache_arrays(cache: Any, ctx: int) -> dict[str, tuple[np.ndarray, int]]:
    """Every array a reference forward's KV cache holds (K, V, and any per-position companion of theirs), each
    (n_layers, n_kv_heads, ctx, ...) with its positions on axis 2."""
    return {name: (a, 2) for name, a in vars(cache).items()
            if isinstance(a, np.ndarray) and a.ndim >= 3 and a.shape[2] == ctx}


class NumpyInt8Backend(KVSnapshots):
    name = "numpy"

    def __init__(self, cfg: ModelConfig, weights: QWeights, ctx: int, kv_dtype: str = "f32", package_files: Any = None) -> None:
        self.config = cfg
        self.ctx = ctx
        self.kv_dtype = kv_dtype
        self.package_files = package_files  # the package's PackageFiles, or None
        self._fwd = Int8Forward(cfg, weights, ctx=ctx, kv_dtype=kv_dtype)

    def forward(self, tokens: np.ndarray, pos: int, last_only: bool = False) -> np.ndarray:
        return self._fwd.forward(check_forward_tokens(tokens, pos, self.ctx, self.config.vocab_size), pos, last_only)

    def kv_arrays(self) -> dict[str, tuple[np.ndarray, int]]:
        return cache_arrays(self._fwd.cache, self.ctx)

    def check_files(self) -> None:
        check_files(self.package_files)

    def close(self) -> None:
        self._fwd = None  # type: ignore[assignment]


class FloatBackend(KVSnapshots):
    name = "float"

    def __init__(self, cfg: ModelConfig, weights: FloatWeights, ctx: int, kv_dtype: str = "f32") -> None:
        self.config = cfg
        self.ctx = ctx
        self.kv_dtype = kv_dtype
        self._fwd = FloatForward(cfg, weights, ctx=ctx, kv_dtype=kv_dtype)

    def forward(self, tokens: np.ndarray, pos: int, last_only: bool = False) -> np.ndarray:
        return self._fwd.forward(check_forward_tokens(tokens, pos, self.ctx, self.config.vocab_size), pos, last_only)

    def kv_arrays(self) -> dict[str, tuple[np.ndarray, int]]:
        return cache_arrays(self._fwd.cache, self.ctx)

    def check_files(self) -> None:
        """Nothing to check: the float model comes from a model file imported at load, not from a package."""

    def close(self) -> None:
        self._fwd = None  # type: ignore[assignment]
