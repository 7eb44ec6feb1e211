"""Generation through the public API on a tiny model: exact tokens, sampling, stops, cancel, threads."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

import edge_sdk
from edge_sdk.errors import BusyError, ContextOverflowError, InvalidArgumentError
from edge_sdk.generate.generator import Generator
from edge_sdk.generate.sampling import SamplingParams

PROMPT_IDS = [87, 260, 304]  # "The cat"
GREEDY_IDS = [79, 247, 117, 125, 168, 16, 34, 12, 48, 236]
SEED7_IDS = [187, 278, 238, 62, 92, 263, 1, 236, 228, 175]  # temperature 0.9, seed 7
SEED8_IDS = [88, 300, 79, 239, 268, 119, 154, 96, 27, 124]
FILTERED_SEED7_IDS = [79, 263, 202, 46, 191, 269, 8, 217, 97, 92]  # + top_k 5, top_p 0.9, min_p 0.05, rep 1.3


@pytest.fixture()
def model(tiny_gguf):
    with edge_sdk.load(tiny_gguf, backend="numpy", ctx=64, kv_dtype="f32") as m:  # the ids below are for f32 KV
        yield m


def ids(model, **kw):
    return list(model._gen.stream_tokens(model.tokenize("The cat"), SamplingParams(**kw)))


def test_tokenize_and_greedy(model):
    assert model.tokenize("The cat") == PROMPT_IDS
    assert ids(model, max_tokens=10) == GREEDY_IDS
    assert model.generate("The cat", max_tokens=10) == model.detokenize(GREEDY_IDS)
    assert model.last_stats["generated_tokens"] == 10 and model.last_stats["stop_reason"] == "length"


def test_seeded_sampling_is_reproducible(model):
    assert ids(model, max_tokens=10, temperature=0.9, seed=7) == SEED7_IDS
    assert ids(model, max_tokens=10, temperature=0.9, seed=7) == SEED7_IDS
    assert ids(model, max_tokens=10, temperature=0.9, seed=8) == SEED8_IDS
    kw = dict(temperature=0.9, top_k=5, top_p=0.9, min_p=0.05, repetition_penalty=1.3, seed=7)
    assert ids(model, max_tokens=10, **kw) == FILTERED_SEED7_IDS


def test_stream_pieces_join_to_generate(model):
    pieces = list(model.stream("The cat", max_tokens=10, temperature=0.9, seed=7))
    assert "".join(pieces) == model.generate("The cat", max_tokens=10, temperature=0.9, seed=7)
    assert "".join(pieces) == model.detokenize(SEED7_IDS)


def test_stop_string_cuts_the_text(model):
    full = model.detokenize(GREEDY_IDS)
    stop = full[4:6]
    out = model.generate("The cat", max_tokens=10, stop=[stop])
    assert out == full[: full.index(stop)]
    assert model.last_stats["stop_reason"] == "stop"


def test_prompt_longer_than_context(tiny_gguf):
    with edge_sdk.load(tiny_gguf, backend="numpy", ctx=8) as m:
        with pytest.raises(ContextOverflowError, match="the prompt has 13 tokens but the context holds 8"):
            m.generate("Once upon a time", max_tokens=4)
        # generation that reaches the end of the context stops there
        m.generate("The cat", max_tokens=100)
        assert m.last_stats["stop_reason"] == "context" and m.last_stats["generated_tokens"] == 6


def test_unknown_sampling_parameter(model):
    with pytest.raises(TypeError, match=r"unknown sampling parameters \['temp'\]"):
        model.generate("x", temp=1.0)


def test_cancel_midway_keeps_the_model_usable(model):
    stop = threading.Event()
    got = []
    for piece in model.stream("The cat", max_tokens=10, cancel=stop):
        got.append(piece)
        if len(got) == 3:
            stop.set()
    assert model.last_stats["stop_reason"] == "cancelled"
    # the third text piece completes with the fourth token (the first pieces are partial UTF-8 bytes)
    assert model.last_stats["generated_tokens"] == 4
    assert model.detokenize(GREEDY_IDS).startswith("".join(got))
    assert ids(model, max_tokens=10) == GREEDY_IDS


def test_closing_a_stream_early_releases_the_model(model):
    it = model.stream("The cat", max_tokens=10)
    next(it)
    with pytest.raises(BusyError, match="unfinished stream"):
        model.generate("The cat", max_tokens=2)
    it.close()
    assert model.last_stats["stop_reason"] == "cancelled"
    assert ids(model, max_tokens=10) == GREEDY_IDS


def test_timeout(model):
    model.generate("The cat", max_tokens=10, timeout=0.0)
    assert model.last_stats["stop_reason"] == "timeout" and model.last_stats["generated_tokens"] == 0


def test_concurrent_requests_are_serialized(model):
    expected = model.generate("The cat", max_tokens=10)
    results = [None] * 4

    def work(i):
        results[i] = model.generate("The cat", max_tokens=10)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


def test_busy_timeout(tiny_gguf):
    with edge_sdk.load(tiny_gguf, backend="numpy", busy_timeout=0.05) as m:
        it = m.stream("The cat", max_tokens=5)
        next(it)
        err = []
        t = threading.Thread(target=lambda: err.append(pytest.raises(BusyError, m.generate, "x")))
        t.start()
        t.join()
        assert "busy with another request" in str(err[0].value)
        it.close()


def test_chat_reuses_the_cached_prefix(tiny_gguf):
    model = edge_sdk.load(tiny_gguf, backend="numpy", ctx=128)
    msgs = [{"role": "user", "content": "hi"}]
    first = model.chat(msgs, max_tokens=6)
    n_first = model.last_stats["prompt_tokens"]
    assert n_first == 78
    msgs += [{"role": "assistant", "content": first}, {"role": "user", "content": "more"}]
    model.chat(msgs, max_tokens=4)
    # the system prompt and first user turn are still in the cache
    assert model.last_stats["reused_tokens"] >= n_first - 1


def test_generator_rejects_bad_ids(model):
    gen = Generator(model.backend, model.tokenizer)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 306\)"):  # the backend's check, at the forward
        list(gen.stream_tokens([5, 10_000], SamplingParams()))
    with pytest.raises(ValueError, match="the prompt is empty"):
        list(gen.stream_tokens([], SamplingParams()))


def test_hf_dir_and_gguf_generate_the_same(tiny_gguf, tiny_hf_dir):
    with edge_sdk.load(tiny_hf_dir, backend="numpy") as a, edge_sdk.load(tiny_gguf, backend="numpy") as b:
        assert a.generate("The cat", max_tokens=10) == b.generate("The cat", max_tokens=10)


def test_native_backend_matches_numpy_on_a_long_prompt(tiny_gguf):
    """A prompt longer than the native core's 64-token chunk runs in chunks and gives the reference's tokens."""
    from edge_sdk.backends.native import library as native_library

    ok, why = native_library.available()
    if not ok:
        pytest.skip(f"native core unavailable: {why}")
    msgs = [{"role": "user", "content": "hi"}]  # 78 prompt tokens with the default system prompt
    with edge_sdk.load(tiny_gguf, backend="native", ctx=128, threads=1) as nat, \
            edge_sdk.load(tiny_gguf, backend="numpy", ctx=128) as ref:
        assert nat.chat(msgs, max_tokens=8) == ref.chat(msgs, max_tokens=8)
        assert nat.last_stats["prompt_tokens"] == 78 and nat.last_stats["generated_tokens"] == 8


def test_cancel_and_timeout_stop_a_long_prefill(tiny_gguf):
    """Checked between prefill chunks: a long prompt stops at the next chunk, the chunks done stay cached,
    and the next request gives a fresh model's text."""
    msgs = [{"role": "user", "content": "hi"}]  # 78 prompt tokens: 10 chunks of 8
    with edge_sdk.load(tiny_gguf, backend="numpy", ctx=128) as fresh:
        expected = fresh.chat(msgs, max_tokens=6)
    with edge_sdk.load(tiny_gguf, backend="numpy", ctx=128) as m:
        m._gen.prefill_chunk = 8
        stop = threading.Event()
        calls = []
        forward = m.backend.forward

        def counting(tokens, pos, last_only=False):
            calls.append((pos, len(tokens)))
            if len(calls) == 3:
                stop.set()  # as if another thread cancelled during the third chunk
            return forward(tokens, pos, last_only)

        m.backend.forward = counting
        assert m.chat(msgs, max_tokens=6, cancel=stop) == ""
        assert calls == [(0, 8), (8, 8), (16, 8)]
        assert m.last_stats["stop_reason"] == "cancelled" and m.last_stats["generated_tokens"] == 0
        assert len(m._gen.cached) == 24
        calls.clear()
        assert m.chat(msgs, max_tokens=6, timeout=0.0) == ""  # past its deadline before the first chunk
        assert m.last_stats["stop_reason"] == "timeout" and calls == []
        assert m.chat(msgs, max_tokens=6) == expected
        assert m.last_stats["reused_tokens"] == 24 and calls[0] == (24, 8)


