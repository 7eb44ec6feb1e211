"""Prompt-cache slots on every backend: greedy token ids with a hit equal those of a cold model, exactly.

Each backend runs the same request sequence twice: on a model with slots, and on one without slots whose
cache is emptied before every request (each request computed from position 0). Between the requests that
should hit a slot, another prompt replaces the live cache, so the prefix must come back from the slot:
the whole prompt but its last token, part of a prompt, and the next turn of a chat.
"""

from __future__ import annotations

import numpy as np
import pytest

import edge_sdk
from edge_sdk.errors import InvalidArgumentError
from edge_sdk.generate.sampling import SamplingParams
from edge_sdk.graphs import SplitPolicy
from edge_sdk.model.config import QuantConfig

TEXT_A = "Once upon a time there was a cat in a big old house near"  # 37 tokens
TEXT_B = "The dog ran"  # 9 tokens
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def pkg_dir(tmp_path_factory, tiny_gguf):
    from edge_sdk.export.convert import convert

    out = tmp_path_factory.mktemp("pc_pkg") / "pkg"
    convert(tiny_gguf, out, QuantConfig(), SplitPolicy(layers_per_graph=1), tflite_graphs=True)
    return str(out)


def _skip_unless_available(backend: str) -> None:
    if backend == "native":
        from edge_sdk.backends.native import library

        ok, why = library.available()
        if not ok:
            pytest.skip(f"native core unavailable: {why}")
    if backend == "tflite":
        try:
            from edge_sdk.backends.tflite_backend import litert_interpreter

            litert_interpreter()
        except Exception as e:  # noqa: BLE001 - any reason LiteRT cannot run is a skip reason
            pytest.skip(f"LiteRT not available: {e}")


BACKENDS = [("native", "f16"), ("native", "f32"), ("numpy", "f16"), ("numpy", "f32"), ("onnx", "f32"),
            ("tflite", "f32")]


def _pair(pkg_dir, backend, kv, **kw):
    _skip_unless_available(backend)
    cold = edge_sdk.load(pkg_dir, backend=backend, kv_dtype=kv, ctx=128, threads=1, slots=0)
    warm = edge_sdk.load(pkg_dir, backend=backend, kv_dtype=kv, ctx=128, threads=1, slots=2, **kw)
    return cold, warm


def _cold(model, ids):
    model._gen.reset()
    return list(model._gen.stream_tokens(ids, SamplingParams(max_tokens=MAX_TOKENS)))


def _warm(model, ids):
    out = list(model._gen.stream_tokens(ids, SamplingParams(max_tokens=MAX_TOKENS)))
    st = model._gen.stats
    return out, (st.cached_tokens, st.reused_tokens, st.restored_tokens)


@pytest.mark.parametrize("backend,kv", BACKENDS)
def test_a_hit_gives_the_tokens_of_a_cold_model(pkg_dir, backend, kv):
    cold, warm = _pair(pkg_dir, backend, kv)
    with cold, warm:
        a, b = cold.tokenize(TEXT_A), cold.tokenize(TEXT_B)
        assert (len(a), len(b)) == (37, 9)
        partial = a[:20] + b  # shares 20 tokens with A
        # (prompt, (cached, kept in place, copied from a slot)) in order
        plan = [(a, (0, 0, 0)),  # miss: slot 0 <- A + its 12 tokens
                (b, (0, 0, 0)),  # miss: slot 1 <- B + 12
                (a, (36, 0, 36)),  # the whole prompt but its last token, from slot 0
                (b, (8, 0, 8)),  # likewise from slot 1
                (partial, (20, 0, 20)),  # part of A, from slot 0 (slot 1, the older, takes it)
                (a, (36, 20, 16))]  # slot 0 again: the 20 rows the live cache shares stay, 16 are copied
        for ids, stats in plan:
            got, got_stats = _warm(warm, ids)
            assert got == _cold(cold, ids)
            assert got_stats == stats
            assert len(got) == MAX_TOKENS


@pytest.mark.parametrize("backend,kv", BACKENDS)
def test_a_chat_turn_after_another_conversation(pkg_dir, backend, kv):
    cold, warm = _pair(pkg_dir, backend, kv)
    with cold, warm:
        chat1 = [{"role": "user", "content": "hi"}]
        other = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "cats"}]
        first = warm.chat(chat1, max_tokens=6)
        assert first == cold.chat(chat1, max_tokens=6)
        n1 = warm.last_stats["prompt_tokens"] + warm.last_stats["generated_tokens"]
        assert warm.last_stats["cached_tokens"] == 0
        cold._gen.reset()
        assert warm.chat(other, max_tokens=6) == cold.chat(other, max_tokens=6)
        cold._gen.reset()
        chat2 = chat1 + [{"role": "assistant", "content": first}, {"role": "user", "content": "more"}]
        assert warm.chat(chat2, max_tokens=6) == cold.chat(chat2, max_tokens=6)
        # the first conversation's prompt and reply come back from its slot; the reply ends in <|im_end|>,
        # which the cache never held (generation stopped before feeding it), hence n1 - 1 or fewer
        stats = warm.last_stats
        assert stats["restored_tokens"] > 0 and stats["cached_tokens"] == stats["reused_tokens"] + stats["restored_tokens"]
        assert n1 - 8 <= stats["cached_tokens"] <= n1


