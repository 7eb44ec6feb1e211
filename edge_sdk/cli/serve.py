"""`edge-sdk serve`: serve a model over HTTP with OpenAI's API (and the kiosk page at /).

    edge-sdk serve -m smollm2-135m                          # http://127.0.0.1:8080/v1
    edge-sdk serve --host 0.0.0.0 --api-key "$KEY" --board rpi5-8gb --system-prompt kiosk.txt
    edge-sdk serve --slots 4 --prompt-cache /var/cache/edge-sdk/slots   # slots kept across restarts

Needs `pip install 'edge-sdk[server]'`. The port is bound first; the model then loads while GET /health
answers 503 {"status": "loading"}. Runs until SIGTERM (exit status 0) or Ctrl-C (130). docs/server.md has
the endpoints.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import InvalidArgumentError
from .common import add_model_args


def _read_text(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgumentError(f"{what} {path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def load_args(a: argparse.Namespace) -> dict[str, Any]:
    """The arguments of `edge_sdk.load` the flags give."""
    return dict(backend=a.backend, board=a.board, threads=a.threads, ctx=a.ctx, kv_dtype=a.kv_dtype,
                group_size=a.group_size, quiet=False, slots=a.slots, prompt_cache=a.prompt_cache)


def cmd(a: argparse.Namespace) -> int:
    try:
        from ..server import run as server_run
    except ImportError as e:
        raise InvalidArgumentError(f"edge-sdk serve needs the server extra: pip install 'edge-sdk[server]' ({e})") from None
    if a.port < 0 or a.port > 65535:
        raise InvalidArgumentError(f"--port must be in 0..65535, got {a.port}")
    system_prompt = _read_text(a.system_prompt, "--system-prompt") if a.system_prompt else None
    server_run.serve(a.model, host=a.host, port=a.port, api_key=a.api_key, queue=a.queue, cors=a.cors,
                     system_prompt=system_prompt or None, log_level=a.log_level, load_args=load_args(a),
                     max_body_bytes=a.max_body_bytes, shutdown_grace_s=a.grace)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the model over HTTP: OpenAI's API, and the kiosk page at /")
    add_model_args(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: every interface, "
                        "give --api-key)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0: any free port)")
    p.add_argument("--api-key", default=None, help="requests must send 'Authorization: Bearer KEY'")
    p.add_argument("--queue", type=int, default=None,
                   help="requests that may wait behind the running one (default 8); past it, 503 with Retry-After")
    p.add_argument("--slots", type=int, default=None,
                   help="prompt-cache slots: KV caches of recent prompts that later prompts sharing a prefix reuse "
                        "(default 2; with --board, what the plan's memory left holds; 0: off)")
    p.add_argument("--prompt-cache", metavar="DIR", default=None,
                   help="save the slots to DIR when the server stops and read them back at start")
    p.add_argument("--system-prompt", metavar="FILE", default=None,
                   help="system message for chat requests that bring none (the kiosk's instructions)")
    p.add_argument("--cors", metavar="ORIGIN", default=None,
                   help="allow browser pages from ORIGIN (or *) to call the API (default: no CORS headers)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (default 1 MiB; 413 past it)")
    p.add_argument("--grace", type=float, default=10.0,
                   help="on SIGTERM, seconds a running generation may finish before it is cancelled (default 10)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="server log on stderr (debug: one line per request)")
    p.set_defaults(func=cmd)
