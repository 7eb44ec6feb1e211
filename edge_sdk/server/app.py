"""The Starlette application: OpenAI's routes, /health, /tokenize, /detokenize, /metrics and the kiosk page.

Routes (docs/server.md has the fields):

    POST /v1/chat/completions   POST /v1/completions      whole, or server-sent events with `"stream": true`
    GET  /v1/models             GET  /v1/models/{id}
    GET  /health                200 {"status": "ready"}, or 503 {"status": "loading" | "shutting_down"}
    POST /tokenize              {"content": str, "add_special": bool} -> {"tokens": [...]}
    POST /detokenize            {"tokens": [...]} -> {"content": str}
    GET  /metrics               Prometheus text
    GET  /                      the files of edge_sdk/server/static/ (the kiosk page), when that folder exists

A generation request is read (at most `max_body_bytes`, within `body_timeout_s`), checked, queued
(`scheduler.Scheduler`) and run on the model thread (`generation.run`). While it waits or runs, a client that
disconnects abandons it: it leaves the queue, or the model stops within one token.

Example::

    state = ServerState(ServerConfig(api_key="k"), model=edge_sdk.load("smollm2-135m"))
    app = create_app(state)        # an ASGI app: uvicorn.run(app) serves it (`run.make_server` does)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

import anyio
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from ..errors import EdgeSDKError
from .bodies import GenerationRequest, chat_request, completion_request, get, parse_json, ARRAY, BOOLEAN, STRING
from .errors import APIError, bad_request, error_for, unavailable, unprocessable
from .generation import check_values, run as run_generation, warm_system_prompt
from .metrics import Metrics
from .middleware import ApiKey, CountRequests
from .responses import Reply, finish_reason
from .scheduler import ClientGone, Job, Scheduler

log = logging.getLogger("edge_sdk.server")

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
DEFAULT_QUEUE = 8
DEFAULT_MAX_BODY_BYTES = 1 << 20
SSE_PING_S = 15  # a comment line while a long prompt is read keeps proxies from closing the stream
SSE_SEND_TIMEOUT_S = 30  # a client that stops reading this long is dropped (its generation cancelled)


@dataclass
class ServerConfig:
    """How the server runs; `serve()` and `edge-sdk serve` fill it from their arguments."""

    api_key: str | None = None
    queue: int = DEFAULT_QUEUE  # requests that may wait behind the running one
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_s: float = 30.0
    header_timeout_s: float = 10.0  # a connection that has not sent a whole request head by then is closed
    shutdown_grace_s: float = 10.0  # SIGTERM: how long a running generation may finish before it is cancelled
    cors: str | None = None  # an origin ("https://kiosk.local" or "*"), None: no CORS headers
    system_prompt: str | None = None  # for chat requests that bring no system message
    model_name: str | None = None  # the id /v1/models shows and requests may name
    static_dir: str | None = STATIC_DIR


class ServerState:
    """The model (None while it loads), the queue and the counters of one server."""

    def __init__(self, config: ServerConfig, model: Any = None, name: str | None = None) -> None:
        self.config = config
        self.scheduler = Scheduler(config.queue)
        self.model = model
        self.load_error: BaseException | None = None
        self.status = "ready" if model is not None else "loading"
        self.name = config.model_name or name or (model_id(model.name) if model is not None else "model")
        self.metrics = Metrics(self.name)
        self.created = int(time.time())
        self._lock = threading.Lock()
        if model is not None:
            self._warm(model)

    def set_model(self, model: Any) -> None:
        with self._lock:
            self.model = model
            if not self.config.model_name:
                self.name = self.metrics.model_name = model_id(model.name)
            self._warm(model)
            if self.status == "loading":
                self.status = "ready"

    def _warm(self, model: Any) -> None:
        """Compute the system prompt's KV cache first, so the first request that starts with it reuses it."""
        if self.config.system_prompt:
            try:
                self.scheduler.submit(Job(lambda j: warm_system_prompt(model, self.config.system_prompt), None))
            except APIError:  # shutting down already
                pass

    def ready_model(self) -> Any:
        if self.status == "shutting_down":
            raise unavailable("the server is shutting down", "shutting_down")
        if self.model is None:
            raise unavailable("the model is loading; retry shortly", "loading", 5)
        return self.model

    def shutdown(self) -> None:
        """Stop taking requests; the running generation gets `shutdown_grace_s` to finish."""
        self.status = "shutting_down"
        self.scheduler.close(self.config.shutdown_grace_s)


