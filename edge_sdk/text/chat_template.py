"""Render a conversation into a prompt with the model's Jinja chat template.

Templates come from model files (GGUF ``tokenizer.chat_template``,
``tokenizer_config.json``), so they are untrusted code: they run in Jinja's
immutable sandbox, which refuses attribute access to Python internals
(``''.__class__``) and any mutation of the objects passed in. The
environment matches the one `transformers` gives templates (trim_blocks,
lstrip_blocks, loop controls, ``raise_exception``, ``strftime_now``,
``tojson`` without ASCII escaping), so templates written for it render the
same text here.

Example::

    text = render_chat(tok.chat_template or DEFAULT_CHATML_TEMPLATE,
                       [{"role": "user", "content": "Hi"}])
    # '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
    ids = tok.encode(text, special=True)
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Mapping, Sequence

from jinja2 import TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import InvalidArgumentError, TokenizerError

# ChatML without a default system prompt; used when a model carries no template.
DEFAULT_CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ROLES = ("system", "user", "assistant", "tool")


class _RaisedByTemplate(Exception):
    """`raise_exception(...)` called from inside a template."""


def _raise_exception(message: str) -> None:
    raise _RaisedByTemplate(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: Any = None, sort_keys: bool = False) -> str:  # fmt: skip
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, failing at once on unsafe attribute access.

    The stock sandbox returns an undefined value that prints as "" and only
    fails when used further; a template probing Python internals is refused
    outright instead.
    """

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")


def _environment() -> _Sandbox:
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def validate_messages(messages: Any) -> list[dict[str, Any]]:
    """Check a conversation: a list of dicts with a known ``role`` and a string ``content``.

    Returns shallow copies of the messages; extra keys (``name``, ...) are kept.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidArgumentError(f"messages must be a list of dicts, got {type(messages).__name__}")
    if not messages:
        raise InvalidArgumentError("messages is empty; a conversation needs at least one message")
    checked = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise InvalidArgumentError(f"messages[{i}] must be a dict with 'role' and 'content', got {type(m).__name__}")
        role = m.get("role")
        if role not in ROLES:
            raise InvalidArgumentError(f"messages[{i}] has role {role!r}; supported roles: {', '.join(ROLES)}")
        content = m.get("content")
        if not isinstance(content, str):
            raise InvalidArgumentError(f"messages[{i}] content must be a string, got {type(content).__name__}")
        checked.append(dict(m))
    return checked


class ChatTemplate:
    """A compiled chat template; compile once, render many conversations.

    Example::

        tpl = ChatTemplate(tok.chat_template)
        prompt = tpl.render([{"role": "user", "content": "Hi"}], eos_token="</s>")
    """

    def __init__(self, template: str) -> None:
        if not isinstance(template, str):
            raise TokenizerError(f"chat template must be a string, got {type(template).__name__}")
        self.source = template
        try:
            self._template = _environment().from_string(template)
        except TemplateSyntaxError as e:
            raise TokenizerError(f"chat template has a syntax error at line {e.lineno}: {e.message}") from e

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        bos_token: str = "",
        eos_token: str = "",
        **extra: Any,
    ) -> str:
        """The prompt text for `messages` (see `render_chat`)."""
        checked = validate_messages(messages)
        try:
            return self._template.render(
                messages=checked,
                add_generation_prompt=add_generation_prompt,
                bos_token=bos_token,
                eos_token=eos_token,
                **extra,
            )
        except _RaisedByTemplate as e:
            raise InvalidArgumentError(f"the chat template rejected the conversation: {e}") from e
        except SecurityError as e:
            raise TokenizerError(f"the chat template tried an unsafe operation, refused by the sandbox: {e}") from e
        except (TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            raise TokenizerError(f"the chat template failed to render: {type(e).__name__}: {e}") from e


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    **extra: Any,
) -> str:
    """Render `messages` with the Jinja `template` into prompt text.

    add_generation_prompt: end with the opening of an assistant turn.
    bos_token / eos_token: the strings templates may insert (``</s>``).
    extra: more template variables (``tools``, ``date_string``...).

    Example::

        render_chat(DEFAULT_CHATML_TEMPLATE, [{"role": "user", "content": "Hi"}])
        # '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
    """
    return ChatTemplate(template).render(
        messages,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos_token,
        eos_token=eos_token,
        **extra,
    )
