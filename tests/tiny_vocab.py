"""Tiny tokenizers for test models, written to GGUF files and Hugging Face dirs.

Two vocabularies small enough to read in full:

* `tiny_gpt2_vocab()`: byte-level BPE like SmolLM2 (ChatML control tokens
  ``<|endoftext|>``=0, ``<|im_start|>``=1, ``<|im_end|>``=2, then the 256
  byte symbols at ids 3..258, then one token per merge), 306 tokens.
* `tiny_spm_vocab()`: SentencePiece-style like TinyLlama (``<unk>``=0,
  ``<s>``=1, ``</s>``=2, byte tokens ``<0x00>``..``<0xFF>`` at 3..258, merged
  pieces, single characters, three user-defined chat tokens), 327 tokens.

The Hugging Face files are written by hand in the layout the `transformers`
converters produce (not through edge_sdk), so tests that compare the GGUF
route with the HF route compare two independent constructions.

Example::

    vocab = tiny_gpt2_vocab()
    writer = gguf.GGUFWriter(path, "llama")
    ...                                   # architecture keys, tensors
    write_tiny_gguf_tokenizer(writer, vocab)
    write_tiny_hf_tokenizer(model_dir, vocab)
"""

from __future__ import annotations

import json
import os
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ZEPHYR_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)

# GGUF token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6


def _gpt2_byte_chars() -> list[str]:
    """GPT-2 `bytes_to_unicode`: byte value -> printable character."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + n)
            n += 1
    return [chars[b] for b in range(256)]


# Merges in rank order; "Ġ" is the byte-level space, "Ċ" the newline.
_GPT2_MERGES = [
    ("Ġ", "t"), ("h", "e"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"), ("Ġt", "he"), ("r", "e"),
    ("a", "t"), ("Ġ", "s"), ("e", "n"), ("o", "r"), ("Ġ", "w"), ("Ġ", "o"), ("i", "t"), ("i", "s"),
    ("a", "n"), ("l", "l"), ("Ġ", "c"), ("o", "u"), ("in", "g"), ("Ġ", "h"), ("e", "d"), ("Ġ", "i"),
    ("Ġi", "n"), ("Ġi", "s"), ("Ġt", "o"), ("Ġo", "f"), ("Ġa", "n"), ("Ġan", "d"), ("H", "e"),
    ("He", "ll"), ("Hell", "o"), ("Ġw", "or"), ("l", "d"), ("Ġwor", "ld"), ("u", "s"), ("us", "er"),
    ("Ġ", "Ġ"), ("Ċ", "Ċ"), ("Ġ", "H"), ("ĠH", "i"), ("a", "s"), ("Ġ", "p"), ("Ġ", "m"), ("Ġc", "at"),
    ("Ġs", "at"),
]


def tiny_gpt2_vocab() -> dict[str, Any]:
    """A SmolLM2-like byte-level BPE vocabulary (see module docstring)."""
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [CONTROL, CONTROL, CONTROL]
    tokens += _gpt2_byte_chars()
    types += [NORMAL] * 256
    for left, right in _GPT2_MERGES:
        if left + right not in tokens:
            tokens.append(left + right)
            types.append(NORMAL)
    return {
        "model": "gpt2",
        "pre": "smollm",
        "tokens": tokens,
        "token_type": types,
        "merges": list(_GPT2_MERGES),
        "bos": 1,
        "eos": 2,
        "add_bos": False,
        "chat_template": CHATML_TEMPLATE,
    }


# Pieces of the SentencePiece vocabulary in score order (best first), each the
# concatenation of an earlier piece or character.
_SPM_MERGES = [
    ("▁", "t"), ("h", "e"), ("▁t", "he"), ("i", "n"), ("▁", "a"), ("e", "r"), ("o", "n"), ("▁", "s"),
    ("r", "e"), ("a", "t"), ("e", "n"), ("o", "r"), ("l", "l"), ("▁", "w"), ("▁", "o"), ("i", "s"),
    ("a", "n"), ("▁", "h"), ("▁", "c"), ("in", "g"), ("o", "u"), ("e", "d"), ("▁", "f"), ("▁", "m"),
    ("▁", "i"), ("▁i", "n"), ("▁i", "s"), ("▁", "d"), ("▁", "p"), ("e", "s"), ("▁", "H"), ("▁H", "e"),
    ("▁He", "ll"), ("▁Hell", "o"), ("▁w", "or"), ("l", "d"), ("▁wor", "ld"), ("▁a", "n"), ("▁an", "d"),
    ("▁t", "o"), ("▁o", "f"), ("▁", "▁"), ("▁c", "at"),
]
_SPM_CHARS = "▁etaoinshrdlucwmfgpHI."
_SPM_USER_TOKENS = ["<|user|>", "<|assistant|>", "<|system|>"]


def tiny_spm_vocab() -> dict[str, Any]:
    """A TinyLlama-like SentencePiece vocabulary with scores and byte fallback."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [UNKNOWN, CONTROL, CONTROL]
    scores = [0.0, 0.0, 0.0]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    scores += [0.0] * 256
    for rank, (left, right) in enumerate(_SPM_MERGES):
        tokens.append(left + right)
        types.append(NORMAL)
        scores.append(-float(rank))
    for j, c in enumerate(_SPM_CHARS):
        tokens.append(c)
        types.append(NORMAL)
        scores.append(-1000.0 - j)
    tokens += _SPM_USER_TOKENS
    types += [USER_DEFINED] * len(_SPM_USER_TOKENS)
    scores += [0.0] * len(_SPM_USER_TOKENS)
    return {
        "model": "llama",
        "tokens": tokens,
        "token_type": types,
        "scores": scores,
        "unk": 0,
        "bos": 1,
        "eos": 2,
        "add_bos": True,
        "add_space_prefix": True,
        "chat_template": ZEPHYR_TEMPLATE,
    }


