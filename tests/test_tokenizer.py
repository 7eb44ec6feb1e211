"""Tokenizer: GGUF and Hugging Face routes against llama.cpp ground truth.

Every pinned id list below was produced by llama.cpp's `llama-tokenize`
(commit c392e5094deaf2d1a7c18683214f007fad3fe42b, `--ids --no-escape`, with
and without `--no-parse-special`) on GGUF files holding the same vocabulary.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from tiny_vocab import (  # noqa: E402
    gguf_metadata,
    tiny_gpt2_vocab,
    tiny_spm_vocab,
    write_tiny_gguf_tokenizer,
    write_tiny_hf_tokenizer,
)

from edge_sdk.errors import InvalidArgumentError, TokenizerError  # noqa: E402
from edge_sdk.importers.gguf_vocab import PRE_TOKENIZERS, tokenizer_from_gguf, tokenizer_from_gguf_metadata  # noqa: E402
from edge_sdk.importers.hf_vocab import tokenizer_from_hf_dir  # noqa: E402
from edge_sdk.text.tokenizer import Tokenizer  # noqa: E402

# ---------------------------------------------------------------------------
# tiny byte-level BPE (SmolLM2-like)
# ---------------------------------------------------------------------------

# (text, ids with special=True, ids with special=False)
GPT2_CASES = [
    ("Hello world", [291, 294], None),
    ("the cat sat on the mat", [119, 260, 304, 305, 35, 264, 265, 303, 267], None),
    ("Hello  world", [291, 35, 294], None),
    ("newline\nhere\n\n", [113, 104, 122, 111, 261, 104, 13, 260, 266, 298], None),
    ("café 中 🎉!", [102, 100, 105, 198, 172, 35, 231, 187, 176, 35, 243, 162, 145, 140, 36], None),
    ("12 cats, 3.5 dogs", [52, 53, 304, 118, 47, 35, 54, 49, 56, 35, 103, 114, 106, 118], None),
    (
        "<|im_start|>user\nHi<|im_end|>\n",
        [1, 296, 13, 75, 108, 2, 13],
        [63, 127, 108, 112, 98, 118, 119, 100, 117, 119, 127, 65, 296, 13, 75, 108, 63, 127, 108, 112, 98, 269, 103, 127, 65, 13],
    ),
    ("", [], None),
    (" ", [35], None),
]

# tiny SentencePiece vocabulary (TinyLlama-like, add_bos, add_space_prefix)
SPM_CASES = [
    ("Hello world", [1, 292, 295], None),
    ("the cat sat on the mat", [1, 261, 301, 266, 268, 302, 265, 261, 282, 268], None),
    ("Hello  world", [1, 292, 302, 295], None),
    ("   leading", [1, 300, 300, 313, 303, 305, 312, 278], None),
    ("trailing  ", [1, 259, 311, 305, 307, 313, 278, 300], None),
    ("newline\nhere\n\n", [1, 302, 308, 303, 316, 313, 262, 303, 13, 260, 267, 13, 13], None),
    ("café 中 🎉!", [1, 277, 305, 318, 198, 172, 302, 231, 187, 176, 302, 243, 162, 145, 140, 36], None),
    ("is it in the house? and then", [1, 285, 283, 304, 284, 261, 276, 279, 309, 303, 66, 297, 261, 308], None),
    ("<s>hello</s>", [1, 1, 302, 260, 271, 306, 2], [1, 302, 63, 309, 65, 260, 271, 306, 63, 50, 309, 65]),
    (
        # user-defined tokens (<|user|>, <|assistant|>) are parsed even when special=False
        "<|user|>\nHi there</s>\n<|assistant|>\n",
        [1, 324, 302, 13, 321, 307, 261, 267, 2, 302, 13, 325, 302, 13],
        [1, 324, 302, 13, 321, 307, 261, 267, 63, 50, 309, 65, 13, 325, 302, 13],
    ),
    ("a<unk>b", [1, 263, 0, 302, 101], [1, 263, 63, 314, 308, 110, 65, 101]),
    ("", [1], None),
    (" ", [1, 300], None),
]


def _cases(cases):
    for text, with_special, without in cases:
        yield text, True, with_special
        yield text, False, with_special if without is None else without


@pytest.fixture(scope="module")
def gpt2_tok() -> Tokenizer:
    return tokenizer_from_gguf_metadata(gguf_metadata(tiny_gpt2_vocab()))


@pytest.fixture(scope="module")
def spm_tok() -> Tokenizer:
    return tokenizer_from_gguf_metadata(gguf_metadata(tiny_spm_vocab()))


@pytest.mark.parametrize("text,special,ids", list(_cases(GPT2_CASES)))
def test_tiny_gpt2_matches_llama_cpp(gpt2_tok, text, special, ids):
    assert gpt2_tok.encode(text, special=special) == ids


@pytest.mark.parametrize("text,special,ids", list(_cases(SPM_CASES)))
def test_tiny_spm_matches_llama_cpp(spm_tok, text, special, ids):
    assert spm_tok.encode(text, special=special) == ids


def test_tiny_fields(gpt2_tok, spm_tok):
    assert (gpt2_tok.vocab_size, gpt2_tok.bos_id, gpt2_tok.eos_id, gpt2_tok.add_bos) == (306, 1, 2, False)
    assert gpt2_tok.eos_ids == frozenset({0, 2})  # <|endoftext|> and <|im_end|>
    assert gpt2_tok.special_ids == frozenset({0, 1, 2})
    assert (spm_tok.vocab_size, spm_tok.bos_id, spm_tok.eos_id, spm_tok.add_bos) == (327, 1, 2, True)
    assert spm_tok.eos_ids == frozenset({2})
    assert spm_tok.special_ids == frozenset({0, 1, 2})  # user-defined 324..326 are not special
    assert gpt2_tok.chat_template.startswith("{% for message in messages %}")


def test_add_bos_and_eos_overrides(gpt2_tok, spm_tok):
    assert gpt2_tok.encode("Hello", add_bos=True) == [1, 291]
    assert spm_tok.encode("Hello", add_bos=False) == [292]
    assert spm_tok.encode("Hello", add_eos=True) == [1, 292, 2]


def test_decode_round_trip(gpt2_tok, spm_tok):
    texts = ["Hello world", "café 中 🎉!", "   leading", "trailing  ", "tabs\tand\nlines\n\n"]
    for tok in (gpt2_tok, spm_tok):
        for text in texts:
            assert tok.decode(tok.encode(text)) == text
    ids = gpt2_tok.encode("<|im_start|>user\nHi<|im_end|>\n", special=True)
    assert gpt2_tok.decode(ids) == "user\nHi\n"
    assert gpt2_tok.decode(ids, skip_special=False) == "<|im_start|>user\nHi<|im_end|>\n"
    assert spm_tok.decode([1, 324, 302, 13, 2]) == "<|user|> \n"


def test_decode_is_lossy_utf8_of_token_bytes(gpt2_tok, spm_tok):
    # "/" then a lone continuation byte: the "/" survives, the stray byte becomes U+FFFD
    # (the Hugging Face ByteFallback decoder would turn the whole byte run into U+FFFD).
    assert spm_tok.decode([1, 50, 168]) == "/\ufffd"
    assert gpt2_tok.decode([50, 168]) == "/\ufffd"
    assert gpt2_tok.decode([231, 187]) == "\ufffd"  # 2 of the 3 bytes of 中
    assert spm_tok.strips_leading_space and not gpt2_tok.strips_leading_space
    assert spm_tok.decode([302, 263]) == " a"  # only the first of the two spaces is dropped


def test_token_bytes_and_strings(gpt2_tok, spm_tok):
    assert gpt2_tok.id_to_token(294) == "Ġworld"
    assert gpt2_tok.token_bytes(294) == b" world"
    assert gpt2_tok.token_bytes(198) == b"\xc3"  # first byte of "é": not valid UTF-8 alone
    assert gpt2_tok.token_bytes(2) == b"<|im_end|>"
    assert spm_tok.id_to_token(13) == "<0x0A>"
    assert spm_tok.token_bytes(13) == b"\n"
    assert spm_tok.token_bytes(261) == b" the"
    assert spm_tok.token_bytes(1) == b"<s>"
    assert spm_tok.token_bytes(324) == b"<|user|>"


def test_pre_tokenizer_names_are_llama_cpp_ones():
    for name in ("default", "smollm", "llama-bpe", "llama3", "gpt-2", "qwen2", "starcoder"):
        assert name in PRE_TOKENIZERS


def _pre_vocab(pre: str) -> dict:
    """The tiny vocabulary plus tokens that show how each pre-tokenizer cuts words."""
    v = tiny_gpt2_vocab()
    extra = [("2", "0"), ("2", "4"), ("20", "24"), ("20", "2"), ("Ġ", "2"), ("Ġ2", "0"), ("Ġ20", "24"),
             ("!", "!"), ("'", "T"), ("D", "O"), ("DO", "N")]  # fmt: skip
    v["tokens"] = v["tokens"] + [a + b for a, b in extra] + ["Ġxyz"]  # Ġxyz: no merge reaches it
    v["token_type"] = v["token_type"] + [1] * (len(extra) + 1)
    v["merges"] = v["merges"] + extra
    v["pre"] = pre
    return v


# " 2024!! DON'T xyz": digits one by one (smollm, qwen2), in runs (gpt-2), by
# threes (llama3, default); "'T" is a contraction only for the Llama 3 regexes;
# llama-bpe emits the unreachable word token "Ġxyz" whole (ignore_merges).
@pytest.mark.parametrize(
    "pre,ids",
    [
        ("smollm", [35, 53, 51, 53, 55, 313, 35, 316, 42, 87, 35, 123, 124, 125]),
        ("default", [35, 309, 55, 313, 35, 316, 42, 87, 35, 123, 124, 125]),
        ("gpt-2", [35, 308, 313, 35, 316, 42, 87, 35, 123, 124, 125]),
        ("llama-bpe", [35, 309, 55, 313, 35, 316, 314, 317]),
        ("qwen2", [35, 53, 51, 53, 55, 313, 35, 316, 314, 35, 123, 124, 125]),
        ("dbrx", [35, 309, 55, 313, 35, 316, 314, 35, 123, 124, 125]),
    ],
)
def test_pre_tokenizers_match_llama_cpp(pre, ids):
    tok = tokenizer_from_gguf_metadata(gguf_metadata(_pre_vocab(pre)))
    assert tok.encode(" 2024!! DON'T xyz") == ids


def test_llama_bpe_adds_bos_unless_metadata_says_otherwise():
    meta = gguf_metadata(_pre_vocab("llama-bpe"))
    del meta["tokenizer.ggml.add_bos_token"]
    assert tokenizer_from_gguf_metadata(meta).encode("Hi") == [1, 75, 108]


def test_missing_pre_means_default():
    meta = gguf_metadata(_pre_vocab("default"))
    del meta["tokenizer.ggml.pre"]
    assert tokenizer_from_gguf_metadata(meta).encode(" 2024!!") == [35, 309, 55, 313]


# ---------------------------------------------------------------------------
# GGUF file, Hugging Face directory and package routes agree
# ---------------------------------------------------------------------------

ROUTE_TEXTS = [
    "Hello world, the cat sat on the mat.",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|user|>\nHello</s>\n<|assistant|>\n",
    "   spaces  and\ttabs\n\n12345 café 🎉",
]


@pytest.mark.parametrize("make_vocab", [tiny_gpt2_vocab, tiny_spm_vocab])
def test_gguf_file_hf_dir_and_json_agree(tmp_path, make_vocab):
    import gguf

    vocab = make_vocab()
    path = str(tmp_path / "tok.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    write_tiny_gguf_tokenizer(writer, vocab)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    write_tiny_hf_tokenizer(tmp_path / "hf", vocab)

    from_gguf = tokenizer_from_gguf(path)
    from_hf = tokenizer_from_hf_dir(tmp_path / "hf")
    from_pkg = Tokenizer.from_json(from_gguf.to_json(), **from_gguf.meta())
    for tok in (from_hf, from_pkg):
        assert tok.meta() == from_gguf.meta()
        assert tok.vocab_size == from_gguf.vocab_size
        for text in ROUTE_TEXTS:
            for special in (True, False):
                assert tok.encode(text, special=special) == from_gguf.encode(text, special=special), (text, special)
        for i in range(from_gguf.vocab_size):
            assert tok.token_bytes(i) == from_gguf.token_bytes(i)


def test_meta_is_json_serialisable(gpt2_tok):
    meta = json.loads(json.dumps(gpt2_tok.meta()))
    assert meta == {"bos_id": 1, "eos_id": 2, "eos_ids": [0, 2], "add_bos": False, "add_eos": False,
                    "chat_template": tiny_gpt2_vocab()["chat_template"]}  # fmt: skip


def test_hf_dir_config_variants(tmp_path):
    vocab = tiny_gpt2_vocab()
    write_tiny_hf_tokenizer(tmp_path, vocab)
    cfg_path = tmp_path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["bos_token"] = {"content": "<|im_start|>", "lstrip": False}
    cfg["chat_template"] = [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]
    del cfg["add_bos_token"]
    cfg_path.write_text(json.dumps(cfg))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0]}))
    tok = tokenizer_from_hf_dir(tmp_path)
    assert (tok.bos_id, tok.eos_id, tok.add_bos, tok.chat_template) == (1, 2, False, "D")
    assert tok.eos_ids == frozenset({0, 2})

    # no template in the config: chat_template.jinja is used
    del cfg["chat_template"]
    cfg_path.write_text(json.dumps(cfg))
    (tmp_path / "chat_template.jinja").write_text("J")
    assert tokenizer_from_hf_dir(tmp_path).chat_template == "J"


def test_hf_dir_add_bos_from_post_processor(tmp_path):
    vocab = tiny_spm_vocab()
    write_tiny_hf_tokenizer(tmp_path, vocab)
    cfg_path = tmp_path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["add_bos_token"]  # the TemplateProcessing post-processor adds <s>
    cfg_path.write_text(json.dumps(cfg))
    assert tokenizer_from_hf_dir(tmp_path).encode("Hello world") == [1, 292, 295]


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def _broken(change) -> dict:
    meta = gguf_metadata(tiny_gpt2_vocab())
    change(meta)
    return meta


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda m: m.pop("tokenizer.ggml.model"), "no tokenizer.ggml.model"),
        (lambda m: m.update({"tokenizer.ggml.model": "bert"}), "unsupported tokenizer model 'bert'; supported: gpt2, llama"),
        (lambda m: m.update({"tokenizer.ggml.model": "t5"}), "unsupported tokenizer model 't5'"),
        (lambda m: m.update({"tokenizer.ggml.model": "rwkv"}), "unsupported tokenizer model 'rwkv'"),
        (lambda m: m.update({"tokenizer.ggml.pre": "klingon"}), "unsupported pre-tokenizer tokenizer.ggml.pre='klingon'; supported: "),
        (lambda m: m.pop("tokenizer.ggml.tokens"), "no tokenizer.ggml.tokens"),
        (lambda m: m.update({"tokenizer.ggml.tokens": []}), "non-empty array of strings"),
        (lambda m: m["tokenizer.ggml.token_type"].pop(), "token_type has 305 entries but tokenizer.ggml.tokens has 306"),
        (lambda m: m.pop("tokenizer.ggml.merges"), "no tokenizer.ggml.merges"),
        (lambda m: m["tokenizer.ggml.merges"].append("nospace"), "malformed BPE merge 'nospace'"),
        (lambda m: m["tokenizer.ggml.merges"].append("Ġ qqq"), "invalid byte-level BPE vocabulary"),
        (lambda m: m.update({"tokenizer.ggml.bos_token_id": "1"}), "bos_token_id should be an integer"),
    ],
)
def test_bad_gguf_metadata(change, message):
    with pytest.raises(TokenizerError, match=re.escape(message)):
        tokenizer_from_gguf_metadata(_broken(change))


def test_spm_without_scores():
    meta = gguf_metadata(tiny_spm_vocab())
    del meta["tokenizer.ggml.scores"]
    with pytest.raises(TokenizerError, match="no tokenizer.ggml.scores"):
        tokenizer_from_gguf_metadata(meta)


def test_bad_inputs(gpt2_tok, tmp_path):
    with pytest.raises(InvalidArgumentError, match="encode\\(\\) takes a str, got bytes"):
        gpt2_tok.encode(b"Hello")
    with pytest.raises(InvalidArgumentError, match="token id 306 is outside the vocabulary \\(size 306\\)"):
        gpt2_tok.decode([5, 306])
    with pytest.raises(InvalidArgumentError, match="token id -1 is outside"):
        gpt2_tok.token_bytes(-1)
    with pytest.raises(InvalidArgumentError, match="token ids must be integers, got 'a'"):
        gpt2_tok.decode(["a"])
    with pytest.raises(TokenizerError, match="no tokenizer.json"):
        tokenizer_from_hf_dir(tmp_path)
    write_tiny_hf_tokenizer(tmp_path, tiny_gpt2_vocab())
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    cfg["eos_token"] = "</s>"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(TokenizerError, match="eos_token '</s>' is not in tokenizer.json's vocabulary"):
        tokenizer_from_hf_dir(tmp_path)
    with pytest.raises(TokenizerError, match="not a valid tokenizer.json text"):
        Tokenizer.from_json("{}", bos_id=None, eos_ids=[], add_bos=False)


def test_numpy_ids_decode(gpt2_tok):
    np = pytest.importorskip("numpy")
    assert gpt2_tok.decode(np.array([291, 294], dtype=np.int64)) == "Hello world"


# ---------------------------------------------------------------------------
# the real SmolLM2-135M-Instruct vocabulary
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_meta(real_gguf_path):
    from edge_sdk.importers.gguf_meta import read_gguf_metadata

    return read_gguf_metadata(real_gguf_path)


@pytest.fixture(scope="module")
def real_tok(real_meta) -> Tokenizer:
    return tokenizer_from_gguf_metadata(real_meta)


REAL_CASES = [
    ("Hello world, the capital of France is Paris.", [19556, 905, 28, 260, 3575, 282, 4649, 314, 7042, 30]),
    ("<|im_start|>user\nHi<|im_end|>\n", [1, 4093, 198, 26843, 2, 198]),
    ("It costs $1,234.56 (or €99.99) in 2024!",
     [1589, 3499, 1885, 33, 28, 34, 35, 36, 30, 37, 38, 365, 270, 24927, 41, 41, 30, 41, 41, 25, 281, 216, 34, 32, 34, 36, 17]),
    ("   leading spaces and  double  spaces   ", [256, 2899, 5600, 284, 216, 5561, 216, 5600, 333]),
    ("tabs\tand\nnewlines\n\n\tindented\r\nwindows", [100, 7366, 197, 397, 198, 2241, 5110, 1116, 197, 526, 6574, 201, 198, 37066]),
    ("Crème brûlée à la française, naïve café",
     [25711, 11180, 1558, 1156, 41307, 92, 20174, 25782, 2618, 275, 45720, 33815, 28, 15486, 46494, 37366]),
    ("日本語のテキストと中文，还有한국어",
     [23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100, 226, 7365, 118, 28589, 29184,
      12831, 18276, 242, 30746, 33085, 246, 181, 130, 251, 183, 240, 129]),
    ("emoji 🎉👍🏽 and ❤️ family 👨\u200d👩\u200d👧",
     [391, 33777, 15107, 232, 227, 10813, 235, 231, 10813, 233, 138, 284, 4636, 247, 114, 31752, 1564, 15107, 235, 118, 321,
      231, 10813, 235, 119, 321, 231, 10813, 235, 117]),
    ("def f(x):\n    return x**2  # square\n\n\nprint(f(12345678))",
     [1604, 275, 24, 104, 727, 472, 1003, 1792, 828, 34, 216, 907, 5222, 1116, 198, 3272, 24, 86, 24, 33, 34, 35, 36, 37, 38,
      39, 40, 1292]),
    ("I'm sure they'll say we've done it, didn't we? YOU'RE RIGHT'S",
     [57, 5248, 2090, 502, 3060, 1643, 392, 3543, 2294, 357, 28, 3683, 982, 392, 47, 12246, 23, 3256, 428, 20128, 23, 67]),
    ("x == 3 && y != 4 || z <= 5; a->b += c^d ~e |f",
     [104, 1758, 216, 35, 1456, 22, 329, 6541, 216, 36, 14669, 1892, 10204, 216, 37, 43, 253, 22690, 82, 4519, 265, 78, 84,
      11417, 85, 2504, 86]),
    ("ünïcödé ΑΒΓ δεζ Привет мир",
     [47682, 25972, 83, 7466, 84, 2756, 5664, 235, 153, 236, 153, 237, 31035, 14240, 30273, 5470, 249, 46879, 16464, 32547,
      41337, 7872, 9175]),
    ("a<|im_end|>b <|endoftext|> c", [81, 2, 82, 216, 0, 265]),
]  # fmt: skip


@pytest.mark.real_model
@pytest.mark.parametrize("text,ids", REAL_CASES)
def test_real_model_matches_llama_cpp(real_tok, text, ids):
    assert real_tok.encode(text, special=True) == ids
    assert real_tok.decode(ids, skip_special=False) == text


@pytest.mark.real_model
def test_real_model_special_as_text(real_tok):
    assert real_tok.encode("a<|im_end|>b <|endoftext|> c") == [
        81, 44, 108, 306, 79, 486, 108, 46, 82, 2067, 108, 486, 1714, 2692, 108, 46, 265,
    ]  # fmt: skip


@pytest.mark.real_model
def test_real_model_fields_and_build_time(real_meta, real_tok):
    assert real_tok.vocab_size == 49152
    assert (real_tok.bos_id, real_tok.eos_id, real_tok.add_bos) == (1, 2, False)
    assert real_tok.eos_ids == frozenset({0, 2})
    assert "named SmolLM, trained by Hugging Face" in real_tok.chat_template
    assert real_tok.token_bytes(905) == b" world"
    best = min(_build_seconds(real_meta) for _ in range(3))
    assert best < 0.5, f"building the 49152-token tokenizer took {best:.3f} s"


def _build_seconds(meta) -> float:
    t0 = time.perf_counter()
    tokenizer_from_gguf_metadata(meta)
    return time.perf_counter() - t0
