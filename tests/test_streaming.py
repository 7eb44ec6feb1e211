"""TextStreamer never splits a character; StopMatcher cuts across piece boundaries."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from tiny_vocab import gguf_metadata, tiny_gpt2_vocab, tiny_spm_vocab  # noqa: E402

from edge_sdk.generate.sampling import SamplingError  # noqa: E402
from edge_sdk.text.streaming import StopMatcher, StopResult, TextStreamer  # noqa: E402
from edge_sdk.importers.gguf_vocab import tokenizer_from_gguf, tokenizer_from_gguf_metadata  # noqa: E402
from edge_sdk.text.tokenizer import Tokenizer  # noqa: E402

TEXT = "Hello world, café 中 🎉!"


@pytest.fixture(scope="module")
def gpt2_tok() -> Tokenizer:
    return tokenizer_from_gguf_metadata(gguf_metadata(tiny_gpt2_vocab()))


@pytest.fixture(scope="module")
def spm_tok() -> Tokenizer:
    return tokenizer_from_gguf_metadata(gguf_metadata(tiny_spm_vocab()))


def _stream(tok, ids, **kw) -> list[str]:
    s = TextStreamer(tok, **kw)
    return [s.push(i) for i in ids] + [s.flush()]


def test_byte_level_pieces(gpt2_tok):
    ids = gpt2_tok.encode(TEXT)
    assert ids == [291, 294, 47, 277, 100, 105, 198, 172, 35, 231, 187, 176, 35, 243, 162, 145, 140, 36]
    # é is 2 byte tokens, 中 3, 🎉 4: nothing is emitted until the character is whole
    assert _stream(gpt2_tok, ids) == [
        "Hello", " world", ",", " c", "a", "f", "", "é", " ", "", "", "中", " ", "", "", "", "🎉", "!", "",
    ]  # fmt: skip


def test_sentencepiece_pieces_keep_inner_spaces(spm_tok):
    ids = spm_tok.encode(TEXT)
    assert ids == [1, 292, 295, 47, 277, 305, 318, 198, 172, 302, 231, 187, 176, 302, 243, 162, 145, 140, 36]
    # BOS shows nothing, the first piece loses its ▁ like decode() does, later ones keep it
    assert _stream(spm_tok, ids) == [
        "", "Hello", " world", ",", " c", "a", "f", "", "é", " ", "", "", "中", " ", "", "", "", "🎉", "!", "",
    ]  # fmt: skip
    ids = spm_tok.encode("a  b")
    assert [spm_tok.id_to_token(i) for i in ids] == ["<s>", "▁a", "▁▁", "<0x62>"]
    assert _stream(spm_tok, ids) == ["", "a", "  ", "b", ""]


@pytest.mark.parametrize("which", ["gpt2", "spm"])
def test_random_token_streams_concatenate_to_decode(gpt2_tok, spm_tok, which):
    tok = gpt2_tok if which == "gpt2" else spm_tok
    rng = np.random.default_rng(11)
    normal = [i for i in range(tok.vocab_size) if i not in tok.special_ids]
    for _ in range(200):
        ids = rng.choice(normal, size=int(rng.integers(1, 25))).tolist()
        pieces = _stream(tok, ids)
        assert "".join(pieces) == tok.decode(ids), ids
        # only flush may show a replacement character (a sequence left unfinished)
        assert all("\ufffd" not in p or tok.decode(ids).count("\ufffd") for p in pieces[:-1])


def test_valid_text_never_yields_replacement(gpt2_tok, spm_tok):
    texts = [TEXT, "👨\u200d👩\u200d👧 família 日本語 ΑΒΓ", "\t\n  x"]
    for tok in (gpt2_tok, spm_tok):
        for text in texts:
            pieces = _stream(tok, tok.encode(text))
            assert "".join(pieces) == text
            assert not any("\ufffd" in p for p in pieces)


def test_special_tokens(gpt2_tok):
    ids = gpt2_tok.encode("Hi<|im_end|>", special=True)
    assert ids == [75, 108, 2]
    assert _stream(gpt2_tok, ids) == ["H", "i", "", ""]
    assert _stream(gpt2_tok, ids, skip_special=False) == ["H", "i", "<|im_end|>", ""]


def test_flush_shows_an_unfinished_character(gpt2_tok):
    s = TextStreamer(gpt2_tok)
    assert [s.push(i) for i in (75, 231, 187)] == ["H", "", ""]  # "H" + 2 of 中's 3 bytes
    assert s.flush() == "\ufffd"
    assert s.push(108) == "i"  # the streamer goes on after a flush
    assert s.flush() == ""


# ---------------------------------------------------------------------------
# StopMatcher
# ---------------------------------------------------------------------------


def _feed(m: StopMatcher, pieces) -> list[tuple[str, bool]]:
    return [tuple(m.feed(p)) for p in pieces]


def test_stop_across_pieces():
    m = StopMatcher(["\n\n", "User:"])
    assert _feed(m, ["Hello", " wor", "ld\n", "\nmore"]) == [
        ("Hello", False), (" wor", False), ("ld", False), ("", True),
    ]  # fmt: skip
    assert m.stopped
    assert m.feed("late") == StopResult("", True)
    assert m.flush() == ""


def test_stop_split_over_three_pieces_keeps_text_before_it():
    m = StopMatcher(["User:"])
    assert _feed(m, ["Sure.\nUs", "e", "r: next"]) == [("Sure.\n", False), ("", False), ("", True)]


def test_held_tail_released_when_it_is_not_a_stop():
    m = StopMatcher(["User:"])
    assert _feed(m, ["Use", "ful", " Us"]) == [("", False), ("Useful", False), (" ", False)]
    assert m.flush() == "Us"
    assert m.flush() == ""


def test_earliest_stop_wins_and_text_is_cut_before_it():
    m = StopMatcher(["STOP2", "STOP1"])
    assert m.feed("abc STOP1 def STOP2") == StopResult("abc ", True)
    m = StopMatcher(["b", "abc"])
    assert m.feed("xabc") == StopResult("x", True)


def test_stop_hit_inside_one_piece_with_text_after():
    m = StopMatcher(["</s>"])
    assert m.feed("answer</s>junk") == StopResult("answer", True)


def test_no_stop_strings_pass_through():
    m = StopMatcher(())
    assert m.feed("a\n\nb") == StopResult("a\n\nb", False)
    assert m.flush() == ""


def test_overlapping_prefixes_hold_the_longest_tail():
    m = StopMatcher(["aab"])
    assert _feed(m, ["xa", "a", "a", "b"]) == [("x", False), ("", False), ("a", False), ("", True)]


def test_bad_stop_strings():
    with pytest.raises(SamplingError, match="stop strings must be non-empty strings, got ''"):
        StopMatcher(["ok", ""])


# ---------------------------------------------------------------------------
# the real SmolLM2-135M-Instruct vocabulary
# ---------------------------------------------------------------------------


@pytest.mark.real_model
def test_real_model_emoji_and_cjk_stream(real_gguf_path):
    tok = tokenizer_from_gguf(real_gguf_path)
    ids = tok.encode("👍🏽 done")
    assert ids == [10813, 235, 231, 10813, 233, 138, 2294]
    assert _stream(tok, ids) == ["", "", "👍", "", "", "🏽", " done", ""]
    text = "family 👨\u200d👩\u200d👧 日本語のテキスト, Crème brûlée"
    pieces = _stream(tok, tok.encode(text))
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_prompt_context_keeps_the_first_space(spm_tok, gpt2_tok):
    """SentencePiece drops the space of a text's first piece; after a prompt it is not the first piece."""
    prompt, gen = spm_tok.encode("Hello"), spm_tok.encode("the cat", add_bos=False)
    assert [spm_tok.id_to_token(i) for i in prompt + gen] == ["<s>", "▁Hello", "▁the", "▁cat"]
    assert _stream(spm_tok, gen) == ["the", " cat", ""]
    assert _stream(spm_tok, gen, context=prompt) == [" the", " cat", ""]
    assert spm_tok.decode(prompt + gen) == "Hello" + "".join(_stream(spm_tok, gen, context=prompt))
    # byte-level BPE keeps its spaces either way; a long prompt contributes only its last tokens
    ids = gpt2_tok.encode(TEXT)
    assert _stream(gpt2_tok, ids[8:], context=ids[:8]) == _stream(gpt2_tok, ids[8:], context=[0] * 50 + ids[:8])
    assert "".join(_stream(gpt2_tok, ids[8:], context=ids[:8])) == gpt2_tok.decode(ids)[len(gpt2_tok.decode(ids[:8])):]
