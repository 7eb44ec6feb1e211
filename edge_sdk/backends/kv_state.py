"""Saving and restoring a backend's KV cache: rows [0, n) of every layer, in the backend's own dtype and layout.

A backend's KV cache is a few numpy arrays, each with one axis that runs over the positions of the context
(the native core: K and V `(n_layers, n_kv_heads, ctx, head_dim)`; ONNX Runtime: one K and one V array per
layer; LiteRT: the same with V transposed). `KVLayout` names them, with their dtype, shape and position axis;
a backend lists its arrays with `kv_arrays()` and gets `kv_layout`, `kv_save` and `kv_restore` from the
functions here. A saved copy is a `KVRows`: arrays of the same layout whose position axis holds `capacity`
rows, allocated once when a prompt-cache slot is made (`empty_rows`, on anonymous pages that become resident
only as rows are written) and reused for every save into that slot, so saving and restoring allocate nothing.

The rows of a position depend only on the tokens up to it: the native core and the numpy reference compute
them to the same bits whether a prompt runs in one call, in chunks or token by token, so restoring saved rows
gives the same state as computing them again.

Example::

    rows = empty_rows(be.kv_layout(), capacity=be.ctx)
    be.kv_save(rows, 0, 40)          # rows [0, 40) of every layer into `rows`
    ...                              # other prompts run
    be.kv_restore(rows, 40)          # the cache holds those 40 positions again
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import BackendError

ALIGN = 64  # bytes: each array of a KVRows starts at a multiple of this


@dataclass(frozen=True)
class KVArray:
    """One array of a KV cache: its name, numpy dtype (`dtype.str`, e.g. "<f2"), full shape and position axis."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    pos_axis: int

    def row_shape(self, n: int) -> tuple[int, ...]:
        """The shape of `n` positions of this array."""
        return self.shape[: self.pos_axis] + (n,) + self.shape[self.pos_axis + 1:]

    def bytes_per_position(self) -> int:
        return int(np.prod(self.row_shape(1), dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "pos_axis": self.pos_axis}


@dataclass(frozen=True)
class KVLayout:
    """What a backend's KV cache holds: the backend, the KV dtype by name ("f32", "f16"), the context, the arrays."""

    backend: str
    kv_dtype: str
    ctx: int
    arrays: tuple[KVArray, ...]

    def bytes_per_position(self) -> int:
        """Bytes one position takes across every array (what a saved token costs)."""
        return sum(a.bytes_per_position() for a in self.arrays)

    def shapes(self) -> list[dict]:
        """The arrays without the context length: what must match for saved rows to fit another cache."""
        return [{**a.to_dict(), "shape": list(a.row_shape(0))} for a in self.arrays]


def layout_of(backend: str, kv_dtype: str, arrays: Mapping[str, tuple[np.ndarray, int]], ctx: int) -> KVLayout:
    """The `KVLayout` of a backend's arrays (name -> (array, position axis)) holding `kv_dtype` values."""
    specs = tuple(KVArray(name, a.dtype.str, tuple(a.shape), axis) for name, (a, axis) in arrays.items())
    for s in specs:
        if s.shape[s.pos_axis] != ctx:
            raise BackendError(f"KV array {s.name} has {s.shape[s.pos_axis]} positions, the context is {ctx}")
    return KVLayout(backend, kv_dtype, ctx, specs)


class KVRows:
    """Saved KV rows: one array per array of a layout, `capacity` positions each (rows [0, capacity))."""

    def __init__(self, layout: KVLayout, arrays: dict[str, np.ndarray], capacity: int) -> None:
        self.layout = layout
        self.arrays = arrays  # name -> array of layout's shape with `capacity` positions
        self.capacity = capacity

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def rows(self, name: str, start: int, end: int) -> np.ndarray:
        """A view of positions [start, end) of array `name`."""
        spec = next(s for s in self.layout.arrays if s.name == name)
        index = [slice(None)] * len(spec.shape)
        index[spec.pos_axis] = slice(start, end)
        return self.arrays[name][tuple(index)]


def empty_rows(layout: KVLayout, capacity: int) -> KVRows:
    """Room for `capacity` positions of every array of `layout`, on one block of fresh anonymous pages.

    Pages become resident only when written: a slot planned for a whole context holds, in memory, the
    rows that were saved in it (the position axis is not the first, so each (layer, head) block of a
    slot touches its own pages)."""
    if capacity < 1:
        raise BackendError(f"a KV slot needs room for at least one position, got {capacity}")
    sizes = []
    for s in layout.arrays:
        nbytes = int(np.prod(s.row_shape(capacity), dtype=np.int64)) * np.dtype(s.dtype).itemsize
        sizes.append(-(-nbytes // ALIGN) * ALIGN)
    total = max(sum(sizes), 1)
    if hasattr(mmap, "MAP_PRIVATE"):
        buf = np.frombuffer(mmap.mmap(-1, total, flags=mmap.MAP_PRIVATE), dtype=np.uint8)
    else:  # not a POSIX system
        buf = np.zeros(total, dtype=np.uint8)
    arrays, at = {}, 0
    for s, size in zip(layout.arrays, sizes):
        shape = s.row_shape(capacity)
        count = int(np.prod(shape, dtype=np.int64))
        arrays[s.name] = buf[at : at + size].view(np.dtype(s.dtype))[:count].reshape(shape)
        at += size
    return KVRows(layout, arrays, capacity)


def _positions(a: np.ndarray, axis: int, start: int, end: int) -> np.ndarray:
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, end)
    return a[tuple(index)]


def check_rows(layout: KVLayout, rows: KVRows, end: int) -> None:
    """`rows` must have this layout's arrays (same dtypes and shapes but for the positions) and room for `end`."""
    if rows.layout.shapes() != layout.shapes() or rows.layout.backend != layout.backend:
        raise BackendError(f"saved KV rows of {rows.layout.backend} ({rows.layout.kv_dtype}) do not fit the "
                           f"{layout.backend} cache ({layout.kv_dtype})")
    if not 0 <= end <= min(rows.capacity, layout.ctx):
        raise BackendError(f"positions [0, {end}) do not fit {rows.capacity} saved rows and a context of {layout.ctx}")


def save_rows(arrays: Mapping[str, tuple[np.ndarray, int]], layout: KVLayout, rows: KVRows, start: int,
              end: int) -> None:
    """Copy positions [start, end) of every cache array into `rows` (no allocation: the slot's own arrays)."""
    check_rows(layout, rows, end)
    if start >= end:
        return
    for name, (a, axis) in arrays.items():
        np.copyto(_positions(rows.arrays[name], axis, start, end), _positions(a, axis, start, end))


def restore_rows(arrays: Mapping[str, tuple[np.ndarray, int]], layout: KVLayout, rows: KVRows, start: int,
                 end: int) -> None:
    """Copy positions [start, end) of `rows` into the cache arrays (positions past `end` are left as they are:
    every backend attends only to positions before the token it computes, each written before it is read)."""
    check_rows(layout, rows, end)
    if start >= end:
        return
    for name, (a, axis) in arrays.items():
        np.copyto(_positions(a, axis, start, end), _positions(rows.arrays[name], axis, start, end))


class KVSnapshots:
    """`kv_layout`, `kv_save` and `kv_restore` for a backend that lists its cache with `kv_arrays()`.

    The backend has `name`, `ctx`, `kv_dtype` and `kv_arrays() -> {name: (array, position axis)}`, the arrays
    its runtime reads and writes in place."""

    name: str
    ctx: int
    kv_dtype: str
    _kv_layout: KVLayout | None = None

    def kv_arrays(self) -> dict[str, tuple[np.ndarray, int]]:  # pragma: no cover - each backend has its own
        raise NotImplementedError

    def kv_layout(self) -> KVLayout:
        """The layout of this backend's KV cache (computed once)."""
        if self._kv_layout is None:
            self._kv_layout = layout_of(self.name, self.kv_dtype, self.kv_arrays(), self.ctx)
        return self._kv_layout

    def kv_save(self, rows: KVRows, start: int, end: int) -> None:
        """Copy positions [start, end) of the cache into `rows` (see `empty_rows`)."""
        save_rows(self.kv_arrays(), self.kv_layout(), rows, start, end)

    def kv_restore(self, rows: KVRows, start: int, end: int) -> None:
        """Copy positions [start, end) of `rows` back into the cache."""
        restore_rows(self.kv_arrays(), self.kv_layout(), rows, start, end)