@pytest.mark.parametrize("kw,message", [
    ({"timeout": -1}, "timeout must be a finite number of seconds >= 0 (or None), got -1"),
    ({"timeout": float("nan")}, "timeout must be a finite number of seconds >= 0 (or None), got nan"),
    ({"timeout": "5"}, "timeout must be a finite number of seconds >= 0 (or None), got '5'"),
])
def test_bad_timeouts(model, kw, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        model.generate("The cat", max_tokens=2, **kw)


@pytest.mark.parametrize("kw,message", [
    ({"ctx": 0}, "ctx must be an int >= 1 (or None for the default), got 0"),
    ({"threads": 0}, "threads must be an int >= 1 (or None for the default), got 0"),
    ({"threads": 100_000}, "threads must be at most 256, got 100000"),
    ({"ctx": 2.5}, "ctx must be an int >= 1 (or None for the default), got 2.5"),
    ({"busy_timeout": -5}, "busy_timeout must be a finite number of seconds >= 0 (or None), got -5"),
])
def test_bad_load_arguments(tiny_gguf, kw, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        edge_sdk.load(tiny_gguf, backend="numpy", **kw)


@pytest.mark.parametrize("prompt,message", [
    ([1.5], "token ids must be ints: 'float' object cannot be interpreted as an integer"),
    ([True], "token ids must be ints, not booleans"),
    (["a"], "token ids must be ints: 'str' object cannot be interpreted as an integer"),
    ("abc", "token ids must be a sequence of ints, got str"),
])
def test_non_integer_token_ids(model, prompt, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        "".join(model.stream_ids(prompt, max_tokens=2))


def test_failed_request_resets_the_stats(tiny_gguf):
    with edge_sdk.load(tiny_gguf, backend="numpy", ctx=8) as m:
        m.generate("The cat", max_tokens=2)
        assert m.last_stats["generated_tokens"] == 2
        with pytest.raises(ContextOverflowError):
            m.generate("Once upon a time", max_tokens=4)
        assert m.last_stats["generated_tokens"] == 0 and m.last_stats["prompt_tokens"] == 0


def test_leaving_with_an_open_stream_closes_it(tiny_gguf):
    with pytest.raises(KeyError, match="the user's own error"):
        with edge_sdk.load(tiny_gguf, backend="numpy") as m:
            it = m.stream("The cat", max_tokens=5)
            next(it)
            raise KeyError("the user's own error")
    assert m._closed and m.last_stats["stop_reason"] == "cancelled"
    with edge_sdk.load(tiny_gguf, backend="numpy") as m2:
        it = m2.stream("The cat", max_tokens=5)
        next(it)
    assert m2._closed and m2.last_stats["stop_reason"] == "cancelled"
    assert list(it) == []  # the stream was closed with the model
    with pytest.raises(edge_sdk.errors.EdgeSDKError, match="the model is closed"):
        m2.generate("The cat")


@pytest.mark.parametrize("tokens,pos,message", [
    (np.array([1.7]), 0, "token ids must be integers, got dtype float64"),
    (["a"], 0, "token ids must be integers, got dtype <U1"),
    ([2**70], 0, "token ids must be integers, got dtype object"),
    ([1], 1.5, "pos must be an integer, got 1.5"),
    ([1], "1", "pos must be an integer, got '1'"),
    ([1], None, "pos must be an integer, got None"),
    ([1], True, "pos must be an integer, got True"),
])
def test_forward_input_checks_shared_by_the_runtime_backends(tokens, pos, message):
    """The ONNX and TFLite backends' forward() refuses what it cannot run exactly, instead of casting it."""
    from edge_sdk.backends.base import check_forward_tokens

    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        check_forward_tokens(tokens, pos, ctx=8, vocab_size=306)
    assert check_forward_tokens(np.array([3, 4], dtype=np.int32), np.int64(2), ctx=8, vocab_size=306).tolist() == [[3, 4]]


def test_a_stop_in_the_middle_of_a_character_drops_it(model):
    """GREEDY_IDS[1] is the first byte of a two-byte character: a cancel after it ends the text at "L",
    as closing the stream does, not with a U+FFFD for the unfinished character."""
    assert model.detokenize(GREEDY_IDS[:1]) == "L" and model.detokenize(GREEDY_IDS[:2]) == "L\ufffd"
    stop = threading.Event()
    forward, calls = model.backend.forward, []

    def counting(tokens, pos, last_only=False):
        calls.append(pos)
        if len(calls) == 3:  # prefill, then the forwards of the first and second generated tokens
            stop.set()
        return forward(tokens, pos, last_only)

    model.backend.forward = counting
    try:
        assert model.generate("The cat", max_tokens=10, cancel=stop) == "L"
    finally:
        model.backend.forward = forward
    assert model.last_stats["stop_reason"] == "cancelled" and model.last_stats["generated_tokens"] == 2
    assert model.generate("The cat", max_tokens=10) == model.detokenize(GREEDY_IDS)
