"""Payloads of the serial protocol: a tiny TLV, and one codec per message.

Every structured payload is a run of fields `tag u8 | len u16 LE | value`.
Integers are u32 LE, reals f32 LE, text UTF-8; a tag may repeat where a list
is meant (STOP, ROLE/CONTENT pairs). Encoders write fields in tag order, so
the same request always gives the same bytes. A server rejects a tag it does
not know (the client would otherwise believe an option took effect); a client
skips tags it does not know, so later servers can add statistics.

TOKEN payloads are bare UTF-8 text, PONG echoes the PING payload, CANCEL is
the u16 LE seq to cancel and ERROR is `code u16 LE | message UTF-8`.

REGISTER carries a constraint id and one constraint (a JSON Schema as JSON
text, choices, a regex or a Lark grammar); a GENERATE or CHAT names the id in
its CONSTRAINT field. The decoders here check only the layout: whether the
engine accepts the constraint is the server's question (`server.py`).

    >>> p = encode_generate("Hi", max_tokens=8, temperature=0.7)
    >>> p.hex(" ")
    '01 02 00 48 69 10 04 00 08 00 00 00 11 04 00 33 33 33 3f'
    >>> decode_generate(p)
    ('Hi', {'max_tokens': 8, 'temperature': 0.7})
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from enum import IntEnum
from typing import Any

from ..errors import InvalidArgumentError, ProtocolError
from .protocol import MAX_PAYLOAD


class Tag(IntEnum):
    """Field tags; one namespace for all message types."""

    PROMPT = 0x01
    ROLE = 0x02
    CONTENT = 0x03
    MAX_TOKENS = 0x10
    TEMPERATURE = 0x11
    TOP_K = 0x12
    TOP_P = 0x13
    MIN_P = 0x14
    REPETITION_PENALTY = 0x15
    SEED = 0x16
    STOP = 0x17
    CONSTRAINT = 0x18
    MODEL = 0x20
    CONTEXT = 0x21
    BACKEND = 0x22
    PROTOCOL_VERSION = 0x23
    MAX_PAYLOAD = 0x24
    MAX_CONSTRAINTS = 0x25
    MAX_CONSTRAINT_SIZE = 0x26
    PROMPT_TOKENS = 0x30
    GENERATED_TOKENS = 0x31
    PREFILL_TOK_S = 0x32
    DECODE_TOK_S = 0x33
    STOP_REASON = 0x34
    CAPPED_MAX_TOKENS = 0x35
    FINISH_REASON = 0x36
    CONSTRAINT_STATE = 0x37
    JSON_SCHEMA = 0x40
    CHOICE = 0x41
    REGEX = 0x42
    GRAMMAR = 0x43
    CONSTRAINTS_HELD = 0x44


U32, F32, TEXT = "u32", "f32", "text"

# Sampling keyword -> (tag, kind), in tag order: the keywords of `model.stream(...)`
# except `repeat_last_n` (a request over the line gets its default, 64).
SAMPLING_FIELDS: dict[str, tuple[Tag, str]] = {
    "max_tokens": (Tag.MAX_TOKENS, U32),
    "temperature": (Tag.TEMPERATURE, F32),
    "top_k": (Tag.TOP_K, U32),
    "top_p": (Tag.TOP_P, F32),
    "min_p": (Tag.MIN_P, F32),
    "repetition_penalty": (Tag.REPETITION_PENALTY, F32),
    "seed": (Tag.SEED, U32),
    "stop": (Tag.STOP, TEXT),
}
# GENERATE and CHAT: the sampling fields and the id of a registered constraint.
REQUEST_FIELDS: dict[str, tuple[Tag, str]] = {**SAMPLING_FIELDS, "constraint": (Tag.CONSTRAINT, U32)}
INFO_FIELDS: dict[str, tuple[Tag, str]] = {
    "name": (Tag.MODEL, TEXT),
    "ctx": (Tag.CONTEXT, U32),
    "backend": (Tag.BACKEND, TEXT),
    "protocol_version": (Tag.PROTOCOL_VERSION, U32),
    "max_payload": (Tag.MAX_PAYLOAD, U32),
    "max_constraints": (Tag.MAX_CONSTRAINTS, U32),
    "max_constraint_size": (Tag.MAX_CONSTRAINT_SIZE, U32),
}
DONE_FIELDS: dict[str, tuple[Tag, str]] = {
    "prompt_tokens": (Tag.PROMPT_TOKENS, U32),
    "generated_tokens": (Tag.GENERATED_TOKENS, U32),
    "prefill_tok_s": (Tag.PREFILL_TOK_S, F32),
    "decode_tok_s": (Tag.DECODE_TOK_S, F32),
    "stop_reason": (Tag.STOP_REASON, TEXT),
    "capped_max_tokens": (Tag.CAPPED_MAX_TOKENS, U32),
    "finish_reason": (Tag.FINISH_REASON, TEXT),
    "constraint": (Tag.CONSTRAINT_STATE, TEXT),
}
ACK_FIELDS: dict[str, tuple[Tag, str]] = {
    "constraint": (Tag.CONSTRAINT, U32),
    "constraints_held": (Tag.CONSTRAINTS_HELD, U32),
}
# REGISTER: the constraint kinds, by the keyword `Model.generate` takes for them (JSON_SCHEMA is sent as
# the schema's JSON text and becomes a json_schema response_format on the server).
CONSTRAINT_KINDS: dict[str, Tag] = {
    "json_schema": Tag.JSON_SCHEMA,
    "choices": Tag.CHOICE,
    "regex": Tag.REGEX,
    "grammar": Tag.GRAMMAR,
}
MAX_CONSTRAINT_ID = 255  # ids are 1..255: a byte on a microcontroller; 0 is never an id

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_F32 = struct.Struct("<f")
_FIELD = struct.Struct("<BH")

# ------------------------------------------------------------------ TLV


def _field(tag: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise InvalidArgumentError(f"field 0x{tag:02x} of {len(value)} bytes does not fit a u16 length")
    return _FIELD.pack(tag, len(value)) + value


def _value(name: str, kind: str, v: Any) -> bytes:
    if kind == U32:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if not 0 <= v <= 0xFFFFFFFF:
            raise InvalidArgumentError(f"{name}={v} is outside 0..4294967295")
        return _U32.pack(v)
    if kind == F32:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(v).__name__}")
        if not math.isfinite(v):
            raise InvalidArgumentError(f"{name}={v} is not finite")
        return _F32.pack(v)
    if not isinstance(v, str):
        raise TypeError(f"{name} must be a str, got {type(v).__name__}")
    return v.encode("utf-8")


def iter_fields(payload: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield `(tag, value)` for each field; ProtocolError on a cut field.

    >>> list(iter_fields(bytes.fromhex("01 02 00 48 69")))
    [(1, b'Hi')]
    """
    i, n = 0, len(payload)
    while i < n:
        if n - i < _FIELD.size:
            raise ProtocolError(f"field header cut at offset {i} ({n - i} bytes left, need 3)")
        tag, length = _FIELD.unpack_from(payload, i)
        i += _FIELD.size
        if length > n - i:
            raise ProtocolError(f"field 0x{tag:02x} at offset {i - 3} says {length} bytes, only {n - i} left")
        yield tag, payload[i : i + length]
        i += length


