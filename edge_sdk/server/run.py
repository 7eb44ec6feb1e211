"""Serving: the socket, uvicorn, the model loading behind /health, SIGTERM, and `serve()`.

The socket is bound first (a port in use fails at once, before a slow load), then the model loads in a thread
while /health says "loading" and generation requests get 503 with Retry-After. SIGTERM (or Ctrl-C) stops
taking requests: waiting ones get 503, the running generation has `shutdown_grace_s` to finish, then it is
cancelled and its client gets a "shutting_down" error; the process then exits with status 0 (Ctrl-C: 130).

Example::

    import edge_sdk
    model = edge_sdk.load("smollm2-135m")
    edge_sdk.serve(model, port=8080)                      # blocks; or a name/path, loaded behind /health

    server = make_server(model, port=0)                   # for tests and scripts: a uvicorn.Server
    threading.Thread(target=server.run).start(); server.wait_started(); server.port
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import sys
import threading
from types import FrameType
from typing import Any, Callable

import uvicorn

from ..errors import EdgeSDKError, InvalidArgumentError
from .app import ServerConfig, ServerState, create_app, model_id
from .protocol import guarded_protocol

log = logging.getLogger("edge_sdk.server")

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int, api_key: str | None) -> str | None:
    """What to warn about when `host` is reachable from other machines and no key guards it."""
    if is_loopback(host) or api_key:
        return None
    return (f"listening on {host} without an API key: anyone who can reach port {port} can use the model "
            "(give --api-key)")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise InvalidArgumentError(f"cannot listen on {host!r}: {e}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise EdgeSDKError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.setblocking(False)
    return sock


class Server(uvicorn.Server):
    """uvicorn's server for one `ServerState`, on a socket bound beforehand; `stop()` is what SIGTERM does."""

    def __init__(self, config: uvicorn.Config, state: ServerState, sock: socket.socket,
                 loader: Callable[[], Any] | None = None) -> None:
        super().__init__(config)
        self.state = state
        self.sock = sock
        self.loader = loader
        self.owns_model = loader is not None
        self.port = sock.getsockname()[1]
        self.host = sock.getsockname()[0]
        self._started = threading.Event()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            self.state.shutdown()
        super().handle_exit(sig, frame)

    def stop(self) -> None:
        """Finish (or after the grace, cancel) the running generation, refuse the rest, and stop."""
        self.state.shutdown()
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._started.set()

    def wait_started(self, timeout: float = 30.0) -> None:
        if not self._started.wait(timeout):
            raise EdgeSDKError(f"the server did not start within {timeout} s")

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        if self.loader is not None:
            threading.Thread(target=self._load, name="edge-sdk-load", daemon=True).start()
        try:
            super().run(sockets=[self.sock])
        finally:
            self.state.shutdown()
            done = self.state.scheduler.join(timeout=self.state.config.shutdown_grace_s + 5)
            if not done:  # a forward call that outlasts the grace: the process is ending, the thread with it
                log.warning("the model thread is still running; leaving without closing the model")
            elif self.owns_model and self.state.model is not None:
                self.state.model.close()  # which saves the prompt-cache slots to their directory, if any
            elif self.state.model is not None and getattr(self.state.model, "prompt_cache", None) is not None:
                self.state.model.save_prompt_cache()
        if self.state.load_error is not None:
            raise self.state.load_error

    def _load(self) -> None:
        try:
            assert self.loader is not None
            self.state.set_model(self.loader())
            print(f"[model {self.state.name} ready]", file=sys.stderr, flush=True)
        except BaseException as e:  # noqa: BLE001 - reported by run(), in the main thread
            self.state.load_error = e
            self.should_exit = True


def make_server(model: Any, *, host: str = "127.0.0.1", port: int = 8080, api_key: str | None = None,
                queue: int | None = None, cors: str | None = None, system_prompt: str | None = None,
                name: str | None = None, log_level: str = "info", load_args: dict[str, Any] | None = None,
                **config: Any) -> Server:
    """A `Server` for `model`: a loaded `Model`, or what `edge_sdk.load` takes (loaded behind /health with
    `load_args`). `config`: more `ServerConfig` fields (`max_body_bytes`, `shutdown_grace_s`, ...)."""
    from .app import DEFAULT_QUEUE

    queue = DEFAULT_QUEUE if queue is None else queue
    if isinstance(queue, bool) or not isinstance(queue, int) or queue < 0:
        raise InvalidArgumentError(f"queue must be an int >= 0 (requests waiting behind the running one), got {queue!r}")
    if api_key is not None and not api_key:
        raise InvalidArgumentError("api_key must not be empty")
    loader = None
    loaded = model if hasattr(model, "stream_ids") else None
    if loaded is None:
        from ..api import load

        args = dict(load_args or {})
        loader = lambda: load(model, **args)  # noqa: E731
        name = name or model_id(str(model or "smollm2-135m"))
    cfg = ServerConfig(api_key=api_key, queue=queue, cors=cors, system_prompt=system_prompt, model_name=name,
                       **config)
    state = ServerState(cfg, loaded)
    warning = exposure_warning(host, port, api_key)
    if warning:
        print(f"edge-sdk serve: warning: {warning}", file=sys.stderr)
    sock = bind(host, port)
    uv = uvicorn.Config(create_app(state), http=guarded_protocol(cfg.header_timeout_s), lifespan="off",
                        log_level=log_level, timeout_graceful_shutdown=int(cfg.shutdown_grace_s) + 5,
                        access_log=log_level == "debug")
    return Server(uv, state, sock, loader)


def _ignore(signum: int, frame: FrameType | None) -> None:
    pass


def serve(model: Any = None, *, host: str = "127.0.0.1", port: int = 8080, api_key: str | None = None,
          queue: int | None = None, cors: str | None = None, system_prompt: str | None = None,
          name: str | None = None, log_level: str = "info", load_args: dict[str, Any] | None = None,
          **config: Any) -> None:
    """Serve `model` over HTTP with OpenAI's API until SIGTERM or Ctrl-C (see `make_server` for the arguments).

    `model`: a loaded `edge_sdk.Model`, or a name/path that `edge_sdk.load(model, **load_args)` loads while
    /health says "loading". `host` 127.0.0.1 (loopback) by default; another without `api_key` is warned
    about. `api_key`: requests must send ``Authorization: Bearer <key>``. `queue`: requests that may wait
    behind the running generation (default 8; past it, 503 with Retry-After). `cors`: an allowed origin.
    `system_prompt`: the system message of chat requests that bring none.

    Example::

        edge_sdk.serve(edge_sdk.load("smollm2-135m"), host="0.0.0.0", port=8080, api_key=os.environ["KEY"])
    """
    server = make_server(model, host=host, port=port, api_key=api_key, queue=queue, cors=cors,
                         system_prompt=system_prompt, name=name, log_level=log_level, load_args=load_args, **config)
    where = f"http://{'[' + server.host + ']' if ':' in server.host else server.host}:{server.port}"
    print(f"[serving {server.state.name} on {where} (OpenAI API at {where}/v1); Ctrl-C or SIGTERM to stop]",
          file=sys.stderr)
    main = threading.current_thread() is threading.main_thread()
    # uvicorn re-raises the signal that stopped it once it is done; a no-op handler makes SIGTERM a clean exit
    previous = signal.signal(signal.SIGTERM, _ignore) if main else None
    try:
        server.run()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
