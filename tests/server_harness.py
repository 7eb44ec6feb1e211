"""Helpers of the HTTP server tests: a tiny model with a long context, and servers on loopback ports.

`running(model, **config)` serves a loaded model from a thread of the test process on a free port of
127.0.0.1 and stops it (refusing what waits, as SIGTERM does) when the block ends; `subprocess_server`
starts `python -m edge_sdk serve` and reads the port it bound from its first line on stderr.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from typing import Iterator

import edge_sdk
from tiny_models import tiny_config, tiny_weights, write_gguf
from tiny_vocab import tiny_gpt2_vocab

SERVING_LINE = re.compile(r"\[serving (\S+) on http://127\.0\.0\.1:(\d+) ")


def write_long_tiny_gguf(path: str) -> str:
    """The tiny random model with a 2048-token context (room for a prompt that lists tools)."""
    vocab = tiny_gpt2_vocab()
    cfg = tiny_config(len(vocab["tokens"]), max_ctx=2048)
    return write_gguf(path, cfg, tiny_weights(cfg, seed=0), vocab)


def load_tiny(path: str) -> "edge_sdk.Model":
    return edge_sdk.load(path, ctx=2048, kv_dtype="f32")


@contextlib.contextmanager
def running(model, **config) -> Iterator:
    """A server for `model` on 127.0.0.1 (a free port), from a thread; `server.port`, `server.state`."""
    from edge_sdk.server.run import make_server

    server = make_server(model, host="127.0.0.1", port=0, log_level="error", **config)
    thread = threading.Thread(target=server.run, name="test-server", daemon=True)
    thread.start()
    server.wait_started()
    try:
        yield server
    finally:
        server.stop()
        thread.join(30)
        assert not thread.is_alive(), "the server did not stop within 30 s"


def url(server, path: str = "") -> str:
    return f"http://127.0.0.1:{server.port}{path}"


@contextlib.contextmanager
def subprocess_server(model_path: str, *args: str, timeout: float = 60.0) -> Iterator[tuple[subprocess.Popen, int]]:
    """`python -m edge_sdk serve -m MODEL --port 0 ARGS` and the port it listens on; killed if still running."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "edge_sdk", "serve", "-m", model_path, "--port", "0",
                             "--log-level", "warning", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    port = None
    deadline = time.monotonic() + timeout
    try:
        assert proc.stderr is not None
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            m = SERVING_LINE.search(line)
            if m:
                port = int(m.group(2))
        assert port is not None, "the server printed no [serving ...] line:\n" + "".join(lines)
        proc.stderr_head = "".join(lines)  # type: ignore[attr-defined]
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def wait_ready(port: int, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the server on port {port} was not ready within {timeout} s")
