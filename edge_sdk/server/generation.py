"""What the model thread runs for one request: prompt, checks, then the generation, reported as events.

`check_values` runs on the event loop before a request is queued (sampling ranges, tools, the constraint's
shape), so a bad value is a 422 at once, not after the wait. `run` runs on the model thread: it renders and
tokenizes the prompt, checks it fits the context, then emits

* ``("start", {"prompt_tokens": n})`` once everything is checked (a stream's HTTP headers go out now; with
  tools, once the reply is there),
* ``("text", piece)`` for each piece of text as it is decoded (not with tools: their reply is parsed whole),
* ``("message", {...})`` the assistant message of a reply with tools,
* ``("end", stats)`` with `Model.last_stats` (plus "finish_reason" in OpenAI's words),

or ``("error", exception)`` instead of anything after "start" that cannot come. A request that leaves
`max_tokens` out may fill what the context has left after its prompt.

Example::

    job = Job(lambda j: run(model, request, j, system_prompt=None, metrics=m), loop)
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import ContextOverflowError, InvalidArgumentError
from .bodies import GenerationRequest
from .errors import unprocessable
from .metrics import Metrics
from .scheduler import Job


def check_values(model: Any, req: GenerationRequest) -> None:
    """The values of `req` that can be checked without the model thread (422s)."""
    from ..generate.tools import check_tool_choice, check_tools
    from ..model.sampling_params import SamplingParams

    SamplingParams(**{**model.generation_defaults, **req.sampling})
    if req.tools is not None:
        if req.response_format is not None:
            raise unprocessable("response_format cannot be combined with tools: give one constraint",
                                param="response_format")
        check_tool_choice(req.tool_choice, check_tools(req.tools))
    elif req.tool_choice is not None and req.tool_choice != "none":
        raise unprocessable("tool_choice needs tools", param="tool_choice")


def with_system(messages: list[dict[str, Any]], system_prompt: str | None) -> list[dict[str, Any]]:
    """`messages` with the server's system prompt first, unless they bring their own."""
    if not system_prompt or any(m["role"] == "system" for m in messages):
        return messages
    return [{"role": "system", "content": system_prompt}, *messages]


def warm_system_prompt(model: Any, system_prompt: str) -> None:
    """Prefill the system prompt as the chat template renders it (the prefix every chat request without a
    system message of its own starts with), so that its KV rows are in the cache and a prompt-cache slot.
    Nothing to do where the template does not render it as a prefix (`generate.system_prompt`)."""
    from ..generate.system_prompt import system_prompt_ids

    try:
        ids = system_prompt_ids(model.chat_prompt, lambda t: model.tokenize(t, special=True), system_prompt)
    except InvalidArgumentError:
        return
    if len(ids) < model.backend.ctx:
        for _ in model.stream_ids(ids, max_tokens=1, temperature=0):
            pass


def _checked_ids(model: Any, ids: Sequence[int]) -> list[int]:
    ctx = model.backend.ctx
    if not ids:
        raise InvalidArgumentError("the prompt is empty (no tokens)")
    if len(ids) > ctx:
        raise ContextOverflowError(f"the prompt has {len(ids)} tokens but the context holds {ctx}; shorten it")
    vocab = model.config.vocab_size
    bad = [t for t in ids if not 0 <= t < vocab]
    if bad:
        raise unprocessable(f"token ids must be in [0, {vocab}), got {bad[:5]}", param="prompt")
    return list(ids)


def _sampling(model: Any, req: GenerationRequest, n_prompt: int) -> dict[str, Any]:
    sampling = dict(req.sampling)
    sampling.setdefault("max_tokens", max(1, model.backend.ctx - n_prompt))
    return sampling


def run(model: Any, req: GenerationRequest, job: Job, system_prompt: str | None, metrics: Metrics | None) -> None:
    """The request's generation on the model thread, as events on `job` (see the module's docstring)."""
    if job.cancel.is_set():
        return
    stats: dict[str, Any]
    if req.kind == "chat" and req.tools is not None:
        from ..generate.tools import check_tools

        tools = check_tools(req.tools)  # as Model.chat renders them
        messages = with_system(req.messages or [], system_prompt)
        ids = _checked_ids(model, model.tokenize(model.chat_prompt(messages, tools=tools), special=True))
        reply = model.chat(messages, tools=tools, tool_choice=req.tool_choice, cancel=job.cancel,
                           **_sampling(model, req, len(ids)))
        stats = dict(model.last_stats)
        job.emit("start", {"prompt_tokens": len(ids)})  # a reply with tools is parsed whole: it starts when done
        job.emit("message", reply)
    else:
        if req.kind == "chat":
            text = model.chat_prompt(with_system(req.messages or [], system_prompt))
            ids = _checked_ids(model, model.tokenize(text, special=True))
        elif isinstance(req.prompt, str):
            ids = _checked_ids(model, model.tokenize(req.prompt))
        else:
            ids = _checked_ids(model, req.prompt or [])
        sampling = _sampling(model, req, len(ids))
        if req.response_format is not None:
            sampling["response_format"] = req.response_format
        pieces = model.stream_ids(ids, cancel=job.cancel, **sampling)  # checks every value before a token
        job.emit("start", {"prompt_tokens": len(ids)})
        try:
            for piece in pieces:
                job.emit("text", piece)
        finally:
            pieces.close()
        stats = dict(model.last_stats)
    if metrics is not None:
        metrics.record_generation(stats)
    job.emit("end", stats)
