"""Response objects in OpenAI's shapes: chat completions, text completions, their stream chunks, usage.

`finish_reason` is OpenAI's: "stop" (the end of the text, a stop string, a complete constraint), "length"
(max_tokens or the context; also a constraint left incomplete), "tool_calls". `usage` carries
`prompt_tokens_details.cached_tokens`: prompt tokens whose KV cache was reused rather than computed.

Example::

    r = Reply("chat", "smollm2-135m")
    r.whole({"role": "assistant", "content": "Hi"}, stats)  # {"id": "chatcmpl-...", "object": "chat.completion", ...}
    r.chunk({"content": "Hi"})                              # {"object": "chat.completion.chunk", "choices": [...]}
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Mapping

from .metrics import cached_tokens


def usage(stats: Mapping[str, Any]) -> dict[str, Any]:
    prompt, completion = int(stats.get("prompt_tokens", 0)), int(stats.get("generated_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached_tokens(stats)}}


def finish_reason(stats: Mapping[str, Any]) -> str:
    reason = stats.get("finish_reason", "stop")
    return reason if reason in ("stop", "length", "tool_calls") else "length"


class Reply:
    """The id, time and model of one response, and the objects made with them."""

    def __init__(self, kind: str, model: str) -> None:
        self.kind = kind  # "chat" | "completion"
        self.id = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.model = model

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": None}

    def whole(self, message_or_text: Any, stats: Mapping[str, Any]) -> dict[str, Any]:
        """The complete response: `message_or_text` is the assistant message (chat) or the text (completion)."""
        if self.kind == "chat":
            choice = {"index": 0, "message": message_or_text, "logprobs": None, "finish_reason": finish_reason(stats)}
            return {**self._head("chat.completion"), "choices": [choice], "usage": usage(stats)}
        choice = {"index": 0, "text": message_or_text, "logprobs": None, "finish_reason": finish_reason(stats)}
        return {**self._head("text_completion"), "choices": [choice], "usage": usage(stats)}

    def chunk(self, delta: Any, finish: str | None = None, with_usage: bool = False) -> dict[str, Any]:
        """A stream chunk: `delta` is the message delta (chat) or the text piece (completion)."""
        if self.kind == "chat":
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            out = {**self._head("chat.completion.chunk"), "choices": [choice]}
        else:
            choice = {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish}
            out = {**self._head("text_completion"), "choices": [choice]}
        if with_usage:
            out["usage"] = None
        return out

    def usage_chunk(self, stats: Mapping[str, Any]) -> dict[str, Any]:
        """The last chunk of a stream with `stream_options.include_usage`: no choices, the usage."""
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {**self._head(obj), "choices": [], "usage": usage(stats)}
