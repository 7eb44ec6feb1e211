"""The native core's thread pool and the default thread count.

The pool hands task indices to whichever thread claims them first, spins for
EDGE_SDK_POOL_SPIN_US then blocks; none of that may change a bit of the
results, with more threads than this machine has cores included. The default
thread count comes from the affinity mask and sysfs topology, checked here on
fake sysfs trees with exact expected counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_sdk.backends.native import library as native_library, core as native_core, threads as native_threads
from edge_sdk.errors import NativeError

from tests.test_native_kernels import CFG, _prefill_decode, make_layers, rope_tables

OK, WHY = native_library.available()
needs_native = pytest.mark.skipif(not OK, reason=f"native core unavailable: {WHY}")


# ---- prefer_threads on fake topologies -----------------------------------------


def fake_sysfs(root: Path, siblings: dict[int, str] | None = None,
               core_ids: dict[int, tuple[int, int]] | None = None) -> Path:
    """cpuN/topology with thread_siblings_list and/or (physical_package_id, core_id)."""
    for cpu, text in (siblings or {}).items():
        topo = root / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True, exist_ok=True)
        (topo / "thread_siblings_list").write_text(text + "\n")
    for cpu, (pkg, core) in (core_ids or {}).items():
        topo = root / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True, exist_ok=True)
        (topo / "physical_package_id").write_text(f"{pkg}\n")
        (topo / "core_id").write_text(f"{core}\n")
    return root


def test_cpu_list_parser():
    assert native_threads._cpu_list("0-3,8,10-11\n") == frozenset({0, 1, 2, 3, 8, 10, 11})
    assert native_threads._cpu_list("5") == frozenset({5})


def test_smt_siblings_count_once(tmp_path):
    # 4 cores x 2 threads, Intel numbering: cpu i and cpu i+4 share a core
    sysfs = fake_sysfs(tmp_path, siblings={i: f"{i % 4},{i % 4 + 4}" for i in range(8)})
    assert native_threads.prefer_threads(range(8), sysfs) == 4
    assert native_threads.prefer_threads([0, 4], sysfs) == 1
    assert native_threads.prefer_threads([0, 1], sysfs) == 2
    assert native_threads.prefer_threads([0, 1, 5], sysfs) == 2


def test_adjacent_sibling_numbering(tmp_path):
    # AMD-style numbering: cpu 2k and 2k+1 share a core, written as a range
    sysfs = fake_sysfs(tmp_path, siblings={i: f"{i // 2 * 2}-{i // 2 * 2 + 1}" for i in range(6)})
    assert native_threads.prefer_threads(range(6), sysfs) == 3


def test_core_id_repeats_across_packages(tmp_path):
    # two packages of two cores, no sibling lists: (package, core_id) identifies a core
    sysfs = fake_sysfs(tmp_path, core_ids={0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)})
    assert native_threads.physical_cores(range(4), sysfs) == 4
    assert native_threads.prefer_threads(range(4), sysfs) == 4


def test_no_topology_counts_each_cpu_and_caps_at_8(tmp_path):
    assert native_threads.prefer_threads([0, 1, 2, 3], tmp_path) == 4  # Raspberry Pi 4 in a container
    assert native_threads.prefer_threads(range(16), tmp_path) == native_threads.MAX_DEFAULT_THREADS == 8
    assert native_threads.prefer_threads([], tmp_path) == 1


def test_default_uses_the_affinity_mask():
    n = native_threads.prefer_threads()
    assert 1 <= n <= min(8, len(native_threads.os.sched_getaffinity(0)))
    assert n == native_threads.prefer_threads(native_threads.os.sched_getaffinity(0))


# ---- the pool through the binding ----------------------------------------------


@needs_native
@pytest.mark.parametrize("spin_us", ["0", "3", ""])
def test_thread_counts_beyond_the_cores_give_the_same_bits(monkeypatch, spin_us):
    ref = _prefill_decode("generic", 1).view(np.uint32)
    monkeypatch.setenv("EDGE_SDK_POOL_SPIN_US", spin_us)
    for nt in (2, 5, 8, 16):
        got = _prefill_decode("auto", nt).view(np.uint32)
        np.testing.assert_array_equal(got, ref, err_msg=f"threads={nt} spin_us={spin_us!r}")


@needs_native
def test_many_short_calls_with_oversubscribed_threads():
    # 200 decode steps of a 2-layer model with 8 threads: every step is a
    # handful of tiny pool calls, the case that used to crawl on 2 cores
    rng = np.random.default_rng(11)
    layers = make_layers(rng, CFG, 0, 32)
    x = (rng.standard_normal((1, CFG.dim))).astype(np.float32)
    cos_sin = rope_tables(CFG, 16)
    outs = {}
    for nt in (1, 8):
        with native_core.NativeCore(CFG, ctx=16, n_threads=nt, rope=cos_sin) as core:
            prep = core.prepare_layers(layers)
            ys = [core.run_layers(prep, 0, x, pos=step % 16) for step in range(200)]
        outs[nt] = np.stack(ys).view(np.uint32)
    np.testing.assert_array_equal(outs[8], outs[1])


@needs_native
@pytest.mark.parametrize("bad", ["-1", "fast", "100001"])
def test_bad_spin_setting_is_an_error(monkeypatch, bad):
    monkeypatch.setenv("EDGE_SDK_POOL_SPIN_US", bad)
    with pytest.raises(NativeError, match="creating a native context"):
        native_core.NativeCore(CFG, ctx=8)
