"""The native core on aarch64 gives the tiny model's x86 tokens, with the expected ARM kernel set.

Runs only on aarch64: a board, or `tools/emulated_aarch64.py`, which runs this
file under qemu with `-cpu cortex-a72` (ARMv8.0 NEON, no dot product) and
`-cpu neoverse-n1` (NEON + SDOT) and sets `EDGE_SDK_EXPECT_ISA` to the kernel
set that CPU must select ("neon" or "dotprod"). Without that variable any ARM
kernel set is accepted. The token ids are the ones pinned on x86 in
`test_generate.py`: the C kernels use one canonical float order, so every
kernel set on every architecture must pick the same greedy tokens.

    EDGE_SDK_EXPECT_ISA=dotprod python -m pytest -q tests/test_emulated_arm.py
"""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest

from test_generate import GREEDY_IDS, PROMPT_IDS

ARM_ISAS = ("neon", "dotprod", "i8mm")
# Kernel sets a CPU offers, best last, for each expected best set.
SUPPORTED = {
    "neon": ["generic", "neon"],
    "dotprod": ["generic", "neon", "dotprod"],
    "i8mm": ["generic", "neon", "dotprod", "i8mm"],
}
EXPECT_ENV = "EDGE_SDK_EXPECT_ISA"

pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in ("aarch64", "arm64"),
    reason=f"aarch64 only (this machine is {platform.machine()}); tools/emulated_aarch64.py runs it under qemu",
)


def _expected_isa() -> str | None:
    want = os.environ.get(EXPECT_ENV)
    if want is not None and want not in SUPPORTED:
        raise ValueError(f"{EXPECT_ENV}={want!r} is not one of {', '.join(SUPPORTED)}")
    return want


@pytest.fixture(scope="module")
def native():
    from edge_sdk.backends.native import library as native_library

    ok, why = native_library.available()
    if not ok:
        pytest.fail(f"the native core must load on aarch64: {why}")
    return native_library


def test_library_is_aarch64_and_selects_the_expected_kernels(native):
    info = native.library_info()
    with open(info["path"], "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
    want = _expected_isa()
    if want is None:
        assert info["isa"] in ARM_ISAS
        return
    assert info["isa"] == want
    assert info["supported_isas"] == SUPPORTED[want]
    assert native.kernel_names()["matvec_q8"] == f"matvec_q8_{want}"
    assert native.kernel_names("generic")["matvec_q8"] == "matvec_q8_generic"


@pytest.mark.parametrize("threads", [1, 2])
def test_native_greedy_tokens_equal_the_x86_ids(tiny_gguf, native, threads):
    import edge_sdk
    from edge_sdk.generate.sampling import SamplingParams

    with edge_sdk.load(tiny_gguf, backend="native", ctx=64, threads=threads) as m:
        assert m.tokenize("The cat") == PROMPT_IDS
        assert m.backend.isa == (_expected_isa() or native.library_info()["isa"])
        got = list(m._gen.stream_tokens(PROMPT_IDS, SamplingParams(max_tokens=len(GREEDY_IDS))))
    assert got == GREEDY_IDS


def test_every_kernel_set_decodes_the_same_tokens(tiny_gguf, native):
    """Greedy decode straight on NativeCore for each kernel set the CPU offers, the scalar twin included."""
    from edge_sdk.backends.native.core import NativeCore
    from edge_sdk.importers import import_model
    from edge_sdk.model.config import QuantConfig
    from edge_sdk.model.quantize import quantize_weights

    imported = import_model(tiny_gguf)
    cfg, qcfg = imported.config, QuantConfig()
    qweights = quantize_weights(cfg, imported.weights, qcfg)
    isas = native.library_info()["supported_isas"]
    assert "generic" in isas and len(isas) >= 2
    for isa in isas:
        with NativeCore(cfg, ctx=64, isa=isa, act_block=qcfg.act_block) as core:
            core.load_weights(qweights)
            assert core.isa == isa
            logits = core.forward(np.array(PROMPT_IDS, dtype=np.int32), pos=0, last_only=True)
            out: list[int] = []
            pos = len(PROMPT_IDS)
            for _ in GREEDY_IDS:
                tok = int(np.argmax(logits.reshape(-1)))
                out.append(tok)
                logits = core.forward(np.array([tok], dtype=np.int32), pos=pos, last_only=True)
                pos += 1
        assert out == GREEDY_IDS, f"isa={isa}"