def _parse(kind: str, tag: int, raw: bytes) -> Any:
    if kind == TEXT:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(f"field 0x{tag:02x} is not valid UTF-8: {e}") from None
    if len(raw) != 4:
        raise ProtocolError(f"field 0x{tag:02x} must be 4 bytes ({kind}), got {len(raw)}")
    if kind == U32:
        return _U32.unpack(raw)[0]
    return f32_to_float(raw)


def f32_to_float(raw: bytes) -> float:
    """The shortest decimal that is the same f32: 0.7 stays 0.7, not 0.699999988.

    >>> f32_to_float(struct.pack("<f", 0.7))
    0.7
    """
    (v,) = _F32.unpack(raw)
    if not math.isfinite(v):
        return v
    for digits in range(1, 10):
        short = float(f"{v:.{digits}g}")
        if _F32.pack(short) == raw:
            return short
    return v


def _encode_fields(spec: Mapping[str, tuple[Tag, str]], values: Mapping[str, Any]) -> bytes:
    unknown = set(values) - set(spec)
    if unknown:
        raise TypeError(f"unknown field(s) {sorted(unknown)}; known: {list(spec)}")
    out = bytearray()
    for name, (tag, kind) in spec.items():
        v = values.get(name)
        if v is None:
            continue
        items = ([v] if isinstance(v, str) else list(v)) if name == "stop" else [v]
        for item in items:
            out += _field(tag, _value(name, kind, item))
    return bytes(out)


