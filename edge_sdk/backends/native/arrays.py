"""What is handed to the native core, checked before every call: dtype, shape, C-contiguity and alignment
(32-bit ARM faults on misaligned float loads), token ids that fit int32, and int8 matrices with their scales.
Nothing here touches cffi; a failed check is a `BackendError` naming the array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import BackendError
from ...plan.native_buffers import ALIGN

LAYER_FIELDS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")
QMAX = 127

def need(a: Any, dtype: type, shape: tuple[int, ...], name: str, align: int = 1) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise BackendError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != np.dtype(dtype):
        raise BackendError(f"{name} must be {np.dtype(dtype)}, got {a.dtype}")
    if a.shape != shape:
        raise BackendError(f"{name} must have shape {shape}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise BackendError(f"{name} must be C-contiguous")
    if a.ctypes.data % max(align, a.dtype.itemsize):  # 32-bit ARM faults on misaligned float loads
        raise BackendError(f"{name} must be {max(align, a.dtype.itemsize)}-byte aligned")
    return a


def aligned_empty(nbytes: int, align: int = ALIGN) -> np.ndarray:
    raw = np.zeros(nbytes + align, dtype=np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start : start + nbytes]


def token_ids(ids: Any, name: str) -> np.ndarray:
    """A non-empty int32 vector of token ids; floats, booleans and ids that int32 cannot hold are refused
    (the native side checks them against the vocabulary)."""
    a = np.asarray(ids).reshape(-1)
    if a.size == 0:
        raise BackendError(f"{name} is empty")
    if a.dtype.kind not in "iu":
        raise BackendError(f"{name} must be integer token ids, got dtype {a.dtype}")
    if a.dtype.itemsize > 4 or a.dtype == np.uint32:
        lo, hi = int(a.min()), int(a.max())
        if lo < -(2**31) or hi >= 2**31:
            raise BackendError(f"{name}: token id {lo if lo < -(2**31) else hi} is outside int32")
    return np.ascontiguousarray(a, dtype=np.int32)


def qmat_parts(m: Any, name: str) -> tuple[np.ndarray, np.ndarray, int, int | None]:
    """(q, scale, group_size, act_block or None) of a QMat-like object or a (q, scale) pair."""
    if isinstance(m, tuple) and len(m) == 2:
        q, scale, gs, ab = m[0], m[1], None, None
    else:
        q, scale = getattr(m, "q", None), getattr(m, "scale", None)
        gs, ab = getattr(m, "group_size", None), getattr(m, "act_block", None)
    if not isinstance(q, np.ndarray) or q.ndim != 2:
        raise BackendError(f"{name}: q must be a 2-D int8 array")
    rows, cols = q.shape
    if not isinstance(scale, np.ndarray) or scale.ndim != 2 or scale.shape[0] != rows or scale.shape[1] < 1:
        raise BackendError(f"{name}: scale must be a (rows, n_groups) float32 array")
    ng = scale.shape[1]
    if cols % ng:
        raise BackendError(f"{name}: {ng} scale groups do not divide {cols} columns")
    inferred = 0 if ng == 1 else cols // ng
    if gs is None:
        gs = inferred
    if (gs or cols) != cols // ng:
        raise BackendError(f"{name}: group_size={gs} but scale has {ng} groups for {cols} columns")
    need(q, np.int8, (rows, cols), f"{name}.q")
    need(scale, np.float32, (rows, ng), f"{name}.scale")
    return q, scale, int(gs), None if ab is None else int(ab)
