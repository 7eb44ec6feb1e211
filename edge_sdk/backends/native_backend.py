"""The "native" backend: the C core (via `native_ffi`) running the whole int8 model."""

from __future__ import annotations

import numpy as np

from ..config import ModelConfig, QuantConfig
from ..quantize import QWeights
from .native_ffi import NativeCore, prefer_threads


class NativeBackend:
    name = "native"

    def __init__(self, cfg: ModelConfig, qcfg: QuantConfig, weights: QWeights, ctx: int, kv_dtype: str = "f32",
                 threads: int | None = None, prefill_chunk: int = 64) -> None:
        self.config = cfg
        self.ctx = ctx
        self.threads = prefer_threads() if threads is None else threads
        self.core = NativeCore(cfg, n_threads=self.threads, kv_dtype=kv_dtype, ctx=ctx, act_block=qcfg.act_block,
                               max_tokens=prefill_chunk)
        self.core.load_weights(weights)
        self.isa = self.core.isa

    def forward(self, tokens: np.ndarray, pos: int, last_only: bool = False) -> np.ndarray:
        return self.core.forward(tokens, pos, last_only)

    def close(self) -> None:
        self.core.close()