def _decode_fields(
    spec: Mapping[str, tuple[Tag, str]], fields: Sequence[tuple[int, bytes]], *, strict: bool
) -> dict[str, Any]:
    by_tag = {tag: (name, kind) for name, (tag, kind) in spec.items()}
    out: dict[str, Any] = {}
    for tag, raw in fields:
        if tag not in by_tag:
            if strict:
                raise ProtocolError(f"unknown field tag 0x{tag:02x}")
            continue
        name, kind = by_tag[tag]
        value = _parse(kind, tag, raw)
        if name == "stop":
            out.setdefault("stop", []).append(value)
        elif name in out:
            raise ProtocolError(f"field {name} (0x{tag:02x}) appears twice")
        else:
            out[name] = value
    return out


# -------------------------------------------------------------- requests


def encode_sampling(**sampling: Any) -> bytes:
    """Sampling fields and `constraint` (a registered id); None means "the model's default" (no constraint)
    and is left out."""
    return _encode_fields(REQUEST_FIELDS, sampling)


def encode_generate(prompt: str, **sampling: Any) -> bytes:
    """GENERATE payload: PROMPT, then sampling fields, then CONSTRAINT.

    >>> encode_generate("Go", max_tokens=4, constraint=3).hex(" ")
    '01 02 00 47 6f 10 04 00 04 00 00 00 18 04 00 03 00 00 00'
    """
    return _field(Tag.PROMPT, _value("prompt", TEXT, prompt)) + encode_sampling(**sampling)


def decode_generate(payload: bytes) -> tuple[str, dict[str, Any]]:
    """`(prompt, options)`: the sampling fields and `constraint` when given; ProtocolError on anything a
    server must refuse."""
    prompt: str | None = None
    rest = []
    for tag, raw in iter_fields(payload):
        if tag == Tag.PROMPT:
            if prompt is not None:
                raise ProtocolError("field prompt (0x01) appears twice")
            prompt = _parse(TEXT, tag, raw)
        else:
            rest.append((tag, raw))
    if prompt is None:
        raise ProtocolError("GENERATE has no prompt field (0x01)")
    return prompt, _decode_fields(REQUEST_FIELDS, rest, strict=True)


def encode_chat(messages: Sequence[Mapping[str, str]], **sampling: Any) -> bytes:
    """CHAT payload: ROLE/CONTENT pairs in order, then sampling fields, then CONSTRAINT.

    >>> encode_chat([{"role": "user", "content": "Hi"}]).hex(" ")
    '02 04 00 75 73 65 72 03 02 00 48 69'
    """
    if not messages:
        raise InvalidArgumentError("chat needs at least one message")
    out = bytearray()
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise InvalidArgumentError(f"message {i} must be a mapping with 'role' and 'content', got {m!r}")
        out += _field(Tag.ROLE, _value("role", TEXT, m["role"]))
        out += _field(Tag.CONTENT, _value("content", TEXT, m["content"]))
    return bytes(out) + encode_sampling(**sampling)


def decode_chat(payload: bytes) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """`(messages, sampling)`; each ROLE must be followed by its CONTENT."""
    messages: list[dict[str, str]] = []
    role: str | None = None
    rest = []
    for tag, raw in iter_fields(payload):
        if tag == Tag.ROLE:
            if role is not None:
                raise ProtocolError(f"CHAT role {role!r} has no content field")
            role = _parse(TEXT, tag, raw)
        elif tag == Tag.CONTENT:
            if role is None:
                raise ProtocolError("CHAT content field without a role before it")
            messages.append({"role": role, "content": _parse(TEXT, tag, raw)})
            role = None
        else:
            rest.append((tag, raw))
    if role is not None:
        raise ProtocolError(f"CHAT role {role!r} has no content field")
    if not messages:
        raise ProtocolError("CHAT has no messages")
    return messages, _decode_fields(REQUEST_FIELDS, rest, strict=True)


