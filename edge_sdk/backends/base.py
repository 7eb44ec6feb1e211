"""The interface every backend implements.

A backend owns the model's weights in its own form and a KV cache of `ctx`
positions. `forward` runs tokens at positions `pos..pos+T-1`, writing their
keys and values into the cache, and returns logits. The generator above it
keeps track of which positions hold valid entries.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..config import ModelConfig


class Backend(Protocol):
    name: str
    config: ModelConfig
    ctx: int

    def forward(self, tokens: np.ndarray, pos: int, last_only: bool = False) -> np.ndarray:
        """Logits (T, vocab) float32, or (1, vocab) for the last token when last_only."""
        ...

    def close(self) -> None:
        ...
