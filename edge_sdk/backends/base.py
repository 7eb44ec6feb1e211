"""The interface every backend implements.

A backend owns the model's weights in its own form and a KV cache of `ctx`
positions. `forward` runs tokens at positions `pos..pos+T-1`, writing their
keys and values into the cache, and returns logits. The generator above it
keeps track of which positions hold valid entries. `check_files` is called
before each request: a backend loaded from a package raises
`PackageChangedError` there once the package's files changed on disk.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..model.config import ModelConfig
from ..errors import InvalidArgumentError


class Backend(Protocol):
    name: str
    config: ModelConfig
    ctx: int

    def forward(self, tokens: np.ndarray, pos: int, last_only: bool = False) -> np.ndarray:
        """Logits (T, vocab) float32, or (1, vocab) for the last token when last_only."""
        ...

    def check_files(self) -> None:
        """PackageChangedError if the files the model was loaded from changed (nothing to do without a package)."""
        ...

    def close(self) -> None:
        ...


def check_files(files: Any) -> None:
    """`files.check()` for a backend's `PackageFiles` (None: the model was not loaded from a package)."""
    if files is not None:
        files.check()


def check_forward_tokens(tokens: np.ndarray, pos: int, ctx: int, vocab_size: int) -> np.ndarray:
    """Validate a forward call's input, the same way for every backend; returns the ids as (1, T) int64."""
    from ..errors import ContextOverflowError

    a = np.asarray(tokens).reshape(1, -1)
    n = a.shape[1]
    if n < 1:
        raise InvalidArgumentError("forward needs at least one token")
    if a.dtype.kind not in "iu":  # never truncate 1.7 to 1 or wrap 2**70
        raise InvalidArgumentError(f"token ids must be integers, got dtype {a.dtype}")
    if isinstance(pos, bool) or not isinstance(pos, (int, np.integer)):
        raise InvalidArgumentError(f"pos must be an integer, got {pos!r}")
    pos = int(pos)
    tokens = a.astype(np.int64)
    if pos < 0 or pos + n > ctx:
        raise ContextOverflowError(f"positions {pos}..{pos + n - 1} do not fit in the context of {ctx} tokens")
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise InvalidArgumentError(f"token ids must be in [0, {vocab_size})")
    return tokens
