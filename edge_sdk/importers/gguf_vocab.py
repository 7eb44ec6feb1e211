"""The tokenizer a GGUF file carries (`tokenizer.ggml.*` metadata), rebuilt as a `tokenizers` pipeline that
reproduces llama.cpp's tokenizer for that vocabulary type.

* ``gpt2``: byte-level BPE with ranked merges. The pre-tokenizer (how text is cut into words before BPE) is
  named by ``tokenizer.ggml.pre``; each name maps to the list of regexes llama.cpp applies one after the other
  (``llm_tokenizer_bpe`` in ``src/llama-vocab.cpp``), see `PRE_TOKENIZERS`.
* ``llama``: SentencePiece-style vocabulary (``▁`` marks a space, scores, ``<0xNN>`` byte-fallback tokens).
  llama.cpp tokenizes it by repeatedly merging the adjacent pair whose concatenation is the highest-scored
  token; a BPE whose merge ranks follow those scores does the same.

Control tokens (GGUF type 3) and unknown tokens (type 2) are special: they are parsed out of the text only
when ``encode(..., special=True)``; user-defined tokens (type 4) are always parsed, as in llama.cpp.

Example::

    tok = tokenizer_from_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")
    tok.encode("Hello world")                  # [19556, 905]
    tok.encode("<|im_start|>user", special=True)  # [1, 4093]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from ..errors import TokenizerError
from ..text.tokenizer import END_OF_GENERATION_TOKENS, SPM_SPACE, Tokenizer, end_of_generation_ids
from .gguf_meta import read_gguf_metadata

# ---------------------------------------------------------------------------
# GGUF constants
# ---------------------------------------------------------------------------

# GGUF token types (gguf.TokenType).
TOKEN_NORMAL = 1
TOKEN_UNKNOWN = 2
TOKEN_CONTROL = 3
TOKEN_USER_DEFINED = 4
TOKEN_UNUSED = 5
TOKEN_BYTE = 6

SUPPORTED_GGUF_MODELS = ("gpt2", "llama")


# ---------------------------------------------------------------------------
# Pre-tokenizers for byte-level BPE (tokenizer.ggml.pre)
# ---------------------------------------------------------------------------

# Regexes copied from llama.cpp src/llama-vocab.cpp (llm_tokenizer_bpe,
# commit c392e5094deaf2d1a7c18683214f007fad3fe42b). Each regex splits every
# piece left by the previous one, keeping matched and unmatched parts.
_GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3_RE = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_RE = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class PreTokenizerSpec:
    """How llama.cpp cuts text into words for one ``tokenizer.ggml.pre`` value.

    regexes: applied in order, each splitting the pieces of the previous one.
    ignore_merges: a word that is itself a token is emitted whole (Llama 3).
    add_bos: llama.cpp's default for ``add_bos_token`` when metadata lacks it.
    """

    regexes: tuple[str, ...]
    ignore_merges: bool = False
    add_bos: bool = False


_SMOLLM = PreTokenizerSpec((r"\p{N}", _GPT2_RE))
_GPT2 = PreTokenizerSpec((_GPT2_RE,))
_LLAMA3 = PreTokenizerSpec((_LLAMA3_RE,), ignore_merges=True, add_bos=True)
_QWEN2 = PreTokenizerSpec((_QWEN2_RE,))
_DEFAULT = PreTokenizerSpec((r"[\p{P}\$\+<=>\^~\|]+", _GPT2_RE, r"\p{N}+", r"[0-9][0-9][0-9]"))

PRE_TOKENIZERS: Mapping[str, PreTokenizerSpec] = MappingProxyType(
    {
        "default": _DEFAULT,
        "smollm": _SMOLLM,
        "starcoder": _SMOLLM,
        "refact": _SMOLLM,
        "command-r": _SMOLLM,
        "codeshell": _SMOLLM,
        "exaone": _SMOLLM,
        "minerva-7b": _SMOLLM,
        "gpt-2": _GPT2,
        "phi-2": _GPT2,
        "mpt": _GPT2,
        "olmo": _GPT2,
        "jais": _GPT2,
        "roberta-bpe": _GPT2,
        "llama-bpe": _LLAMA3,
        "llama3": _LLAMA3,
        "llama-v3": _LLAMA3,
        "falcon3": _LLAMA3,
        "dbrx": PreTokenizerSpec((_LLAMA3_RE,)),
        "smaug-bpe": PreTokenizerSpec((_LLAMA3_RE,)),
        "qwen2": _QWEN2,
        "deepseek-r1-qwen": _QWEN2,
        "megrez": _QWEN2,
        "stablelm2": _QWEN2,
    }
)


def _gguf_list(meta: Mapping[str, Any], key: str, n: int | None, required: bool) -> list | None:
    value = meta.get(key)
    if value is None:
        if required:
            raise TokenizerError(f"GGUF metadata has no {key}; the file carries no usable vocabulary")
        return None
    if not isinstance(value, (list, tuple)):
        raise TokenizerError(f"GGUF metadata {key} should be an array, got {type(value).__name__}")
    if n is not None and len(value) != n:
        raise TokenizerError(f"GGUF metadata {key} has {len(value)} entries but tokenizer.ggml.tokens has {n}")
    return list(value)


def _gguf_id(meta: Mapping[str, Any], key: str, n: int) -> int | None:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenizerError(f"GGUF metadata {key} should be an integer, got {value!r}")
    if value < 0 or value >= n:
        # llama.cpp stores -1 (as uint32 max) for "no such token".
        return None
    return value


def _add_gguf_added_tokens(hf: Any, tokens: Sequence[str], types: Sequence[int]) -> None:
    """Control/unknown tokens become special added tokens, user-defined ones plain added tokens."""
    from tokenizers import AddedToken

    special, plain = [], []
    for i, kind in enumerate(types):
        if kind in (TOKEN_CONTROL, TOKEN_UNKNOWN) or (kind != TOKEN_USER_DEFINED and tokens[i] in END_OF_GENERATION_TOKENS):
            special.append(AddedToken(tokens[i], special=True, normalized=False))
        elif kind == TOKEN_USER_DEFINED:
            plain.append(AddedToken(tokens[i], special=False, normalized=False))
    hf.add_special_tokens(special)
    hf.add_tokens(plain)


def _vocab_dict(tokens: Sequence[str]) -> dict[str, int]:
    # A repeated string maps to its last id, as llama.cpp's token_to_id does.
    return {t: i for i, t in enumerate(tokens)}


def _build_byte_level_bpe(meta: Mapping[str, Any], tokens: list[str], types: list[int]):
    from tokenizers import Regex, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers

    pre = meta.get("tokenizer.ggml.pre") or "default"
    spec = PRE_TOKENIZERS.get(pre)
    if spec is None:
        raise TokenizerError(
            f"unsupported pre-tokenizer tokenizer.ggml.pre={pre!r}; supported: {', '.join(sorted(PRE_TOKENIZERS))}"
        )
    raw_merges = _gguf_list(meta, "tokenizer.ggml.merges", None, required=True)
    merges = []
    for m in raw_merges:
        cut = m.find(" ", 1) if isinstance(m, str) else -1
        if cut < 0:
            raise TokenizerError(f"malformed BPE merge {m!r} in tokenizer.ggml.merges (expected 'left right')")
        merges.append((m[:cut], m[cut + 1 :]))
    try:
        model = models.BPE(vocab=_vocab_dict(tokens), merges=merges, ignore_merges=spec.ignore_merges)
    except Exception as e:  # tokenizers raises a bare Exception for merges naming unknown tokens
        raise TokenizerError(f"invalid byte-level BPE vocabulary: {e}") from e
    hf = HFTokenizer(model)
    splits = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in spec.regexes]
    hf.pre_tokenizer = pre_tokenizers.Sequence([*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.decoder = decoders.ByteLevel()
    _add_gguf_added_tokens(hf, tokens, types)
    return hf, spec.add_bos


def _spm_merges(tokens: Sequence[str], types: Sequence[int], scores: Sequence[float]) -> list[tuple[str, str]]:
    """Merges that make BPE reproduce llama.cpp's score-driven SentencePiece tokenizer.

    Every way to cut a token into two tokens is a merge; merges are ranked by
    the score of the token they make (highest first), ties by token id.
    """
    mergeable = (TOKEN_NORMAL, TOKEN_USER_DEFINED, TOKEN_UNUSED)
    known = set(tokens)
    ranked = []
    for i, (t, kind) in enumerate(zip(tokens, types)):
        if kind not in mergeable or len(t) < 2:
            continue
        for cut in range(1, len(t)):
            left, right = t[:cut], t[cut:]
            if left in known and right in known:
                ranked.append((-float(scores[i]), i, cut, left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _build_spm(meta: Mapping[str, Any], tokens: list[str], types: list[int]):
    from tokenizers import Tokenizer as HFTokenizer, decoders, models, normalizers

    n = len(tokens)
    scores = _gguf_list(meta, "tokenizer.ggml.scores", n, required=True)
    unk_id = _gguf_id(meta, "tokenizer.ggml.unknown_token_id", n)
    if unk_id is None and TOKEN_UNKNOWN in types:
        unk_id = types.index(TOKEN_UNKNOWN)
    try:
        model = models.BPE(
            vocab=_vocab_dict(tokens),
            merges=_spm_merges(tokens, types, scores),
            unk_token=tokens[unk_id] if unk_id is not None else None,
            fuse_unk=True,
            byte_fallback=True,
        )
    except Exception as e:
        raise TokenizerError(f"invalid SentencePiece vocabulary: {e}") from e
    hf = HFTokenizer(model)
    add_space_prefix = meta.get("tokenizer.ggml.add_space_prefix", True)
    space = [normalizers.Replace(" ", SPM_SPACE)]
    hf.normalizer = normalizers.Sequence([normalizers.Prepend(SPM_SPACE), *space] if add_space_prefix else space)
    steps = [decoders.Replace(SPM_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    hf.decoder = decoders.Sequence([*steps, decoders.Strip(" ", 1, 0)] if add_space_prefix else steps)
    _add_gguf_added_tokens(hf, tokens, types)
    return hf


# ---------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------


def tokenizer_from_gguf(path: str | os.PathLike) -> Tokenizer:
    """Tokenizer of the GGUF file at `path` (reads only its metadata)."""
    return tokenizer_from_gguf_metadata(read_gguf_metadata(path))


def tokenizer_from_gguf_metadata(meta: Mapping[str, Any]) -> Tokenizer:
    """Tokenizer from the dict returned by `read_gguf_metadata`.

    Example::

        meta = read_gguf_metadata("model.gguf")
        tok = tokenizer_from_gguf_metadata(meta)
    """
    kind = meta.get("tokenizer.ggml.model")
    if kind is None:
        raise TokenizerError("GGUF metadata has no tokenizer.ggml.model; the file carries no tokenizer")
    if kind not in SUPPORTED_GGUF_MODELS:
        raise TokenizerError(
            f"unsupported tokenizer model {kind!r}; supported: {', '.join(SUPPORTED_GGUF_MODELS)} "
            "(byte-level BPE and SentencePiece-style llama vocabularies)"
        )
    tokens = _gguf_list(meta, "tokenizer.ggml.tokens", None, required=True)
    if not tokens or not all(isinstance(t, str) for t in tokens):
        raise TokenizerError("tokenizer.ggml.tokens must be a non-empty array of strings")
    n = len(tokens)
    types = _gguf_list(meta, "tokenizer.ggml.token_type", n, required=False) or [TOKEN_NORMAL] * n
    if kind == "gpt2":
        hf, default_add_bos = _build_byte_level_bpe(meta, tokens, types)
        bos_id = _gguf_id(meta, "tokenizer.ggml.bos_token_id", n)
        eos_id = _gguf_id(meta, "tokenizer.ggml.eos_token_id", n)
    else:
        hf, default_add_bos = _build_spm(meta, tokens, types), True
        bos_id = _gguf_id(meta, "tokenizer.ggml.bos_token_id", n) if "tokenizer.ggml.bos_token_id" in meta else 1
        eos_id = _gguf_id(meta, "tokenizer.ggml.eos_token_id", n) if "tokenizer.ggml.eos_token_id" in meta else 2
    add_bos = meta.get("tokenizer.ggml.add_bos_token", default_add_bos) and bos_id is not None
    eos_ids = end_of_generation_ids(
        hf,
        eos_id,
        _gguf_id(meta, "tokenizer.ggml.eot_token_id", n),
        _gguf_id(meta, "tokenizer.ggml.eom_token_id", n),
    )
    return Tokenizer(
        hf,
        bos_id=bos_id,
        eos_ids=eos_ids,
        eos_id=eos_id,
        add_bos=bool(add_bos),
        add_eos=bool(meta.get("tokenizer.ggml.add_eos_token", False)) and eos_id is not None,
        chat_template=meta.get("tokenizer.chat_template"),
    )