def gguf_metadata(vocab: dict[str, Any]) -> dict[str, Any]:
    """The `tokenizer.*` keys `read_gguf_metadata` returns for a file written by `write_tiny_gguf_tokenizer`."""
    meta: dict[str, Any] = {
        "tokenizer.ggml.model": vocab["model"],
        "tokenizer.ggml.tokens": list(vocab["tokens"]),
        "tokenizer.ggml.token_type": list(vocab["token_type"]),
        "tokenizer.ggml.bos_token_id": vocab["bos"],
        "tokenizer.ggml.eos_token_id": vocab["eos"],
        "tokenizer.ggml.add_bos_token": vocab["add_bos"],
        "tokenizer.chat_template": vocab["chat_template"],
    }
    if vocab["model"] == "gpt2":
        meta["tokenizer.ggml.pre"] = vocab["pre"]
        meta["tokenizer.ggml.merges"] = [f"{a} {b}" for a, b in vocab["merges"]]
    else:
        meta["tokenizer.ggml.scores"] = list(vocab["scores"])
        meta["tokenizer.ggml.unknown_token_id"] = vocab["unk"]
        meta["tokenizer.ggml.add_space_prefix"] = vocab["add_space_prefix"]
    return meta


def write_tiny_gguf_tokenizer(writer: Any, vocab: dict[str, Any]) -> None:
    """Add the tokenizer keys of `vocab` to an open `gguf.GGUFWriter`."""
    writer.add_tokenizer_model(vocab["model"])
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types(vocab["token_type"])
    if vocab["model"] == "gpt2":
        writer.add_tokenizer_pre(vocab["pre"])
        writer.add_token_merges([f"{a} {b}" for a, b in vocab["merges"]])
    else:
        writer.add_token_scores(vocab["scores"])
        writer.add_unk_token_id(vocab["unk"])
        writer.add_add_space_prefix(vocab["add_space_prefix"])
    writer.add_bos_token_id(vocab["bos"])
    writer.add_eos_token_id(vocab["eos"])
    writer.add_add_bos_token(vocab["add_bos"])
    writer.add_chat_template(vocab["chat_template"])


def _added_token(i: int, content: str, special: bool) -> dict[str, Any]:
    return {
        "id": i,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": special,
    }


def _hf_gpt2_tokenizer_json(vocab: dict[str, Any]) -> dict[str, Any]:
    """SmolLM2's tokenizer.json layout: Digits + ByteLevel pre-tokenizer, ByteLevel decoder."""
    tokens, types = vocab["tokens"], vocab["token_type"]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [_added_token(i, t, True) for i, t in enumerate(tokens) if types[i] == CONTROL],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level],
        },
        "post_processor": {**byte_level, "trim_offsets": False},
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": [f"{a} {b}" for a, b in vocab["merges"]],
        },
    }


def _hf_spm_tokenizer_json(vocab: dict[str, Any]) -> dict[str, Any]:
    """Llama 2 / TinyLlama tokenizer.json layout: Prepend+Replace normalizer, byte-fallback BPE."""
    tokens, types = vocab["tokens"], vocab["token_type"]
    bos = tokens[vocab["bos"]]
    added = [
        _added_token(i, t, types[i] in (CONTROL, UNKNOWN))
        for i, t in enumerate(tokens)
        if types[i] in (CONTROL, UNKNOWN, USER_DEFINED)
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
            ],
        },
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {bos: {"id": bos, "ids": [vocab["bos"]], "tokens": [bos]}},
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": tokens[vocab["unk"]],
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": [f"{a} {b}" for a, b in _converter_merges(vocab)],
        },
    }


def _converter_merges(vocab: dict[str, Any]) -> list[tuple[str, str]]:
    """Merges as `transformers`' SentencePieceExtractor derives them from a scored vocabulary.

    Every split of a piece into two pieces, grouped per piece in vocabulary
    order, pieces sorted by score (best first, stable).
    """
    tokens, types, scores = vocab["tokens"], vocab["token_type"], vocab["scores"]
    ids = {t: i for i, t in enumerate(tokens) if types[i] in (NORMAL, USER_DEFINED)}
    merges = []
    for piece, i in ids.items():
        local = [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in ids and piece[k:] in ids]
        local.sort(key=lambda lr: (ids[lr[0]], ids[lr[1]]))
        merges += [(left, right, scores[i]) for left, right in local]
    merges.sort(key=lambda m: m[2], reverse=True)
    return [(left, right) for left, right, _ in merges]


def write_tiny_hf_tokenizer(path: str | os.PathLike, vocab: dict[str, Any]) -> None:
    """Write tokenizer.json, tokenizer_config.json and generation_config.json into `path`."""
    os.makedirs(path, exist_ok=True)
    tokens = vocab["tokens"]
    if vocab["model"] == "gpt2":
        tokenizer_json = _hf_gpt2_tokenizer_json(vocab)
        config = {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, "unk_token": tokens[0]}
    else:
        tokenizer_json = _hf_spm_tokenizer_json(vocab)
        config = {"tokenizer_class": "LlamaTokenizer", "add_eos_token": False, "unk_token": tokens[vocab["unk"]]}
    config.update(
        {
            "bos_token": tokens[vocab["bos"]],
            "eos_token": tokens[vocab["eos"]],
            "add_bos_token": vocab["add_bos"],
            "chat_template": vocab["chat_template"],
        }
    )
    files = {
        "tokenizer.json": tokenizer_json,
        "tokenizer_config.json": config,
        "generation_config.json": {"bos_token_id": vocab["bos"], "eos_token_id": vocab["eos"]},
    }
    for name, data in files.items():
        with open(os.path.join(path, name), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
