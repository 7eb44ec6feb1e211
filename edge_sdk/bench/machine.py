"""The machine under a benchmark: its read bandwidth, measured again in every round, and the decode roofline.

Example::

    probe = BandwidthProbe(threads=2)
    probe.measure()                                          # GB/s: the best of a few passes, now
    bound = roofline_bandwidth([20.0, 18.0], [8.4, 8.7])     # the run's bandwidth: 20 GB/s, from the probe
    roofline([60.0, 62.0], 140_000_000, bound["gbps"])       # decode as a fraction of what it allows
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidArgumentError


class BandwidthProbe:
    """The machine's read bandwidth: `max` over a float32 array (256 MiB), one slice per thread, with the
    benchmark's own thread count, measured in every round right after the decode it bounds.

    numpy's float32 `max` is vectorized (AVX-512 / AVX2 / NEON) and so reads as fast as one core can stream;
    an int64 `max` or a float `sum` (pairwise summation) is compute-bound below that on this x86 machine.
    The array is written once (every page resident) and kept, so a round costs one pass per repeat.

    A pass lasts as long as its slowest slice: on a busy machine a thread that the scheduler parks for a few
    milliseconds makes the pass read "slowly" although the memory is as fast as ever. So `measure` keeps the
    best pass, and the roofline takes the best over the whole run (`roofline_bandwidth`).
    """

    def __init__(self, threads: int = 1, mib: int = 256) -> None:
        if threads < 1:
            raise InvalidArgumentError(f"threads must be >= 1, got {threads}")
        self.threads = threads
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
        """GB/s: the fastest of `repeats` passes."""
        best = float("inf")
        for _ in range(max(repeats, 1)):
            t = time.perf_counter()
            self._read_all()
            best = min(best, time.perf_counter() - t)
        return self.a.nbytes / best / 1e9


def read_bandwidth_gbps(threads: int = 1, mib: int = 256, repeats: int = 5) -> float:
    """Memory read bandwidth in GB/s (`BandwidthProbe`), the fastest of `repeats` passes."""
    return BandwidthProbe(threads, mib).measure(repeats)


def decode_read_gbps(decode_tok_s: float, bytes_per_token: int) -> float:
    """The read rate a decode at `decode_tok_s` proves the machine has: every weight byte once per token."""
    return decode_tok_s * bytes_per_token / 1e9


def roofline_bandwidth(probe_gbps: Sequence[float], decode_gbps: Sequence[float] = ()) -> dict[str, Any]:
    """The run's read bandwidth, the denominator of every roofline fraction in it.

    It is the fastest read seen in the run: the best probe pass of any round, or, when a decode read its
    weights faster than that (the probe was starved by other processes), that decode's own read rate. So no
    decode of the run can be above 100% of it. `source` says which it was.

    Example::

        roofline_bandwidth([20.0, 4.3], [8.4, 7.0])    # {"gbps": 20.0, "probe_gbps": 20.0, "source": "probe", ...}
        roofline_bandwidth([4.3, 4.4], [6.5, 6.6])     # {"gbps": 6.6, "source": "decode", ...}
    """
    if not probe_gbps:
        raise InvalidArgumentError("no bandwidth was measured")
    best_probe = max(probe_gbps)
    best_decode = max(decode_gbps, default=0.0)
    return {"gbps": max(best_probe, best_decode), "probe_gbps": best_probe,
            "probe_range_gbps": [min(probe_gbps), best_probe],
            "decode_max_gbps": best_decode, "source": "probe" if best_probe >= best_decode else "decode"}


def roofline(decode_runs: Sequence[float], bytes_per_token: int, bandwidth_gbps: float) -> dict[str, Any]:
    """Decode as a fraction of the read-bandwidth roofline, round by round.

    `bandwidth_gbps` is the run's bandwidth (`roofline_bandwidth`); should a caller hand a lower one, the
    decode's own read rate takes its place, so a fraction is at most 1 by construction.

    Example::

        roofline([60.0, 62.0], 140_000_000, 20.0)["fraction"]   # 0.427 (median of 0.42 and 0.434)
    """
    if bytes_per_token <= 0 or bandwidth_gbps <= 0 or not decode_runs:
        raise InvalidArgumentError("a roofline needs decode runs, bytes per token > 0 and a bandwidth > 0")
    bound = max(bandwidth_gbps, max(decode_read_gbps(d, bytes_per_token) for d in decode_runs))
    fractions = [decode_read_gbps(d, bytes_per_token) / bound for d in decode_runs]
    return {"fraction": statistics.median(fractions), "fraction_range": [min(fractions), max(fractions)],
            "fraction_runs": fractions, "bandwidth_gbps": bound,
            "roofline_decode_tok_s": bound * 1e9 / bytes_per_token}
