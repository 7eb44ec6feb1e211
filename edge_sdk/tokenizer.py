"""Text <-> token ids, built on the Hugging Face `tokenizers` library.

A model's tokenizer comes from one of three places, and all three give the
same `Tokenizer`:

* GGUF metadata (`tokenizer.ggml.*` keys), rebuilt into a `tokenizers`
  pipeline that reproduces llama.cpp's tokenizer for that vocabulary type:

  - ``gpt2``: byte-level BPE with ranked merges. The pre-tokenizer (how text
    is cut into words before BPE) is named by ``tokenizer.ggml.pre``; each
    name maps to the list of regexes llama.cpp applies one after the other
    (``llm_tokenizer_bpe`` in ``src/llama-vocab.cpp``), see `PRE_TOKENIZERS`.
  - ``llama``: SentencePiece-style vocabulary (``▁`` marks a space, scores,
    ``<0xNN>`` byte-fallback tokens). llama.cpp tokenizes it by repeatedly
    merging the adjacent pair whose concatenation is the highest-scored
    token; a BPE whose merge ranks follow those scores does the same.

* a Hugging Face model directory (``tokenizer.json`` + ``tokenizer_config.json``
  + ``generation_config.json``);
* a converted package (`to_json` + `meta`, reloaded by `from_json`).

Control tokens (GGUF type 3) and unknown tokens (type 2) are special: they are
parsed out of the text only when ``encode(..., special=True)``; user-defined
tokens (type 4) are always parsed, as in llama.cpp.

Example::

    tok = Tokenizer.from_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")
    tok.encode("Hello world")                  # [19556, 905]
    tok.encode("<|im_start|>user", special=True)  # [1, 4093]
    tok.decode([19556, 905])                   # "Hello world"
    2 in tok.eos_ids                           # True (<|im_end|>)
"""

from __future__ import annotations

import json
import numbers
import operator
import os
import re
import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

from .errors import InvalidArgumentError, TokenizerError

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

# Tokens that end a turn or a document, matched by text as llama.cpp does
# (`special_eog_ids` in llama-vocab.cpp), plus Llama 3's base-model EOS.
END_OF_GENERATION_TOKENS = (
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
)

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


def _byte_to_char() -> tuple[str, ...]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


BYTE_TO_CHAR: tuple[str, ...] = _byte_to_char()
CHAR_TO_BYTE: Mapping[str, int] = MappingProxyType({c: b for b, c in enumerate(BYTE_TO_CHAR)})

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SPM_SPACE = "\u2581"  # ▁


