"""Tool calls in OpenAI's shapes: the tools in the prompt, a constraint that makes every call valid, the reply parsed.

`tools` is OpenAI's list of function tools, ``[{"type": "function", "function": {"name": ..., "description":
..., "parameters": <JSON Schema>}}]``. A chat template that has a tools section (it uses the `tools` variable,
as Hugging Face templates do) renders them itself; otherwise a system message (`DEFAULT_TOOL_PROMPT`) lists them
and asks for ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.

`tool_choice` picks the constraint:

* "auto" (the default): free text (without "<"), or one tool call;
* "required": one tool call, to any of the tools;
* {"type": "function", "function": {"name": N}}: one call to N;
* "none": no call; the reply is free text.

Calls are generated under a grammar whose JSON part is an anyOf over ``{"name": const, "arguments":
parameters}``, so a finished call always names a tool and its arguments validate against that tool's
parameter schema (checked again with `jsonschema` when parsed).

Example::

    tools = check_tools([{"type": "function", "function": {"name": "move", "parameters": {...}}}])
    constraint = tool_constraint(tools, check_tool_choice("required", tools))
    content, calls = parse_reply('<tool_call>{"name":"move","arguments":{"cm":10}}</tool_call>', tools)
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Mapping, Sequence

from ..errors import InvalidArgumentError
from .constraints import COMPACT_JSON, Constraint, _check_schema, _engine

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"

DEFAULT_TOOL_PROMPT = (
    "You can call functions. The functions are listed below as JSON Schemas. To call one, reply with only\n"
    + CALL_OPEN + '{"name": <the function\'s name>, "arguments": <its arguments as a JSON object>}' + CALL_CLOSE
    + "\nOtherwise answer in plain text.\n<tools>\n{tools}\n</tools>"
)
"""The system message that lists the tools for a model whose chat template has no tools section."""

TOOL_CHOICES = ("auto", "required", "none")


def check_tools(tools: Any) -> list[dict[str, Any]]:
    """OpenAI function tools, checked: names unique and well formed, parameters a valid JSON Schema object."""
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence) or not tools:
        raise InvalidArgumentError("tools must be a non-empty list of {'type': 'function', 'function': {...}} objects")
    out, names = [], set()
    for i, t in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(t, Mapping) or t.get("type") != "function" or not isinstance(t.get("function"), Mapping):
            raise InvalidArgumentError(f"{where} must be {{'type': 'function', 'function': {{'name': ..., "
                                       f"'parameters': {{...}}}}}}, got {t!r:.80}")
        f = t["function"]
        name = f.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise InvalidArgumentError(f"{where}.function.name must be 1-64 letters, digits, _ or -, got {name!r}")
        if name in names:
            raise InvalidArgumentError(f"{where}.function.name: two tools are named {name!r}")
        names.add(name)
        params = f.get("parameters", {"type": "object", "properties": {}})
        params = _check_schema(params, f"{where}.function.parameters")
        if params.get("type", "object") != "object":
            raise InvalidArgumentError(f"{where}.function.parameters must describe an object, got type "
                                       f"{params.get('type')!r}")
        desc = f.get("description", "")
        if not isinstance(desc, str):
            raise InvalidArgumentError(f"{where}.function.description must be a string")
        out.append({"type": "function", "function": {"name": name, "description": desc, "parameters": params}})
    return out


def check_tool_choice(tool_choice: Any, tools: Sequence[Mapping[str, Any]]) -> str:
    """"auto", "required", "none", or the name of the one tool to call."""
    if tool_choice is None:
        return "auto"
    if isinstance(tool_choice, str):
        if tool_choice not in TOOL_CHOICES:
            raise InvalidArgumentError(f"tool_choice must be one of {', '.join(TOOL_CHOICES)} or "
                                       f"{{'type': 'function', 'function': {{'name': ...}}}}, got {tool_choice!r}")
        return tool_choice
    f = tool_choice.get("function") if isinstance(tool_choice, Mapping) else None
    name = f.get("name") if isinstance(f, Mapping) else None
    if not isinstance(tool_choice, Mapping) or tool_choice.get("type") != "function" or not isinstance(name, str):
        raise InvalidArgumentError(f"tool_choice must be 'auto', 'required', 'none' or {{'type': 'function', "
                                   f"'function': {{'name': ...}}}}, got {tool_choice!r:.80}")
    known = [t["function"]["name"] for t in tools]
    if name not in known:
        raise InvalidArgumentError(f"tool_choice.function.name {name!r} is not one of the tools ({', '.join(known)})")
    return name


def _call_schema(tools: Sequence[Mapping[str, Any]], only: str | None) -> dict[str, Any]:
    options = [{"type": "object", "properties": {"name": {"const": t["function"]["name"]},
                                                 "arguments": t["function"]["parameters"]},
                "required": ["name", "arguments"], "additionalProperties": False}
               for t in tools if only is None or t["function"]["name"] == only]
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    return {**schema, "x-guidance": COMPACT_JSON}


def tool_constraint(tools: Sequence[Mapping[str, Any]], choice: str) -> Constraint | None:
    """The grammar of a reply under `choice`: None for "none"."""
    if choice == "none":
        return None
    call = f'{json.dumps(CALL_OPEN)} call {json.dumps(CALL_CLOSE)}'
    body = json.dumps(_call_schema(tools, None if choice in ("auto", "required") else choice))
    start = f"start: TEXT | {call}\nTEXT: /[^<]+/\n" if choice == "auto" else f"start: {call}\n"
    lark = start + f"call: %json {body}\n"
    return Constraint("tool_call", _engine().LLMatcher.grammar_from_lark(lark), "tools")


def template_renders_tools(template_source: str) -> bool:
    """Whether a chat template has a tools section (it reads the `tools` variable)."""
    return re.search(r"\btools\b", template_source) is not None


def prompt_messages(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]],
                    template_has_tools: bool) -> list[dict[str, Any]]:
    """The conversation as the template gets it. Without a tools section in the template: the tools in a
    system message (`DEFAULT_TOOL_PROMPT`, after the caller's own system message), earlier calls written back
    as `<tool_call>` text, tool results as `tool` turns."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("role") == "assistant" and m.get("tool_calls") and not template_has_tools:
            calls = []
            for c in m["tool_calls"]:
                f = c.get("function", {}) if isinstance(c, Mapping) else {}
                args = f.get("arguments", "{}")
                try:
                    args = json.loads(args) if isinstance(args, str) else args
                except ValueError:
                    raise InvalidArgumentError(f"a tool call's arguments are not JSON: {args!r:.80}") from None
                calls.append(CALL_OPEN + json.dumps({"name": f.get("name"), "arguments": args}, separators=(",", ":"))
                             + CALL_CLOSE)
            m["content"] = (m.get("content") or "") + "".join(calls)
            m.pop("tool_calls")
        if m.get("content") is None:
            m["content"] = ""
        out.append(m)
    if not template_has_tools:
        listing = "\n".join(json.dumps(t, separators=(",", ":")) for t in tools)
        system = {"role": "system", "content": DEFAULT_TOOL_PROMPT.replace("{tools}", listing)}
        if out and out[0].get("role") == "system":
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + system["content"]}
        else:
            out.insert(0, system)
    return out


def parse_reply(text: str, tools: Sequence[Mapping[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """(content, tool_calls) of a reply: a finished `<tool_call>` becomes an OpenAI tool call whose arguments
    validate against the tool's parameters; anything else is content."""
    import jsonschema

    m = re.fullmatch(re.escape(CALL_OPEN) + r"(.*)" + re.escape(CALL_CLOSE), text.strip(), re.S)
    if m is None:
        return text, []
    try:
        call = json.loads(m.group(1))
    except ValueError:
        return text, []
    by_name = {t["function"]["name"]: t for t in tools}
    name, args = call.get("name"), call.get("arguments")
    if name not in by_name or not isinstance(args, dict):
        return text, []
    try:
        jsonschema.validate(args, by_name[name]["function"]["parameters"])
    except jsonschema.ValidationError:
        return text, []
    return None, [{"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
                   "function": {"name": name, "arguments": json.dumps(args, separators=(",", ":"))}}]
