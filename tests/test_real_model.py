"""SmolLM2-135M-Instruct end to end: exact greedy tokens, chat, and the accuracy of int8 against float.

The accuracy text is the GPL-3 licence that ships on every Debian machine
(/usr/share/common-licenses/GPL-3); the first 2,048 tokens are scored.
"""

from __future__ import annotations

import os

import pytest

import edge_sdk
from edge_sdk.accuracy import evaluate
from edge_sdk.config import QuantConfig

pytestmark = pytest.mark.real_model

GPL3 = "/usr/share/common-licenses/GPL-3"
# greedy continuation of "The capital of France is" with the default int8 weights (groups of 32); the float
# model (and llama.cpp Q8_0) continue " Paris.\n\nThe answer is:", int8 parts from it at a near tie
FRANCE_IDS = [7042, 30, 198, 198, 504, 1797, 1918, 553]  # " Paris.\n\nThe United States has"
PPL_MAX_INCREASE = 0.02  # int8 perplexity at most 2% above float
TOP1_MIN = 0.95  # int8 picks the float model's most likely next token at least 95% of the time


@pytest.fixture(scope="module")
def smollm(real_gguf_path):
    with edge_sdk.load(real_gguf_path, backend="numpy", ctx=512) as m:
        yield m


def test_capital_of_france(smollm):
    ids = smollm.tokenize("The capital of France is")
    from edge_sdk.sampling import SamplingParams

    got = list(smollm._gen.stream_tokens(ids, SamplingParams(max_tokens=8)))
    assert got == FRANCE_IDS
    assert "Paris" in smollm.generate("The capital of France is", max_tokens=8)


@pytest.mark.slow
def test_native_core_equals_the_reference_for_64_tokens(real_gguf_path, smollm):
    """The C core computes the numpy int8 reference's arithmetic bit for bit, so greedy runs never part."""
    from edge_sdk.backends import native_ffi
    from edge_sdk.sampling import SamplingParams

    ok, why = native_ffi.available()
    if not ok:
        pytest.skip(f"native core unavailable: {why}")
    with edge_sdk.load(real_gguf_path, backend="native", ctx=512, threads=2) as nat:
        for prompt in ("The capital of France is", "Once upon a time"):
            ids = nat.tokenize(prompt)
            got = list(nat._gen.stream_tokens(ids, SamplingParams(max_tokens=64)))
            ref = list(smollm._gen.stream_tokens(ids, SamplingParams(max_tokens=64)))
            assert len(got) == 64 and got == ref, prompt


def test_chat_two_plus_two(smollm):
    answer = smollm.chat([{"role": "user", "content": "What is 2+2?"}], max_tokens=32)
    assert "4" in answer
    assert smollm.last_stats["stop_reason"] == "eos"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(GPL3), reason=f"{GPL3} not present (Debian's common-licenses)")
def test_int8_accuracy_against_float(real_model):
    with open(GPL3, encoding="utf-8") as f:
        text = f.read()
    r = evaluate(real_model, text, QuantConfig(group_size=32), window=512, max_tokens=2048)
    assert r.tokens == 2044  # 4 windows of 511 predictions
    assert r.perplexity <= r.float_perplexity * (1 + PPL_MAX_INCREASE)
    assert r.top1_agreement >= TOP1_MIN


def test_opening_the_package_reads_the_weights_into_memory_only_when_asked():
    """weights="file" (ONNX Runtime, LiteRT and the streamed native core hold or read their own copies): opening
    the package (checksums, tensor table, scale and norm checks) leaves the weights out of resident memory.
    weights="memory" (the native and numpy backends): the bytes of weights.bin, read as they are hashed, are
    this process's own memory, all of them, so no file can change under the model."""
    import subprocess
    import sys

    from edge_sdk.convert import ready_package

    pkg = ready_package("smollm2-135m", QuantConfig())
    if pkg is None:
        pytest.skip("the default model's package is not in the cache (edge-sdk pull)")
    code = (
        "import sys; from edge_sdk.package import load_package\n"
        "rss = lambda: int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) * 1024\n"
        "before = rss(); p = load_package(sys.argv[1], weights=sys.argv[2])\n"
        "print(rss() - before, p.weights.tok_embd.q.nbytes if p.weights else 0)\n"
    )

    def grown(mode: str) -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", code, str(pkg), mode], capture_output=True, text=True, check=True)
        return tuple(map(int, out.stdout.split()))  # type: ignore[return-value]

    weights = os.path.getsize(os.path.join(pkg, "weights.bin"))
    # measured: +47 MiB (the tokenizer) next to 144 MiB of weights; reading the scales through a mapping made it +165 MiB
    file_grown, none = grown("file")
    assert file_grown < weights // 2 and none == 0, (file_grown, weights)
    # measured: +192 MiB, the weights and the tokenizer
    mem_grown, embed = grown("memory")
    assert weights <= mem_grown < weights + 64 * 2**20, (mem_grown, weights)
    assert embed == 49152 * 576
