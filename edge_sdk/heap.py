"""Giving the C heap's free pages back to the system after a large, short-lived parse.

Building a Hugging Face tokenizer from its JSON allocates far more than it keeps: SmolLM2's
tokenizer.json (1.5 MB, 49152 tokens, 48900 merges) raised RSS by ~40 MiB while it was parsed,
of which the tokenizer keeps ~14 MiB. glibc's `free` hands memory back to the system only from
the top of its heap, so the rest stayed resident, freed but unusable by the anonymous mappings
that hold the weights. `malloc_trim(0)` returns every whole free page of every arena at once
(`madvise(MADV_DONTNEED)`); what is still allocated is not touched.

Where the C library has no `malloc_trim` (musl, macOS, Windows) nothing is done and
`release_free_heap` says so by returning False.

Example::

    hf = tokenizers.Tokenizer.from_str(text)
    release_free_heap()          # True on glibc
"""

from __future__ import annotations

import functools
from typing import Any, Callable


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], Any] | None:
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, ImportError, TypeError):  # no C library handle, or no such function
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Return the C heap's free pages to the system; False where the C library cannot (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
