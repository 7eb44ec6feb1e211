"""Arena planners: give every buffer an offset in one block of memory.

All planners share one signature, `plan(buffers, alignment) -> ArenaPlan`, and
are chosen by name from `PLANNERS`:

* `"greedy_by_size"`: the greedy memory planner of TensorFlow Lite Micro
  (`tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc`), the
  "Greedy by Size" strategy of Pisarchyk & Lee, "Efficient Memory Management
  for Deep Neural Net Inference", arXiv:2001.03288. Intuition: big buffers are
  the hardest to fit, so place them first; each later buffer goes to the
  lowest aligned offset where it does not collide with any already-placed
  buffer that is alive at the same time. Buffers whose lifetimes do not meet
  share addresses.
* `"naive"`: each buffer after the previous one, nothing shared. Its arena is
  the naive sum that the plan is compared against.

`lower_bound(buffers)` is the most bytes alive at any one op: no plan can use
less (before alignment padding). Every plan should be checked with
`edge_sdk.plan.verify.verify`.

Example::

    bufs = [Buffer("a", 100, 0, 1), Buffer("b", 50, 1, 2), Buffer("c", 200, 2, 3)]
    p = plan(bufs, alignment=1)               # greedy_by_size
    p.offsets, p.arena_bytes                   # {'c': 0, 'a': 0, 'b': 200}, 250
    report(bufs, alignment=1)                  # ArenaReport(arena_bytes=250, naive_bytes=350, lower_bound_bytes=250)
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

from ..errors import PlanError
from .records import Buffer

DEFAULT_ALIGNMENT = 64
"""Offsets are multiples of this (a cache line; what the native core requires)."""


@dataclass(frozen=True)
class ArenaPlan:
    """Where each buffer lives: `offsets[name]` bytes from the arena base."""

    algorithm: str
    alignment: int
    offsets: Mapping[str, int]
    arena_bytes: int  # largest offset + size over all buffers

    def offsets_for(self, buffers: Sequence[Buffer]) -> list[int]:
        """Offsets in the order of `buffers` (the order the native core's enum uses)."""
        try:
            return [self.offsets[b.name] for b in buffers]
        except KeyError as e:
            raise PlanError(f"buffer {e.args[0]!r} is not in this plan") from None


@dataclass(frozen=True)
class ArenaReport:
    """The three numbers to compare: planned arena, naive sum, lower bound."""

    arena_bytes: int
    naive_bytes: int
    lower_bound_bytes: int


def align_up(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def check_buffers(buffers: Sequence[Buffer], alignment: int) -> None:
    """Raise PlanError on malformed input: bad alignment, duplicate names, negative sizes or lifetimes."""
    if alignment < 1:
        raise PlanError(f"alignment must be a positive number of bytes, got {alignment}")
    seen: set[str] = set()
    for b in buffers:
        if b.name in seen:
            raise PlanError(f"buffer name {b.name!r} appears twice")
        seen.add(b.name)
        if b.size_bytes < 0:
            raise PlanError(f"buffer {b.name!r} has negative size {b.size_bytes}")
        if b.first_use < 0 or b.last_use < b.first_use:
            raise PlanError(f"buffer {b.name!r} has lifetime [{b.first_use}, {b.last_use}]; need 0 <= first_use <= last_use")


def _finish(name: str, alignment: int, buffers: Sequence[Buffer], offsets: dict[str, int]) -> ArenaPlan:
    arena = max((offsets[b.name] + b.size_bytes for b in buffers), default=0)
    ordered = {b.name: offsets[b.name] for b in buffers}
    return ArenaPlan(algorithm=name, alignment=alignment, offsets=MappingProxyType(ordered), arena_bytes=arena)


def plan_naive(buffers: Sequence[Buffer], alignment: int = DEFAULT_ALIGNMENT) -> ArenaPlan:
    """Each buffer right after the previous one (aligned); no reuse."""
    check_buffers(buffers, alignment)
    offsets: dict[str, int] = {}
    end = 0
    for b in buffers:
        offsets[b.name] = align_up(end, alignment)
        end = offsets[b.name] + b.size_bytes
    return _finish("naive", alignment, buffers, offsets)


def plan_greedy_by_size(buffers: Sequence[Buffer], alignment: int = DEFAULT_ALIGNMENT) -> ArenaPlan:
    """Largest first, each at the lowest aligned offset free for its whole lifetime.

    Ties in size keep the input order (Python's sort is stable), so plans are
    reproducible.
    """
    check_buffers(buffers, alignment)
    placed: list[tuple[int, Buffer]] = []  # (offset, buffer), kept sorted by offset
    offsets: dict[str, int] = {}
    for b in sorted(buffers, key=lambda x: -x.size_bytes):
        candidate = 0
        if b.size_bytes:
            for off, other in placed:
                if not other.size_bytes or not b.overlaps_in_time(other):
                    continue
                if candidate + b.size_bytes <= off:
                    break  # fits in the gap below `other`
                candidate = max(candidate, align_up(off + other.size_bytes, alignment))
        offsets[b.name] = candidate
        placed.append((candidate, b))
        placed.sort(key=lambda item: item[0])
    return _finish("greedy_by_size", alignment, buffers, offsets)


Planner = Callable[[Sequence[Buffer], int], ArenaPlan]

PLANNERS: Mapping[str, Planner] = MappingProxyType({
    "greedy_by_size": plan_greedy_by_size,
    "naive": plan_naive,
})
"""Planners by name; all take `(buffers, alignment)`."""


def plan(buffers: Sequence[Buffer], alignment: int = DEFAULT_ALIGNMENT, algorithm: str = "greedy_by_size") -> ArenaPlan:
    """Run the planner called `algorithm`.

    Example::

        plan([Buffer("x", 10, 0, 0)], 64, "naive").arena_bytes   # 10
    """
    if algorithm not in PLANNERS:
        raise PlanError(f"unknown planner {algorithm!r}; choose one of {sorted(PLANNERS)}")
    return PLANNERS[algorithm](buffers, alignment)


def lower_bound(buffers: Sequence[Buffer]) -> int:
    """The most bytes alive at one op: `max_t sum(size for b alive at t)`.

    The maximum is reached at some buffer's first use, so only those ops are checked.
    """
    return max(
        (sum(b.size_bytes for b in buffers if b.first_use <= t <= b.last_use) for t in {b.first_use for b in buffers}),
        default=0,
    )


def report(buffers: Sequence[Buffer], alignment: int = DEFAULT_ALIGNMENT, algorithm: str = "greedy_by_size") -> ArenaReport:
    """Planned arena, naive sum and lower bound for the same buffers.

    Example::

        report([Buffer("a", 64, 0, 0), Buffer("b", 64, 1, 1)])   # ArenaReport(arena_bytes=64, naive_bytes=128, lower_bound_bytes=64)
    """
    return ArenaReport(
        arena_bytes=plan(buffers, alignment, algorithm).arena_bytes,
        naive_bytes=plan_naive(buffers, alignment).arena_bytes,
        lower_bound_bytes=lower_bound(buffers),
    )
