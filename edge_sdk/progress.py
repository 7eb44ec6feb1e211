"""A one-line progress bar on standard error (quiet when stderr is not a terminal, unless forced)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Example::

        with Progress("converting", total=30) as p:
            for i in range(30):
                p.update(1)
    """

    def __init__(self, label: str, total: int, unit: str = "", enabled: bool | None = None) -> None:
        self.label, self.total, self.unit = label, max(total, 1), unit
        self.done = 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._last = 0.0
        self._t0 = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}% {now - self._t0:5.1f}s")
            sys.stderr.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
