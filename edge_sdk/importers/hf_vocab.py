"""The tokenizer of a Hugging Face model directory: ``tokenizer.json`` (required), ``tokenizer_config.json``
(BOS/EOS tokens, ``add_bos_token``, ``chat_template``, or ``chat_template.jinja`` beside it) and
``generation_config.json`` (extra EOS ids).

Example::

    tok = tokenizer_from_hf_dir("SmolLM2-135M-Instruct/")
    tok.encode("<|im_start|>user\\nHi<|im_end|>\\n", special=True)   # [1, 4093, 198, 26843, 2, 198]
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from ..errors import TokenizerError
from ..text.tokenizer import Tokenizer, end_of_generation_ids


def tokenizer_from_hf_dir(path: str | os.PathLike) -> Tokenizer:
    """Tokenizer of a Hugging Face model directory.

    Reads ``tokenizer.json`` (required), ``tokenizer_config.json``
    (BOS/EOS tokens, ``add_bos_token``, ``chat_template``) and
    ``generation_config.json`` (extra EOS ids) when present.

    Example::

        tok = tokenizer_from_hf_dir("TinyLlama-1.1B-Chat-v1.0/")
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

    return Tokenizer(
        hf,
        bos_id=bos_id,
        eos_ids=end_of_generation_ids(hf, eos_id, *gen_eos),
        eos_id=eos_id,
        add_bos=bool(add_bos) and bos_id is not None,
        add_eos=bool(add_eos) and eos_id is not None,
        chat_template=_hf_chat_template(path, config),
    )


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