def encode_cancel(target_seq: int) -> bytes:
    """CANCEL payload: the seq of the GENERATE/CHAT to stop."""
    if not 1 <= target_seq <= 0xFFFF:
        raise InvalidArgumentError(f"seq {target_seq} is outside 1..65535")
    return _U16.pack(target_seq)


def decode_cancel(payload: bytes) -> int:
    if len(payload) != 2:
        raise ProtocolError(f"CANCEL payload must be 2 bytes (u16 seq), got {len(payload)}")
    return _U16.unpack(payload)[0]


def _check_id(constraint_id: Any) -> int:
    if isinstance(constraint_id, bool) or not isinstance(constraint_id, int):
        raise TypeError(f"a constraint id must be an int, got {type(constraint_id).__name__}")
    if not 1 <= constraint_id <= MAX_CONSTRAINT_ID:
        raise InvalidArgumentError(f"constraint id {constraint_id} is outside 1..{MAX_CONSTRAINT_ID}")
    return constraint_id


def encode_register(constraint_id: int, *, json_schema: Any = None, choices: Sequence[str] | None = None,
                    regex: str | None = None, grammar: str | None = None) -> bytes:
    """REGISTER payload: CONSTRAINT (the id), then one constraint; `json_schema` is a schema (a dict, sent as
    compact JSON) or its JSON text, `choices` a list of strings (one CHOICE field each).

    >>> encode_register(1, choices=["left", "right"]).hex(" ")
    '18 04 00 01 00 00 00 41 04 00 6c 65 66 74 41 05 00 72 69 67 68 74'
    """
    given = {k: v for k, v in (("json_schema", json_schema), ("choices", choices), ("regex", regex),
                               ("grammar", grammar)) if v is not None}
    if len(given) != 1:
        raise InvalidArgumentError(f"REGISTER takes one constraint (json_schema, choices, regex or grammar), got "
                                   f"{', '.join(given) or 'none'}")
    ((kind, value),) = given.items()
    out = bytearray(_field(Tag.CONSTRAINT, _value("constraint", U32, _check_id(constraint_id))))
    if kind == "json_schema" and not isinstance(value, str):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if kind == "choices":
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f"choices must be a list of strings, got {type(value).__name__}")
        if not value:
            raise InvalidArgumentError("choices is empty: give at least one string")
        for c in value:
            out += _field(Tag.CHOICE, _value("choices", TEXT, c))
    else:
        out += _field(CONSTRAINT_KINDS[kind], _value(kind, TEXT, value))
    return bytes(out)


def decode_register(payload: bytes) -> tuple[int, str, str | list[str]]:
    """`(constraint_id, kind, value)`: kind is a key of CONSTRAINT_KINDS, value the JSON text, the regex,
    the grammar or the list of choices. ProtocolError on a layout a server must refuse (no id, an id out of
    range, no constraint or two kinds, an unknown tag); what the engine makes of the value is not checked."""
    by_tag = {tag: kind for kind, tag in CONSTRAINT_KINDS.items()}
    cid: int | None = None
    kind: str | None = None
    values: list[str] = []
    for tag, raw in iter_fields(payload):
        if tag == Tag.CONSTRAINT:
            if cid is not None:
                raise ProtocolError("field constraint (0x18) appears twice")
            cid = _parse(U32, tag, raw)
            continue
        if tag not in by_tag:
            raise ProtocolError(f"unknown field tag 0x{tag:02x}")
        if kind is not None and (by_tag[tag] != kind or kind != "choices"):
            raise ProtocolError(f"REGISTER gives {kind} (0x{CONSTRAINT_KINDS[kind]:02x}) and {by_tag[tag]} "
                                f"(0x{tag:02x}): register one constraint per id")
        kind = by_tag[tag]
        values.append(_parse(TEXT, tag, raw))
    if cid is None:
        raise ProtocolError("REGISTER has no constraint field (0x18): the id to register under")
    if not 1 <= cid <= MAX_CONSTRAINT_ID:
        raise ProtocolError(f"constraint id {cid} is outside 1..{MAX_CONSTRAINT_ID}")
    if kind is None:
        raise ProtocolError(f"REGISTER of constraint {cid} gives no constraint: one of json_schema (0x40), "
                            "choice (0x41, repeated), regex (0x42) or grammar (0x43)")
    return cid, kind, values if kind == "choices" else values[0]


