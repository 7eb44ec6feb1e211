"""An independent check of any arena plan.

Kept apart from the planners (as ExecuTorch keeps its memory-planning
`Verifier` apart from the algorithms) so that a planner bug cannot hide in
shared code: this module only reads the plan and the buffers.

Example::

    p = plan(bufs)
    verify(bufs, p, alignment=64)   # raises PlanError if anything is wrong
"""

from __future__ import annotations

from typing import Sequence

from ..errors import PlanError
from .arena import ArenaPlan
from .records import Buffer


def verify(buffers: Sequence[Buffer], plan: ArenaPlan, alignment: int) -> None:
    """Raise PlanError if two buffers alive at the same op share bytes, an offset
    is misaligned or negative, a buffer ends past the arena, or the plan and
    the buffer list disagree about which buffers exist."""
    names = [b.name for b in buffers]
    if len(set(names)) != len(names):
        raise PlanError("buffer names are not unique")
    missing = [n for n in names if n not in plan.offsets]
    extra = [n for n in plan.offsets if n not in set(names)]
    if missing or extra:
        raise PlanError(f"plan and buffers disagree: missing offsets for {missing}, offsets for unknown buffers {extra}")
    for b in buffers:
        off = plan.offsets[b.name]
        if off < 0:
            raise PlanError(f"buffer {b.name!r} has negative offset {off}")
        if off % alignment:
            raise PlanError(f"buffer {b.name!r} at offset {off} is not a multiple of the alignment {alignment}")
        if off + b.size_bytes > plan.arena_bytes:
            raise PlanError(
                f"buffer {b.name!r} ends at {off + b.size_bytes}, past the arena of {plan.arena_bytes} bytes"
            )
    live = sorted((b for b in buffers if b.size_bytes), key=lambda b: plan.offsets[b.name])
    for i, a in enumerate(live):
        a_off = plan.offsets[a.name]
        for b in live[i + 1:]:
            b_off = plan.offsets[b.name]
            if b_off >= a_off + a.size_bytes:
                break  # sorted by offset: no later buffer can reach back into `a`
            if a.overlaps_in_time(b):
                raise PlanError(
                    f"buffers {a.name!r} [{a_off}, {a_off + a.size_bytes}) ops {a.first_use}-{a.last_use} and "
                    f"{b.name!r} [{b_off}, {b_off + b.size_bytes}) ops {b.first_use}-{b.last_use} "
                    "overlap in memory while both are alive"
                )
