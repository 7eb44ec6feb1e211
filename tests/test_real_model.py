"""SmolLM2-135M-Instruct end to end: exact greedy tokens, chat, and the accuracy of int8 against float.

The accuracy text is the GPL-3 licence that ships on every Debian machine
(/usr/share/common-licenses/GPL-3); the first 2,048 tokens are scored.
"""

from __future__ import annotations

import os

import pytest

import edge_sdk
from edge_sdk.model.accuracy import evaluate
from edge_sdk.model.config import QuantConfig

pytestmark = pytest.mark.real_model

GPL3 = "/usr/share/common-licenses/GPL-3"
# greedy continuation of "The capital of France is" with the default int8 weights (groups of 32) and KV cache (f16),
# the same as the float model's and llama.cpp Q8_0's. With an f32 KV cache int8 continues " Paris.\n\nThe United
# States has": at that 6th token the top two logits are 0.044 apart, less than what f16 rounding of the cache moves
FRANCE_IDS = [7042, 30, 198, 198, 504, 2988, 314, 42]  # " Paris.\n\nThe answer is:"
FRANCE_F32_KV_IDS = [7042, 30, 198, 198, 504, 1797, 1918, 553]
# how many tokens greedy decoding gives before EOS (or the limit of 64) for the two prompts below
GREEDY_64_LENGTHS = {"The capital of France is": 29, "Once upon a time": 64}
PPL_MAX_INCREASE = 0.02  # int8 perplexity at most 2% above float
TOP1_MIN = 0.95  # int8 picks the float model's most likely next token at least 95% of the time


@pytest.fixture(scope="module")
def smollm(real_gguf_path):
    with edge_sdk.load(real_gguf_path, backend="numpy", ctx=512) as m:
        yield m


def test_capital_of_france(smollm):
    ids = smollm.tokenize("The capital of France is")
    from edge_sdk.generate.sampling import SamplingParams

    got = list(smollm._gen.stream_tokens(ids, SamplingParams(max_tokens=8)))
    assert got == FRANCE_IDS and smollm.details["kv_dtype"] == "f16"
    assert "Paris" in smollm.generate("The capital of France is", max_tokens=8)


@pytest.mark.slow
def test_native_core_equals_the_reference_for_64_tokens(real_gguf_path, smollm):
    """The C core computes the numpy int8 reference's arithmetic bit for bit, so greedy runs never part."""
    from edge_sdk.backends.native import library as native_library
    from edge_sdk.generate.sampling import SamplingParams

    ok, why = native_library.available()
    if not ok:
        pytest.skip(f"native core unavailable: {why}")
    with edge_sdk.load(real_gguf_path, backend="native", ctx=512, threads=2) as nat:
        for prompt in ("The capital of France is", "Once upon a time"):
            ids = nat.tokenize(prompt)
            got = list(nat._gen.stream_tokens(ids, SamplingParams(max_tokens=64)))
            ref = list(smollm._gen.stream_tokens(ids, SamplingParams(max_tokens=64)))
            assert len(got) == GREEDY_64_LENGTHS[prompt] and got == ref, prompt


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

    from edge_sdk.export.convert import ready_package

    pkg = ready_package("smollm2-135m", QuantConfig())
    if pkg is None:
        pytest.skip("the default model's package is not in the cache (edge-sdk pull)")
    code = (
        "import sys; from edge_sdk.export.package import load_package\n"
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


# Why backends may part on greedy text: the native core is the numpy int8 reference bit for bit; ONNX Runtime's
# MatMulNBits (8 bits, accuracy level 4) quantizes the activations and sums the products in its own way, so its
# logits sit within ONNX_VS_NATIVE_LOGITS of the reference's (measured 0.49-0.74 along this path), and greedy decoding
# picks the same token wherever the reference's two best logits are further apart than that.
ONNX_VS_NATIVE_LOGITS = 1.0  # max |onnx - native| logit, teacher-forced along FRANCE_F32_KV_IDS; measured 0.74
NEAR_TIE_STEP = 5  # the 6th token: " United" (native, f32 KV) or " answer" (float model, ONNX, native with f16 KV)


def test_backends_part_only_at_a_near_tie(real_gguf_path):
    """" Paris.\\n\\nThe United States has" (native, f32 KV) against " Paris.\\n\\nThe answer is:" (ONNX): not a tie
    broken differently nor a bug, but two logits 0.044 apart, well inside the bound the backends agree within."""
    import numpy as np

    from edge_sdk.backends.native import library as native_library

    if not native_library.available()[0]:
        pytest.skip("native core unavailable")
    prompt = "The capital of France is"
    logits = {}
    for backend in ("native", "onnx"):
        with edge_sdk.load(real_gguf_path, backend=backend, kv_dtype="f32", ctx=64) as m:
            ids = m.tokenize(prompt)
            path = ids + FRANCE_F32_KV_IDS
            logits[backend] = m.backend.forward(np.array(path), 0)[len(ids) - 1 : -1]  # (8, vocab)
            greedy = list(m._gen.stream_tokens(ids, edge_sdk.generate.sampling.SamplingParams(max_tokens=8)))
            assert greedy == (FRANCE_F32_KV_IDS if backend == "native" else FRANCE_IDS), backend
    diff = np.abs(logits["onnx"] - logits["native"]).max(axis=1)
    assert diff.max() <= ONNX_VS_NATIVE_LOGITS, diff
    top2 = np.sort(logits["native"], axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]
    assert 0.03 < margins[NEAR_TIE_STEP] < 0.06  # measured 0.044
    assert margins[NEAR_TIE_STEP] < diff[NEAR_TIE_STEP]  # the one step where the bound allows a different choice
    assert all(margins[:NEAR_TIE_STEP] > 2 * ONNX_VS_NATIVE_LOGITS * 0.4)  # the first five are clear (>= 0.9)