# ---------------------------------------------------------------------------
# Building a `tokenizers` pipeline from GGUF metadata
# ---------------------------------------------------------------------------


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
    space = [normalizers.Replace(" ", _SPM_SPACE)]
    hf.normalizer = normalizers.Sequence([normalizers.Prepend(_SPM_SPACE), *space] if add_space_prefix else space)
    steps = [decoders.Replace(_SPM_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    hf.decoder = decoders.Sequence([*steps, decoders.Strip(" ", 1, 0)] if add_space_prefix else steps)
    _add_gguf_added_tokens(hf, tokens, types)
    return hf


# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------


def _end_of_generation_ids(hf, *ids: int | None) -> frozenset[int]:
    found = {i for i in ids if i is not None}
    for name in END_OF_GENERATION_TOKENS:
        i = hf.token_to_id(name)
        if i is not None:
            found.add(i)
    return frozenset(found)


class Tokenizer:
    """Encode text to token ids and back for one model.

    Build it with `from_gguf`, `from_gguf_metadata`, `from_hf_dir` or
    `from_json`; the constructor takes an already built `tokenizers.Tokenizer`.

    Example::

        tok = Tokenizer.from_hf_dir("SmolLM2-135M-Instruct/")
        ids = tok.encode("<|im_start|>user\\nHi<|im_end|>\\n", special=True)
        # [1, 4093, 198, 26843, 2, 198]
        tok.decode(ids)                       # "user\\nHi\\n" (control tokens skipped)
        tok.decode(ids, skip_special=False)   # the input text
    """

    def __init__(
        self,
        hf: Any,
        *,
        bos_id: int | None,
        eos_ids: Iterable[int],
        add_bos: bool,
        chat_template: str | None = None,
        eos_id: int | None = None,
        add_eos: bool = False,
    ) -> None:
        self._hf = hf
        self._lock = threading.Lock()
        self._vocab_size = int(hf.get_vocab_size(with_added_tokens=True))
        eos_ids = list(eos_ids)
        for name, i in (("bos_id", bos_id), ("eos_id", eos_id), *(("eos_ids", e) for e in eos_ids)):
            if i is not None and (isinstance(i, bool) or not isinstance(i, numbers.Integral)):
                raise TokenizerError(f"{name} should be an integer token id, got {i!r}")
        if chat_template is not None and not isinstance(chat_template, str):
            raise TokenizerError(f"chat_template should be a string, got {type(chat_template).__name__}")
        eos_set = frozenset(int(i) for i in eos_ids)
        for name, i in (("bos_id", bos_id), ("eos_id", eos_id), *(("eos_ids", e) for e in eos_set)):
            if i is not None and not 0 <= i < self._vocab_size:
                raise TokenizerError(f"{name} {i} is outside the vocabulary (size {self._vocab_size})")
        self._bos_id = bos_id
        self._eos_id = eos_id if eos_id is not None else (min(eos_set) if eos_set else None)
        self._eos_ids = eos_set | ({eos_id} if eos_id is not None else set())
        self._add_bos = bool(add_bos)
        self._add_eos = bool(add_eos)
        if add_bos and bos_id is None:
            raise TokenizerError("add_bos is set but the tokenizer has no BOS token")
        self._chat_template = chat_template
        added = hf.get_added_tokens_decoder()
        self._added = {i: t.content for i, t in added.items()}
        self._special_ids = frozenset(i for i, t in added.items() if t.special)
        self._byte_level, self._byte_fallback = _decoding_scheme(hf)
        self._pieces: dict[int, bytes] = {}  # token id -> token_bytes, filled on use
        # Does the model's own decoder drop the space that encoding prepends?
        probe = hf.encode("a", add_special_tokens=False).ids
        raw = b"".join(self._piece(i) for i in probe).decode("utf-8", errors="replace")
        self._strips_leading_space = raw.startswith(" ") and hf.decode(probe, skip_special_tokens=False) == raw[1:]

    # -- constructors ------------------------------------------------------

    @classmethod
    def from_gguf(cls, path: str | os.PathLike) -> "Tokenizer":
        """Tokenizer of the GGUF file at `path` (reads only its metadata)."""
        from .importers.gguf_meta import read_gguf_metadata

        return cls.from_gguf_metadata(read_gguf_metadata(path))

    @classmethod
    def from_gguf_metadata(cls, meta: Mapping[str, Any]) -> "Tokenizer":
        """Tokenizer from the dict returned by `read_gguf_metadata`.

        Example::

            meta = read_gguf_metadata("model.gguf")
            tok = Tokenizer.from_gguf_metadata(meta)
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
        eos_ids = _end_of_generation_ids(
            hf,
            eos_id,
            _gguf_id(meta, "tokenizer.ggml.eot_token_id", n),
            _gguf_id(meta, "tokenizer.ggml.eom_token_id", n),
        )
        return cls(
            hf,
            bos_id=bos_id,
            eos_ids=eos_ids,
            eos_id=eos_id,
            add_bos=bool(add_bos),
            add_eos=bool(meta.get("tokenizer.ggml.add_eos_token", False)) and eos_id is not None,
            chat_template=meta.get("tokenizer.chat_template"),
        )

    @classmethod
    def from_hf_dir(cls, path: str | os.PathLike) -> "Tokenizer":
        """Tokenizer of a Hugging Face model directory.

        Reads ``tokenizer.json`` (required), ``tokenizer_config.json``
        (BOS/EOS tokens, ``add_bos_token``, ``chat_template``) and
        ``generation_config.json`` (extra EOS ids) when present.

        Example::

            tok = Tokenizer.from_hf_dir("TinyLlama-1.1B-Chat-v1.0/")
        """
        from tokenizers import Tokenizer as HFTokenizer

        path = os.fspath(path)
        tj = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(tj):
            raise TokenizerError(f"{path}: no tokenizer.json (a Hugging Face model directory needs one)")
        try:
            hf = HFTokenizer.from_file(tj)
        except Exception as e:
            raise TokenizerError(f"{tj}: not a valid tokenizer.json ({e})") from e
        config = _read_json(os.path.join(path, "tokenizer_config.json"))
        gen = _read_json(os.path.join(path, "generation_config.json"))

        bos_id = _hf_token_id(hf, config.get("bos_token"), "bos_token")
        eos_id = _hf_token_id(hf, config.get("eos_token"), "eos_token")
        if bos_id is None and isinstance(gen.get("bos_token_id"), int):
            bos_id = gen["bos_token_id"]
        gen_eos = _gen_eos_ids(os.path.join(path, "generation_config.json"), gen.get("eos_token_id"))
        if eos_id is None and gen_eos:
            eos_id = gen_eos[0]

        # What the tokenizer.json post-processor would add decides add_bos/add_eos
        # when tokenizer_config.json does not say.
        probe = hf.encode("", add_special_tokens=True).ids
        add_bos = config.get("add_bos_token", bool(probe) and probe[0] == bos_id)
        add_eos = config.get("add_eos_token", bool(probe) and probe[-1] == eos_id and eos_id != bos_id)

        return cls(
            hf,
            bos_id=bos_id,
            eos_ids=_end_of_generation_ids(hf, eos_id, *gen_eos),
            eos_id=eos_id,
            add_bos=bool(add_bos) and bos_id is not None,
            add_eos=bool(add_eos) and eos_id is not None,
            chat_template=_hf_chat_template(path, config),
        )

    @classmethod
    def from_json(
        cls,
        tokenizer_json: str,
        *,
        bos_id: int | None,
        eos_ids: Iterable[int],
        add_bos: bool,
        chat_template: str | None = None,
        eos_id: int | None = None,
        add_eos: bool = False,
    ) -> "Tokenizer":
        """Rebuild a tokenizer saved with `to_json` and `meta`.

        Example::

            saved = tok.to_json(), tok.meta()
            same = Tokenizer.from_json(saved[0], **saved[1])
        """
        from tokenizers import Tokenizer as HFTokenizer

        try:
            hf = HFTokenizer.from_str(tokenizer_json)
        except Exception as e:
            raise TokenizerError(f"not a valid tokenizer.json text ({e})") from e
        return cls(
            hf,
            bos_id=bos_id,
            eos_ids=eos_ids,
            eos_id=eos_id,
            add_bos=add_bos,
            add_eos=add_eos,
            chat_template=chat_template,
        )

    def to_json(self) -> str:
        """The ``tokenizer.json`` text of this tokenizer."""
        return self._hf.to_str()

    def meta(self) -> dict[str, Any]:
        """The fields `to_json` does not hold, as keyword arguments of `from_json`."""
        return {
            "bos_id": self._bos_id,
            "eos_id": self._eos_id,
            "eos_ids": sorted(self._eos_ids),
            "add_bos": self._add_bos,
            "add_eos": self._add_eos,
            "chat_template": self._chat_template,
        }

    # -- properties --------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def bos_id(self) -> int | None:
        return self._bos_id

    @property
    def eos_id(self) -> int | None:
        """The model's own EOS token (the one appended when ``add_eos``)."""
        return self._eos_id

    @property
    def eos_ids(self) -> frozenset[int]:
        """Every token that ends generation: EOS, end-of-turn and end-of-text tokens."""
        return self._eos_ids

    @property
    def add_bos(self) -> bool:
        return self._add_bos

    @property
    def add_eos(self) -> bool:
        return self._add_eos

    @property
    def chat_template(self) -> str | None:
        return self._chat_template

    @property
    def special_ids(self) -> frozenset[int]:
        """Control and unknown tokens (what ``decode(skip_special=True)`` drops)."""
        return self._special_ids

    # -- encode / decode ---------------------------------------------------

    def encode(
        self,
        text: str,
        special: bool = False,
        add_bos: bool | None = None,
        add_eos: bool | None = None,
    ) -> list[int]:
        """Token ids of `text`.

        special: parse control tokens written in the text (``<|im_start|>``);
            when False they are tokenized as plain characters.
        add_bos / add_eos: prepend BOS / append EOS; None follows the model.
        """
        if not isinstance(text, str):
            raise InvalidArgumentError(f"encode() takes a str, got {type(text).__name__}")
        with self._lock:
            self._hf.encode_special_tokens = not special
            try:
                ids = self._hf.encode(text, add_special_tokens=False).ids
            finally:
                self._hf.encode_special_tokens = False
        if self._add_bos if add_bos is None else add_bos:
            if self._bos_id is None:
                raise TokenizerError("add_bos=True but this tokenizer has no BOS token")
            ids.insert(0, self._bos_id)
        if self._add_eos if add_eos is None else add_eos:
            if self._eos_id is None:
                raise TokenizerError("add_eos=True but this tokenizer has no EOS token")
            ids.append(self._eos_id)
        return ids

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """Text of `ids`; control tokens are dropped when `skip_special`.

        The UTF-8 decoding of the tokens' bytes (see `token_bytes`); an invalid
        or unfinished sequence becomes U+FFFD. Tokenizers that prepend a space
        when encoding (SentencePiece style) drop it again, as their Hugging
        Face decoders do.
        """
        skip = self._special_ids if skip_special else frozenset()
        data = b"".join(self._piece(i) for i in self._checked_ids(ids) if i not in skip)
        text = data.decode("utf-8", errors="replace")
        return text[1:] if self._strips_leading_space and text.startswith(" ") else text

    def id_to_token(self, token_id: int) -> str:
        """The vocabulary string of `token_id` (``Ġworld``, ``▁world``, ``<0x0A>``)."""
        (token_id,) = self._checked_ids([token_id])
        token = self._hf.id_to_token(token_id)
        if token is None:
            raise TokenizerError(f"token id {token_id} has no string in this vocabulary")
        return token

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes `token_id` stands for (control tokens: their text).

        Example::

            tok.token_bytes(905)   # b" world"
        """
        (token_id,) = self._checked_ids([token_id])
        return self._piece(token_id)

    @property
    def strips_leading_space(self) -> bool:
        """Whether `decode` drops one leading space (the one encoding prepends)."""
        return self._strips_leading_space

    def _piece(self, token_id: int) -> bytes:
        piece = self._pieces.get(token_id)
        if piece is None:
            piece = self._pieces[token_id] = self._token_to_bytes(token_id)
        return piece

    def _token_to_bytes(self, token_id: int) -> bytes:
        if token_id in self._added:
            return self._added[token_id].encode("utf-8")
        token = self.id_to_token(token_id)
        if self._byte_level:
            if all(c in CHAR_TO_BYTE for c in token):
                return bytes(CHAR_TO_BYTE[c] for c in token)
            return token.encode("utf-8")
        if self._byte_fallback:
            m = _BYTE_TOKEN.fullmatch(token)
            if m:
                return bytes([int(m.group(1), 16)])
        return token.replace(_SPM_SPACE, " ").encode("utf-8")

    def _checked_ids(self, ids: Sequence[int]) -> list[int]:
        out = []
        for i in ids:
            try:
                j = operator.index(i)
            except TypeError:
                j = None
            if j is None or isinstance(i, bool):
                raise InvalidArgumentError(f"token ids must be integers, got {i!r}")
            if not 0 <= j < self._vocab_size:
                raise InvalidArgumentError(f"token id {j} is outside the vocabulary (size {self._vocab_size})")
            out.append(j)
        return out

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={self._vocab_size}, bos_id={self._bos_id}, "
            f"eos_ids={sorted(self._eos_ids)}, add_bos={self._add_bos})"
        )


# ---------------------------------------------------------------------------
# Hugging Face directory helpers
# ---------------------------------------------------------------------------


def _read_json(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise TokenizerError(f"{path}: unreadable JSON ({e})") from e
    if not isinstance(data, dict):
        raise TokenizerError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _hf_token_id(hf: Any, value: Any, field: str) -> int | None:
    """Id of a tokenizer_config.json token field (a string or {"content": ...})."""
    if isinstance(value, dict):
        value = value.get("content")
    if value is None:
        return None
    if not isinstance(value, str):
        raise TokenizerError(f"tokenizer_config.json {field} should be a string, got {value!r}")
    i = hf.token_to_id(value)
    if i is None:
        raise TokenizerError(f"tokenizer_config.json {field} {value!r} is not in tokenizer.json's vocabulary")
    return i


def _gen_eos_ids(path: str, value: Any) -> list[int]:
    """generation_config.json `eos_token_id`: absent, one id or a list of ids."""
    if value is None:
        return []
    ids = value if isinstance(value, list) else [value]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise TokenizerError(f"{path}: eos_token_id should be an integer or a list of integers, got {value!r}")
    return ids


def _hf_chat_template(path: str, config: Mapping[str, Any]) -> str | None:
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default", next(iter(named.values()), None))
    if template is None:
        jinja = os.path.join(path, "chat_template.jinja")
        if os.path.isfile(jinja):
            try:
                with open(jinja, encoding="utf-8") as f:
                    template = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise TokenizerError(f"{jinja}: unreadable chat template ({e})") from e
    if template is not None and not isinstance(template, str):
        raise TokenizerError(f"{path}: chat_template should be a string, got {type(template).__name__}")
    return template


def _decoding_scheme(hf: Any) -> tuple[bool, bool]:
    """(byte_level, byte_fallback) of a `tokenizers.Tokenizer`, read from its decoder/model."""
    decoder = hf.decoder
    state = decoder.__getstate__().decode("utf-8") if decoder is not None else ""
    byte_level = '"ByteLevel"' in state
    byte_fallback = bool(getattr(hf.model, "byte_fallback", False)) or '"ByteFallback"' in state
    return byte_level, byte_fallback
