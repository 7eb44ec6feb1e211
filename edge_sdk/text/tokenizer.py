"""Text <-> token ids, built on the Hugging Face `tokenizers` library.

A model's `Tokenizer` comes from one of three places, and all three give the same `Tokenizer`: GGUF metadata
(`importers.gguf_vocab.tokenizer_from_gguf`), a Hugging Face model directory
(`importers.hf_vocab.tokenizer_from_hf_dir`), or a converted package (`to_json` + `meta`, reloaded by
`Tokenizer.from_json`). Control and unknown tokens are special: they are parsed out of the text only with
``encode(..., special=True)``.

Example::

    tok = tokenizer_from_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")
    tok.encode("Hello world")                  # [19556, 905]
    tok.encode("<|im_start|>user", special=True)  # [1, 4093]
    tok.decode([19556, 905])                   # "Hello world"
    2 in tok.eos_ids                           # True (<|im_end|>)
"""

from __future__ import annotations

import numbers
import operator
import re
import threading
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

from ..errors import InvalidArgumentError, TokenizerError

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
SPM_SPACE = "\u2581"  # ▁


def end_of_generation_ids(hf, *ids: int | None) -> frozenset[int]:
    """`ids` (None skipped) plus every token of the vocabulary named in END_OF_GENERATION_TOKENS."""
    found = {i for i in ids if i is not None}
    for name in END_OF_GENERATION_TOKENS:
        i = hf.token_to_id(name)
        if i is not None:
            found.add(i)
    return frozenset(found)


class Tokenizer:
    """Encode text to token ids and back for one model.

    The importers build it (`importers.gguf_vocab.tokenizer_from_gguf`,
    `importers.hf_vocab.tokenizer_from_hf_dir`), a package rebuilds it with
    `from_json`; the constructor takes an already built `tokenizers.Tokenizer`.

    Example::

        tok = tokenizer_from_hf_dir("SmolLM2-135M-Instruct/")
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

        from ..heap import release_free_heap

        try:
            hf = HFTokenizer.from_str(tokenizer_json)
        except Exception as e:
            raise TokenizerError(f"not a valid tokenizer.json text ({e})") from e
        finally:
            # the parse's own allocations are freed by now but still resident (SmolLM2: ~26 of the ~40 MiB the
            # parse took): give those pages back before anything larger is loaded
            release_free_heap()
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
        return token.replace(SPM_SPACE, " ").encode("utf-8")

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


def _decoding_scheme(hf: Any) -> tuple[bool, bool]:
    """(byte_level, byte_fallback) of a `tokenizers.Tokenizer`, read from its decoder/model."""
    decoder = hf.decoder
    state = decoder.__getstate__().decode("utf-8") if decoder is not None else ""
    byte_level = '"ByteLevel"' in state
    byte_fallback = bool(getattr(hf.model, "byte_fallback", False)) or '"ByteFallback"' in state
    return byte_level, byte_fallback
