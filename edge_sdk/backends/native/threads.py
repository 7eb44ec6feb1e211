"""How many threads the native core runs by default: one per physical core this process may use, at most 8."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

SYSFS_CPU = Path("/sys/devices/system/cpu")
MAX_DEFAULT_THREADS = 8


def _cpu_list(text: str) -> frozenset[int]:
    """Parse a sysfs CPU list such as "0-3,8,10-11"."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(cpus)


def _core_key(cpu: int, sysfs: Path) -> object:
    """What identifies cpu's physical core: its SMT sibling set, else (package, core_id), else itself."""
    topo = sysfs / f"cpu{cpu}" / "topology"
    for name in ("thread_siblings_list", "core_cpus_list"):  # the second is the newer kernels' name
        try:
            return _cpu_list((topo / name).read_text())
        except (OSError, ValueError):
            pass
    try:
        return (int((topo / "physical_package_id").read_text()), int((topo / "core_id").read_text()))
    except (OSError, ValueError):
        return cpu


def physical_cores(cpus: Iterable[int], sysfs: Path = SYSFS_CPU) -> int:
    """How many distinct physical cores the logical CPUs `cpus` lie on (per sysfs topology).

    CPUs without topology files count as one core each (containers, non-Linux).

    Example::

        >>> physical_cores(os.sched_getaffinity(0)) <= len(os.sched_getaffinity(0))
        True
    """
    return len({_core_key(c, sysfs) for c in cpus})


def prefer_threads(cpus: Iterable[int] | None = None, sysfs: Path = SYSFS_CPU) -> int:
    """The default thread count: one per physical core this process may use, at most 8.

    `cpus` defaults to the process's affinity mask (what taskset, cgroups'
    cpusets and the board's isolated cores leave us), not `os.cpu_count()`.
    SMT siblings count once: decode is an int8 matrix-vector product over all
    the weights per token, bound by memory bandwidth, and a second hardware
    thread on a core shares that core's load ports and caches without adding
    bandwidth, while every extra thread adds to each parallel step's join.
    The cap of 8 is where a 135M-1B model's steps (tens of microseconds) stop
    gaining from more threads on the boards we target.

    Example::

        core = NativeCore(cfg, n_threads=prefer_threads())
        prefer_threads([0, 1, 2, 3])    # 2 on a laptop whose cpu0/cpu2, cpu1/cpu3 are siblings
    """
    if cpus is None:
        try:
            cpus = os.sched_getaffinity(0)
        except AttributeError:  # pragma: no cover - not Linux
            cpus = range(os.cpu_count() or 1)
    cpus = list(cpus)
    return max(1, min(MAX_DEFAULT_THREADS, physical_cores(cpus, sysfs)))