def encode_unregister(constraint_id: int | None = None) -> bytes:
    """UNREGISTER payload: CONSTRAINT, or nothing to drop every constraint of the line."""
    if constraint_id is None:
        return b""
    return _field(Tag.CONSTRAINT, _value("constraint", U32, _check_id(constraint_id)))


def decode_unregister(payload: bytes) -> int | None:
    """The id to drop, or None for all of them."""
    got = _decode_fields({"constraint": (Tag.CONSTRAINT, U32)}, list(iter_fields(payload)), strict=True)
    return got.get("constraint")


# ------------------------------------------------------------- responses


def encode_info_reply(info: Mapping[str, Any]) -> bytes:
    """INFO_REPLY payload from `{"name", "ctx", "backend", "protocol_version", "max_payload", "max_constraints",
    "max_constraint_size"}` (other keys are ignored)."""
    return _encode_fields(INFO_FIELDS, {k: v for k, v in info.items() if k in INFO_FIELDS})


def decode_info_reply(payload: bytes) -> dict[str, Any]:
    return _decode_fields(INFO_FIELDS, list(iter_fields(payload)), strict=False)


def encode_done(stats: Mapping[str, Any]) -> bytes:
    """DONE payload from the keys of `model.last_stats` (others are ignored)."""
    return _encode_fields(DONE_FIELDS, {k: v for k, v in stats.items() if k in DONE_FIELDS})


def decode_done(payload: bytes) -> dict[str, Any]:
    return _decode_fields(DONE_FIELDS, list(iter_fields(payload)), strict=False)


def encode_ack(ack: Mapping[str, Any]) -> bytes:
    """ACK payload from `{"constraint": id (absent after dropping all), "constraints_held": n}`."""
    return _encode_fields(ACK_FIELDS, ack)


def decode_ack(payload: bytes) -> dict[str, Any]:
    return _decode_fields(ACK_FIELDS, list(iter_fields(payload)), strict=False)


def encode_error(code: int, message: str) -> bytes:
    """ERROR payload; the message is cut (on a character boundary) to fit a frame.

    >>> encode_error(8, "busy").hex(" ")
    '08 00 62 75 73 79'
    """
    return _U16.pack(code) + truncate_utf8(message, MAX_PAYLOAD - 2)


def decode_error(payload: bytes) -> tuple[int, str]:
    if len(payload) < 2:
        raise ProtocolError(f"ERROR payload must hold at least a u16 code, got {len(payload)} bytes")
    return _U16.unpack_from(payload)[0], payload[2:].decode("utf-8", errors="replace")


def truncate_utf8(text: str, limit: int) -> bytes:
    """UTF-8 of `text`, cut to at most `limit` bytes without splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return raw
    return raw[:limit].decode("utf-8", errors="ignore").encode("utf-8")


def split_utf8(text: str, limit: int) -> list[bytes]:
    """UTF-8 of `text` in pieces of at most `limit` bytes, split between characters.

    >>> split_utf8("aé" * 2, 3)
    [b'a\\xc3\\xa9', b'a\\xc3\\xa9']
    """
    if limit < 1:
        raise InvalidArgumentError(f"pieces of {limit} bytes cannot hold any text")
    raw = text.encode("utf-8")
    out = []
    while raw:
        cut = min(limit, len(raw))
        while cut < len(raw) and (raw[cut] & 0xC0) == 0x80:
            cut -= 1
        if cut == 0:  # the next character is longer than a piece: cutting would never advance
            size = 1 + len(raw[1:4]) - len(raw[1:4].lstrip(bytes(range(0x80, 0xC0))))
            raise InvalidArgumentError(f"a {size}-byte character does not fit in pieces of {limit} bytes")
        out.append(raw[:cut])
        raw = raw[cut:]
    return out
