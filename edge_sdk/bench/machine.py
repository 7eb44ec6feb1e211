"""The machine under a benchmark: its read bandwidth, measured again in every round, and the decode roofline.

Example::

    probe = BandwidthProbe(threads=2)
    probe.measure()                                     # GB/s now
    roofline([60.0, 62.0], [20.0, 18.0], 140_000_000)   # decode as a fraction of what the bandwidth allows
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidArgumentError


class BandwidthProbe:
    """The machine's read bandwidth, measured again in every round: `max` over a float32 array (256 MiB), one
    slice per thread.

    numpy's float32 `max` is vectorized (AVX-512 / AVX2 / NEON) and so reads as fast as one core can stream;
    an int64 `max` or a float `sum` (pairwise summation) is compute-bound below that on this x86 machine.
    The array is written once (every page resident) and kept, so a round costs one pass per repeat.
    """

    def __init__(self, threads: int = 1, mib: int = 256) -> None:
        if threads < 1:
            raise InvalidArgumentError(f"threads must be >= 1, got {threads}")
        self.a = np.ones(mib * 2**20 // 4, dtype=np.float32)
        self.parts = np.array_split(self.a, threads)
        self._read_all()  # warm-up

    def _read_all(self) -> None:
        workers = [threading.Thread(target=np.max, args=(p,)) for p in self.parts]  # numpy releases the GIL
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    def measure(self, repeats: int = 3) -> float:
        """GB/s: the median of `repeats` passes."""
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            self._read_all()
            times.append(time.perf_counter() - t)
        return self.a.nbytes / statistics.median(times) / 1e9


def read_bandwidth_gbps(threads: int = 1, mib: int = 256, repeats: int = 5) -> float:
    """Memory read bandwidth in GB/s (`BandwidthProbe`), the median of `repeats` passes."""
    return BandwidthProbe(threads, mib).measure(repeats)


ROOFLINE_SUSPECT = 1.0
"""A decode faster than the bandwidth measured beside it allows is impossible: the bandwidth read was low
(another process took the memory bus or a core during it). Such a fraction is reported as suspect."""


def roofline(decode_runs: Sequence[float], bandwidth_runs: Sequence[float], bytes_per_token: int) -> dict[str, Any]:
    """Decode as a fraction of the read-bandwidth roofline, round by round (bandwidth measured in the same round).

    Returns the median fraction, its range, and `suspect` when the median is above `ROOFLINE_SUSPECT`.

    Example::

        roofline([60.0, 62.0], [20.0, 18.0], 140_000_000)["fraction"]   # 0.44 (median of 0.42 and 0.48)
    """
    fractions = [d * bytes_per_token / (bw * 1e9) for d, bw in zip(decode_runs, bandwidth_runs, strict=True)]
    median = statistics.median(fractions)
    return {"fraction": median, "fraction_range": [min(fractions), max(fractions)],
            "roofline_decode_tok_s": statistics.median(bw * 1e9 / bytes_per_token for bw in bandwidth_runs),
            "suspect": median > ROOFLINE_SUSPECT}


