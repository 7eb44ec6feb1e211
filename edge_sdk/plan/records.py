"""The records the memory planner works on.

A buffer is `(size_bytes, first_use, last_use)` with inclusive lifetimes over
op indices; a plan gives each buffer an offset in one arena.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Buffer:
    """An intermediate tensor: live from op `first_use` to op `last_use`, inclusive."""

    name: str
    size_bytes: int
    first_use: int
    last_use: int

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first_use <= other.last_use and other.first_use <= self.last_use
