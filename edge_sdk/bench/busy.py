"""A busy machine for a benchmark: K CPU-bound processes beside it, and the load average around every run.

A robot's board is never idle: `BusyLoad(k)` starts `k` processes that spin on the CPU (a Python `while
True: pass`, which touches no memory) for as long as the benchmark lasts, for our backends and for the peer
alike, and stops them, by their process ids, when it ends. `measured(fn)` runs one measurement and records
the 1-minute load average just before and just after it, so that every figure of a report carries the load
of the machine it was measured on.

Example::

    with BusyLoad(2) as busy:                        # two spinning processes until the block ends
        out = measured(lambda: {"decode_tok_s": 50.0})
    out["loadavg"]                                   # [before, after], e.g. [2.1, 2.6]
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Callable

from ..errors import InvalidArgumentError

MAX_BUSY = 64


def loadavg() -> float:
    """The 1-minute load average (0.0 where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def measured(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """fn()'s result with `loadavg`: [the 1-minute load average before, after]."""
    before = loadavg()
    out = fn()
    return {**out, "loadavg": [before, loadavg()]}


def load_range(runs: list[dict[str, Any]]) -> list[float]:
    """[lowest, highest] load average over the measurements `runs` (each with `loadavg`)."""
    values = [v for r in runs for v in r.get("loadavg", ())]
    return [min(values), max(values)] if values else [0.0, 0.0]


class BusyLoad:
    """`k` CPU-bound processes while the `with` block runs (k = 0: none)."""

    def __init__(self, k: int) -> None:
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= MAX_BUSY:
            raise InvalidArgumentError(f"busy must be a number of processes from 0 to {MAX_BUSY}, got {k!r}")
        self.k = k
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "BusyLoad":
        try:
            for _ in range(self.k):
                self.procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        except OSError:
            self.stop()
            raise
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.procs = []

    def __exit__(self, *exc: object) -> None:
        self.stop()
