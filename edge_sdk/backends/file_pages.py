"""Detach a runtime's mappings of a package file from the file.

ONNX Runtime maps the external data of every initializer from `weights.bin`
(`MAP_PRIVATE`) and keeps the mappings of those it does not fold into its own
buffers (SmolLM2-135M: 124 mappings, 38.7 MiB, the embedding table of its
Gather among them). Their pages follow the file: truncating it under a loaded
model killed the process with SIGBUS at the next token (Linux unmaps even the
copied-on-write pages of a private mapping beyond a truncated end), and
rewriting it in place changed the weights the model ran on.

`detach` replaces each such mapping, at the same address, by anonymous memory
holding the same bytes: a copy is made in a fresh anonymous mapping, which
`mremap` then moves over the old one in a single step. The runtime's pointers
stay valid and read the same values; nothing done to the file afterwards
reaches them, and the runtime's own `munmap` later frees the copy. It runs at
load, while the runtime is idle. The pages are resident as anonymous memory,
including those never touched before (SmolLM2-135M through ONNX Runtime:
272 -> 303 MiB after loading; the peak while loading, 461 MiB, is unchanged);
it takes ~40 ms for SmolLM2-135M.

It needs `/proc/self/maps` and `mremap` (Linux). Elsewhere nothing is detached
and the function says so by returning None.

Example::

    detach(["/pkg/weights.bin"])      # bytes detached, e.g. 40_546_304
"""

from __future__ import annotations

import ctypes
import mmap
import os
from typing import Iterable

from ..errors import BackendError

MAPS = "/proc/self/maps"
PROT = {"r": 1, "w": 2, "x": 4}
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
MAP_FAILED = ctypes.c_void_p(-1).value


def _mappings(paths: set[str]) -> list[tuple[int, int, str, str]]:
    """(start, end, perms, path) of this process's mappings of `paths`."""
    out = []
    with open(MAPS) as f:
        for line in f:
            parts = line.rstrip("\n").split(maxsplit=5)
            if len(parts) == 6 and parts[5] in paths:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                out.append((start, end, parts[1], parts[5]))
    return out


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.mremap.restype = ctypes.c_void_p
    libc.mremap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    return libc


def _replace(libc: ctypes.CDLL, start: int, length: int, prot: int, path: str) -> None:
    """Move an anonymous copy of [start, start + length) over it."""
    copy = libc.mmap(None, length, PROT["r"] | PROT["w"], mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if copy in (None, MAP_FAILED):
        raise BackendError(f"{path}: no memory for a copy of its mapping ({os.strerror(ctypes.get_errno())})")
    ctypes.memmove(copy, start, length)
    if libc.mprotect(copy, length, prot) != 0 or libc.mremap(
            copy, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, ctypes.c_void_p(start)) in (None, MAP_FAILED):
        err = os.strerror(ctypes.get_errno())
        libc.munmap(copy, length)
        raise BackendError(f"{path}: cannot detach its mapping from the file ({err})")


def detach(paths: Iterable[str]) -> int | None:
    """Replace every mapping this process holds of one of `paths` by anonymous memory with the same bytes, at
    the same address; returns the bytes detached, or None where mappings cannot be listed (not Linux).

    Call it only while no thread runs the runtime that made the mappings. A shared writable mapping (whose
    writes the runtime means for the file) is refused with a BackendError naming the file."""
    real = {os.path.realpath(p) for p in paths}
    try:
        maps = _mappings(real)
    except OSError:
        return None
    if not maps:
        return 0
    if not hasattr(mmap, "MAP_ANONYMOUS"):
        return None
    libc = _libc()
    total = 0
    for start, end, perms, path in maps:
        if perms[3] == "s" and perms[1] == "w":
            raise BackendError(f"{path}: mapped shared and writable ({perms}) by the runtime; it cannot be detached")
        _replace(libc, start, end - start, sum(PROT[c] for c in perms[:3] if c in PROT), path)
        total += end - start
    return total
