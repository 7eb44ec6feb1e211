"""Request bodies of the OpenAI endpoints, checked field by field into a `GenerationRequest`.

Types are checked here (a wrong type is a 400 naming the field); values are checked where the SDK checks
them (`SamplingParams`, the constraint compiler, the tools checker), whose `InvalidArgumentError`s become
422s. Fields this server does not know are ignored, as OpenAI-compatible servers do, so that clients which
send extra fields keep working; fields it knows but does not offer (``n`` > 1, ``logprobs``, penalties
other than ``repetition_penalty``) are refused unless they hold their neutral value.

Example::

    req = chat_request({"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}],
                        "max_tokens": 16, "stream": True, "stream_options": {"include_usage": True}})
    req.sampling     # {'max_tokens': 16}
    req.include_usage  # True
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import bad_request, unprocessable

ROLES = ("system", "developer", "user", "assistant", "tool")
NUMBER, INTEGER, BOOLEAN, STRING, OBJECT, ARRAY = "a number", "an integer", "a boolean", "a string", "an object", "an array"


@dataclass
class GenerationRequest:
    """One checked request of /v1/chat/completions (`messages`) or /v1/completions (`prompt`)."""

    kind: str  # "chat" | "completion"
    model: str | None
    messages: list[dict[str, Any]] | None = None
    prompt: str | list[int] | None = None  # text, or token ids
    sampling: dict[str, Any] = field(default_factory=dict)  # keys of api.SAMPLING_KEYS, as given
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    stream: bool = False
    include_usage: bool = False


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; anything else is a 400."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad_request("the request body is not UTF-8 text") from None
    except RecursionError:
        raise bad_request("the request body is nested too deeply") from None
    except ValueError as e:
        raise bad_request(f"the request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {_kind(body)}")
    return body


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    return {str: "a string", dict: "an object", list: "an array", int: "an integer", float: "a number"}.get(
        type(v), type(v).__name__)


def _is(v: Any, kind: str) -> bool:
    if kind == NUMBER:
        return isinstance(v, numbers.Real) and not isinstance(v, bool)
    if kind == INTEGER:
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, {BOOLEAN: bool, STRING: str, OBJECT: dict, ARRAY: list}[kind])


def get(body: Mapping[str, Any], name: str, *kinds: str, where: str = "") -> Any:
    """`body[name]` when it is one of `kinds`, None when absent or null; else a 400 naming the field."""
    v = body.get(name)
    if v is None or any(_is(v, k) for k in kinds):
        return v
    raise bad_request(f"{where}{name} must be {' or '.join(kinds)}, got {_kind(v)}", param=where + name)


def _neutral(body: Mapping[str, Any], name: str, kind: str, neutral: tuple[Any, ...], why: str) -> None:
    v = get(body, name, kind)
    if v is not None and v not in neutral:
        raise bad_request(f"{name}={v!r} is not supported: {why}", param=name)


def _sampling(body: Mapping[str, Any]) -> dict[str, Any]:
    """The sampling fields given (types checked; ranges are SamplingParams')."""
    out: dict[str, Any] = {}
    for name in ("temperature", "top_p", "min_p", "repetition_penalty"):
        out[name] = get(body, name, NUMBER)
    for name in ("top_k", "seed", "repeat_last_n"):
        out[name] = get(body, name, INTEGER)
    a, b = get(body, "max_tokens", INTEGER), get(body, "max_completion_tokens", INTEGER)
    if a is not None and b is not None and a != b:
        raise bad_request("give max_tokens or max_completion_tokens, not two different values", param="max_tokens")
    out["max_tokens"] = a if a is not None else b
    stop = get(body, "stop", STRING, ARRAY)
    if isinstance(stop, list):
        if not all(isinstance(s, str) for s in stop):
            raise bad_request("stop must be a string or an array of strings", param="stop")
        stop = tuple(stop) or None
    out["stop"] = stop
    _neutral(body, "n", INTEGER, (1,), "this server returns one choice per request")
    _neutral(body, "presence_penalty", NUMBER, (0,), "use repetition_penalty")
    _neutral(body, "frequency_penalty", NUMBER, (0,), "use repetition_penalty")
    if get(body, "logit_bias", OBJECT):
        raise bad_request("logit_bias is not supported", param="logit_bias")
    return {k: v for k, v in out.items() if v is not None}


def _stream_fields(body: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = bool(get(body, "stream", BOOLEAN))
    options = get(body, "stream_options", OBJECT) or {}
    usage = bool(get(options, "include_usage", BOOLEAN, where="stream_options."))
    return stream, usage


def _content(m: Mapping[str, Any], where: str) -> str | None:
    c = get(m, "content", STRING, ARRAY, where=where)
    if not isinstance(c, list):
        return c
    texts = []
    for i, part in enumerate(c):
        p = f"{where}content[{i}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise bad_request(f"{p} must be an object with a type", param=p)
        if part["type"] != "text":
            raise unprocessable(f"{p}: only text content is supported, got type {part['type']!r}", param=p)
        texts.append(get(part, "text", STRING, where=p + ".") or "")
    return "\n".join(texts)


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = get(body, "messages", ARRAY)
    if not messages:
        raise bad_request("messages must be a non-empty array of {role, content} objects", param="messages")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]."
        if not isinstance(m, dict):
            raise bad_request(f"messages[{i}] must be an object, got {_kind(m)}", param=f"messages[{i}]")
        role = get(m, "role", STRING, where=where)
        if role not in ROLES:
            raise bad_request(f"{where}role must be one of {', '.join(ROLES)}, got {role!r}", param=where + "role")
        msg: dict[str, Any] = {"role": "system" if role == "developer" else role, "content": _content(m, where)}
        calls = get(m, "tool_calls", ARRAY, where=where)
        if calls and role == "assistant":
            msg["tool_calls"] = calls
        if msg["content"] is None and not msg.get("tool_calls"):
            raise bad_request(f"{where}content is missing", param=where + "content")
        for key in ("tool_call_id", "name"):
            v = get(m, key, STRING, where=where)
            if v is not None:
                msg[key] = v
        out.append(msg)
    return out


def chat_request(body: Mapping[str, Any]) -> GenerationRequest:
    """A checked /v1/chat/completions body."""
    _neutral(body, "logprobs", BOOLEAN, (False,), "this server does not return log-probabilities")
    _neutral(body, "top_logprobs", INTEGER, (0,), "this server does not return log-probabilities")
    stream, usage = _stream_fields(body)
    tools = get(body, "tools", ARRAY)
    return GenerationRequest(
        kind="chat", model=get(body, "model", STRING), messages=_messages(body), sampling=_sampling(body),
        response_format=_response_format(body), tools=tools or None, tool_choice=get(body, "tool_choice", STRING, OBJECT),
        stream=stream, include_usage=usage)


def _response_format(body: Mapping[str, Any]) -> dict[str, Any] | None:
    rf = get(body, "response_format", OBJECT)
    if rf is not None and rf.get("type") == "text":
        return None
    return rf


def completion_request(body: Mapping[str, Any]) -> GenerationRequest:
    """A checked /v1/completions body: one prompt, a string or an array of token ids."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # one prompt in a batch of one
    if isinstance(prompt, list):
        if not prompt or not all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            raise bad_request("prompt must be a string or an array of token ids (one prompt per request)",
                              param="prompt")
    elif not isinstance(prompt, str):
        raise bad_request(f"prompt must be a string or an array of token ids, got {_kind(prompt)}", param="prompt")
    _neutral(body, "echo", BOOLEAN, (False,), "the prompt is not repeated in the answer")
    _neutral(body, "best_of", INTEGER, (1,), "this server returns one choice per request")
    _neutral(body, "logprobs", INTEGER, (0,), "this server does not return log-probabilities")
    if get(body, "suffix", STRING):
        raise bad_request("suffix (insertion) is not supported", param="suffix")
    stream, usage = _stream_fields(body)
    return GenerationRequest(kind="completion", model=get(body, "model", STRING), prompt=prompt,
                             sampling=_sampling(body), response_format=_response_format(body), stream=stream,
                             include_usage=usage)
