"""An HTTP server with OpenAI's API for one model: chat and text completions (whole or streamed), models,
health, tokenize, metrics, and the kiosk page; `pip install 'edge-sdk[server]'` (Starlette, uvicorn,
sse-starlette).

One generation runs at a time on a thread that owns the model (`scheduler`); the others wait in a bounded
queue, and past it get 503 with Retry-After. Requests are checked (`bodies`) into OpenAI-shaped errors
(`errors`), run (`generation`) and answered in OpenAI's shapes (`responses`) by the Starlette app (`app`),
which uvicorn serves (`run`, with a deadline on request heads: `protocol`). docs/server.md describes it all.

Example::

    import edge_sdk
    edge_sdk.serve(edge_sdk.load("smollm2-135m"), port=8080)   # or: edge-sdk serve -m smollm2-135m

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="unused")
    client.chat.completions.create(model="smollm2-135m", messages=[{"role": "user", "content": "Hi"}])
"""

from __future__ import annotations

from typing import Any

__all__ = ["serve", "make_server", "create_app", "ServerConfig", "ServerState"]


def _missing(e: ImportError) -> Exception:
    from ..errors import EdgeSDKError

    return EdgeSDKError(f"the HTTP server needs its extra: pip install 'edge-sdk[server]' ({e})")


def __getattr__(name: str) -> Any:
    # Starlette and uvicorn are an extra: importing edge_sdk.server alone names what is missing
    if name in ("serve", "make_server"):
        try:
            from . import run
        except ImportError as e:
            raise _missing(e) from None
        return getattr(run, name)
    if name in ("create_app", "ServerConfig", "ServerState"):
        try:
            from . import app
        except ImportError as e:
            raise _missing(e) from None
        return getattr(app, name)
    raise AttributeError(f"module 'edge_sdk.server' has no attribute {name!r}")