def test_slots_are_reused_least_recently_used_first(pkg_dir):
    _skip_unless_available("native")
    with edge_sdk.load(pkg_dir, backend="native", ctx=128, threads=1, slots=2) as m:
        a, b, c = m.tokenize(TEXT_A), m.tokenize(TEXT_B), m.tokenize("A bird sang")
        for ids in (a, b, c):  # c takes the slot of a, the least recently used
            _warm(m, ids)
        assert [len(s.tokens) for s in m.prompt_cache.slots] == [len(c) + MAX_TOKENS, len(b) + MAX_TOKENS]
        assert _warm(m, b)[1] == (8, 0, 8)  # a hit makes b the most recently used
        assert _warm(m, a)[1] == (0, 0, 0)  # a is gone; it takes the slot of c
        assert _warm(m, c)[1] == (0, 0, 0)
        assert _warm(m, a)[1] == (36, 0, 36)


def test_a_conversation_extends_its_own_slot_copying_only_new_rows(pkg_dir):
    """No allocation per request: a slot's arrays are made once; each save copies the rows it lacks."""
    _skip_unless_available("native")
    with edge_sdk.load(pkg_dir, backend="native", ctx=128, threads=1, slots=2) as m:
        saves = []
        save = m.backend.kv_save
        m.backend.kv_save = lambda rows, start, end: (saves.append((start, end)), save(rows, start, end))
        a = m.tokenize(TEXT_A)
        _warm(m, a)
        slot = m.prompt_cache.slots[0]
        buffers = {name: arr.ctypes.data for name, arr in slot.rows.arrays.items()}
        first = list(slot.tokens)
        more = m.tokenize(" and")
        assert len(first) == 49 and len(more) == 1
        _warm(m, first + more)  # the same conversation goes on
        assert saves == [(0, 49), (49, 49 + 1 + MAX_TOKENS)]
        assert m.prompt_cache.slots[1].tokens == []  # the other slot was not touched
        assert {name: arr.ctypes.data for name, arr in slot.rows.arrays.items()} == buffers


def test_a_slot_holds_the_backends_own_rows(pkg_dir):
    """kv_save and kv_restore copy the backend's arrays bit for bit, in its dtype and layout."""
    _skip_unless_available("native")
    from edge_sdk.backends.kv_state import empty_rows

    with edge_sdk.load(pkg_dir, backend="native", ctx=128, threads=1, slots=0) as m:
        be = m.backend
        layout = be.kv_layout()
        assert (layout.backend, layout.kv_dtype, layout.ctx) == ("native", "f16", 128)
        assert [(a.name, a.dtype, a.shape, a.pos_axis) for a in layout.arrays] == [
            ("k", "<f2", (2, 2, 128, 16), 2), ("v", "<f2", (2, 2, 128, 16), 2)]
        assert layout.bytes_per_position() == 2 * 2 * 2 * 16 * 2
        be.forward(np.arange(1, 11), 0)
        rows = empty_rows(layout, 128)
        be.kv_save(rows, 0, 10)
        k, v = be.core.kv_cache
        saved = k[:, :, :10].copy()
        assert np.array_equal(rows.rows("k", 0, 10), saved)
        be.forward(np.arange(50, 60), 0)  # other tokens overwrite positions 0..9
        assert not np.array_equal(be.core.kv_cache[0][:, :, :10], saved)
        be.kv_restore(rows, 0, 10)
        assert np.array_equal(be.core.kv_cache[0][:, :, :10], saved)


def test_bad_slot_arguments(pkg_dir, tmp_path):
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(InvalidArgumentError, match=r"slots must be an int >= 0 \(or None for the default\)"):
            edge_sdk.load(pkg_dir, backend="numpy", slots=bad)
    with pytest.raises(InvalidArgumentError, match="needs at least one slot; got slots=0"):
        edge_sdk.load(pkg_dir, backend="numpy", slots=0, prompt_cache=tmp_path / "pc")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidArgumentError, match="exists and is not a directory"):
        edge_sdk.load(pkg_dir, backend="numpy", prompt_cache=tmp_path / "file")


def test_default_slots(pkg_dir):
    from edge_sdk.plan.budget import DEFAULT_SLOTS

    with edge_sdk.load(pkg_dir, backend="numpy", ctx=64) as m:
        assert DEFAULT_SLOTS == 2 and len(m.prompt_cache.slots) == 2
        m.generate(TEXT_B, max_tokens=2)
        assert m.last_stats["cached_tokens"] == 0
        assert m.info()["prompt_cache"]["slot_tokens"] == [11, 0]
    with edge_sdk.load(pkg_dir, backend="numpy", ctx=64, slots=0) as m:
        assert m.prompt_cache is None
        m.generate(TEXT_B, max_tokens=2)
        assert m.last_stats["cached_tokens"] == 0