def model_id(name: str) -> str:
    """The id a model is served as: its registered name, or its file or folder name without .gguf."""
    base = os.path.basename(os.path.normpath(str(name)))
    return base[:-5] if base.endswith(".gguf") else base


# -- reading requests ---------------------------------------------------------------------------------------
async def read_json(request: Request, config: ServerConfig) -> dict[str, Any]:
    limit = config.max_body_bytes
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise bad_request("Content-Length is not a number")
        if int(length) > limit:
            raise APIError(413, f"the request body has {int(length)} bytes; the limit is {limit}", code="too_large")
    chunks, n = [], 0
    try:
        with anyio.fail_after(config.body_timeout_s):
            async for chunk in request.stream():
                n += len(chunk)
                if n > limit:
                    raise APIError(413, f"the request body is larger than the limit of {limit} bytes", code="too_large")
                chunks.append(chunk)
    except TimeoutError:
        raise APIError(408, f"the request body did not arrive within {config.body_timeout_s:g} s", code="timeout") from None
    return parse_json(b"".join(chunks))


def _check_model_field(state: ServerState, req_model: str | None) -> None:
    if req_model is not None and req_model not in (state.name, getattr(state.model, "name", None)):
        raise APIError(404, f"the model {req_model!r} is not served here; this server serves {state.name!r}",
                       param="model", code="model_not_found")


async def _watch_disconnect(request: Request, job: Job, scheduler: Scheduler) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            scheduler.abandon(job)
            return


# -- generation routes --------------------------------------------------------------------------------------
async def _generate(request: Request, state: ServerState, parse: Any) -> Response:
    req: GenerationRequest = parse(await read_json(request, state.config))
    model = state.ready_model()
    _check_model_field(state, req.model)
    try:
        check_values(model, req)
    except Exception as e:
        raise error_for(e) from None
    job = Job(lambda j: run_generation(model, req, j, state.config.system_prompt, state.metrics),
              asyncio.get_running_loop())
    state.scheduler.submit(job)
    watcher = asyncio.ensure_future(_watch_disconnect(request, job, state.scheduler))
    handed_over = False
    try:
        kind, value = await job.next()
        if kind == "error":
            raise error_for(value)
        reply = Reply(req.kind, state.name)
        if req.stream:
            watcher.cancel()
            handed_over = True
            return EventSourceResponse(_events(job, req, reply, state), ping=SSE_PING_S,
                                       send_timeout=SSE_SEND_TIMEOUT_S,
                                       shutdown_grace_period=state.config.shutdown_grace_s + 2)
        return JSONResponse(await _whole(job, req, reply))
    finally:
        if not handed_over:
            watcher.cancel()
            if not job.finished.is_set():
                state.scheduler.abandon(job)


async def _whole(job: Job, req: GenerationRequest, reply: Reply) -> dict[str, Any]:
    pieces: list[str] = []
    message: dict[str, Any] | None = None
    while True:
        kind, value = await job.next()
        if kind == "text":
            pieces.append(value)
        elif kind == "message":
            message = value
        elif kind == "error":
            raise error_for(value)
        elif kind == "end":
            if job.cut_by_shutdown:
                raise unavailable("the server is shutting down; the generation was cut short", "shutting_down")
            if req.kind == "completion":
                return reply.whole("".join(pieces), value)
            return reply.whole(message or {"role": "assistant", "content": "".join(pieces)}, value)


async def _events(job: Job, req: GenerationRequest, reply: Reply, state: ServerState) -> AsyncIterator[str]:
    """The SSE data lines of a stream; the client leaving (the generator closed) abandons the job."""
    chat = req.kind == "chat"
    usage = req.include_usage
    try:
        if chat:
            yield json.dumps(reply.chunk({"role": "assistant", "content": ""}, with_usage=usage))
        while True:
            kind, value = await job.next()
            if kind == "text":
                yield json.dumps(reply.chunk({"content": value} if chat else value, with_usage=usage))
            elif kind == "message":  # a reply with tools, parsed whole
                delta: dict[str, Any] = {"content": value.get("content")}
                if value.get("tool_calls"):
                    delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(value["tool_calls"])]
                yield json.dumps(reply.chunk(delta, with_usage=usage))
            elif kind == "error":
                if not isinstance(value, ClientGone):
                    yield json.dumps(error_for(value).body())
                return
            elif kind == "end":
                if job.cut_by_shutdown:
                    err = unavailable("the server is shutting down; the generation was cut short", "shutting_down")
                    yield json.dumps(err.body())
                    return
                yield json.dumps(reply.chunk({} if chat else "", finish=finish_reason(value), with_usage=usage))
                if usage:
                    yield json.dumps(reply.usage_chunk(value))
                yield "[DONE]"
                return
    finally:
        if not job.finished.is_set():
            state.scheduler.abandon(job)


