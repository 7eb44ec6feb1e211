"""Progress of long steps on standard error (conversion, perplexity, downloads).

A step shows nothing while it is quick. On a terminal a one-line bar appears after
`BAR_AFTER_S` and is redrawn at most every `REDRAW_S`; elsewhere (a log, a pipe)
nothing is printed unless `EDGE_SDK_PROGRESS=1`, which writes a plain line once the
step has run for `LINE_AFTER_S` and then at most every `LINE_EVERY_S`, and a last
line with its time. `EDGE_SDK_PROGRESS=0` silences both. Standard output, which
carries a command's product, is never touched.

Example::

    with Progress("converting", total=30) as p:
        for i in range(30):
            p.update(1)
"""

from __future__ import annotations

import os
import sys
import time

ENV = "EDGE_SDK_PROGRESS"
BAR_AFTER_S = 0.5  # a bar for a step that ends sooner would only flicker
REDRAW_S = 0.1
LINE_AFTER_S = 2.0
LINE_EVERY_S = 5.0


def progress_mode(enabled: bool | None = None) -> str | None:
    """"bar", "lines" or None (silent): `enabled` False silences, True forces output, None decides by the terminal."""
    env = os.environ.get(ENV, "")
    if enabled is False or env == "0":
        return None
    tty = sys.stderr.isatty()
    if enabled or env == "1":
        return "bar" if tty else "lines"
    return "bar" if tty else None


class Progress:
    """A progress report for one step of `total` units (bytes, tokens, layers...)."""

    def __init__(self, label: str, total: int, unit: str = "", enabled: bool | None = None) -> None:
        self.label, self.total, self.unit = label, max(int(total), 1), unit
        self.done = 0
        self.mode = progress_mode(enabled)
        self._t0 = time.perf_counter()
        self._last = -1e9
        self._shown = False

    @property
    def enabled(self) -> bool:
        return self.mode is not None

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.mode is None:
            return
        now = time.perf_counter()
        elapsed = now - self._t0
        if self.mode == "bar":
            if elapsed >= BAR_AFTER_S and (now - self._last >= REDRAW_S or self.done >= self.total):
                self._draw(now, elapsed)
        elif elapsed >= LINE_AFTER_S and now - self._last >= LINE_EVERY_S:
            self._last = now
            self._shown = True
            sys.stderr.write(f"{self.label}: {self._fraction() * 100:.0f}% ({elapsed:.1f} s{self._eta(elapsed)})\n")
            sys.stderr.flush()

    def _fraction(self) -> float:
        return min(self.done / self.total, 1.0)

    def _eta(self, elapsed: float) -> str:
        frac = self._fraction()
        return f", about {elapsed * (1 - frac) / frac:.0f} s left" if 0 < frac < 1 else ""

    def _draw(self, now: float, elapsed: float) -> None:
        self._last = now
        self._shown = True
        frac = self._fraction()
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}% {elapsed:5.1f}s{self._eta(elapsed)}   ")
        sys.stderr.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._shown:
            return
        elapsed = time.perf_counter() - self._t0
        if self.mode == "bar":
            self._draw(time.perf_counter(), elapsed)
            sys.stderr.write("\n")
        else:
            sys.stderr.write(f"{self.label}: {'done' if exc[0] is None else 'stopped'} in {elapsed:.1f} s\n")
        sys.stderr.flush()