# -- the other routes ---------------------------------------------------------------------------------------
def _model_card(state: ServerState) -> dict[str, Any]:
    card: dict[str, Any] = {"id": state.name, "object": "model", "created": state.created, "owned_by": "edge_sdk"}
    if state.model is not None:
        info = state.model.info()
        card["meta"] = {k: info.get(k) for k in ("ctx", "backend", "vocab_size", "n_layers", "kv_dtype", "board")
                        if info.get(k) is not None}
        cache = info.get("prompt_cache")
        if cache:
            card["meta"]["prompt_cache"] = {"slots": cache.get("slots"), "slot_tokens": cache.get("slot_tokens"),
                                            "pinned_tokens": cache.get("pinned_tokens")}
    return card


def create_app(state: ServerState) -> Any:
    """The ASGI application serving `state` (its model may still be loading)."""
    config = state.config

    async def chat(request: Request) -> Response:
        return await _generate(request, state, chat_request)

    async def completions(request: Request) -> Response:
        return await _generate(request, state, completion_request)

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [_model_card(state)]})

    async def one_model(request: Request) -> Response:
        wanted = request.path_params["model_id"]
        if wanted not in (state.name, getattr(state.model, "name", None)):
            raise APIError(404, f"the model {wanted!r} is not served here; this server serves {state.name!r}",
                           param="model", code="model_not_found")
        return JSONResponse(_model_card(state))

    async def health(request: Request) -> Response:
        body = {"status": state.status, "model": state.name}
        if state.status == "ready":
            return JSONResponse(body)
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5" if state.status == "loading" else "1"})

    async def tokenize(request: Request) -> Response:
        body = await read_json(request, config)
        content = get(body, "content", STRING)
        if content is None:
            raise bad_request("content (a string) is required", param="content")
        add_special = get(body, "add_special", BOOLEAN)
        special = bool(get(body, "parse_special", BOOLEAN))
        model = state.ready_model()
        ids = await anyio.to_thread.run_sync(lambda: model.tokenize(content, special=special, add_bos=add_special))
        return JSONResponse({"tokens": ids})

    async def detokenize(request: Request) -> Response:
        body = await read_json(request, config)
        tokens = get(body, "tokens", ARRAY)
        if tokens is None or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise bad_request("tokens (an array of token ids) is required", param="tokens")
        model = state.ready_model()
        vocab = model.config.vocab_size
        bad = [t for t in tokens if not 0 <= t < vocab]
        if bad:
            raise unprocessable(f"token ids must be in [0, {vocab}), got {bad[:5]}", param="tokens")
        text = await anyio.to_thread.run_sync(lambda: model.detokenize(tokens))
        return JSONResponse({"content": text})

    async def metrics(request: Request) -> Response:
        sched = state.scheduler
        text = state.metrics.render(queue_depth=sched.depth, running=int(sched.running is not None))
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    routes: list[Any] = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", one_model, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/tokenize", tokenize, methods=["POST"]),
        Route("/detokenize", detokenize, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if config.static_dir and os.path.isdir(config.static_dir):
        from starlette.staticfiles import StaticFiles

        routes.append(Mount("/", app=StaticFiles(directory=config.static_dir, html=True), name="static"))

    handlers = {APIError: _api_error, HTTPException: _http_error, EdgeSDKError: _internal_error,
                Exception: _internal_error}
    app: Any = Starlette(routes=routes, exception_handlers=handlers)
    if config.api_key:
        app = ApiKey(app, config.api_key)
    app = CountRequests(app, state.metrics)
    if config.cors:
        from starlette.middleware.cors import CORSMiddleware

        app = CORSMiddleware(app, allow_origins=[config.cors], allow_methods=["GET", "POST"],
                             allow_headers=["Authorization", "Content-Type"])
    return app


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"no route {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
    err = APIError(exc.status_code, message.get(exc.status_code, str(exc.detail)), code="not_found"
                   if exc.status_code == 404 else None)
    return JSONResponse(err.body(), status_code=exc.status_code, headers=dict(exc.headers or {}))


async def _internal_error(request: Request, exc: Exception) -> Response:
    err = error_for(exc)
    if err.status >= 500:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)
