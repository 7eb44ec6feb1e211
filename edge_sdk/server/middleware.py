"""ASGI middleware of the server: the API key and the request counter.

`ApiKey` lets a request through when it carries ``Authorization: Bearer <key>`` (compared in constant time,
`hmac.compare_digest`); otherwise a 401 in OpenAI's error shape. /health and the kiosk page's static files
stay open (a supervisor checks /health; the page itself holds no secret), CORS preflights too.
`CountRequests` counts every answered request by route and status code for /metrics.

Example::

    app = CountRequests(ApiKey(app, key="s3cret"), metrics)
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from .errors import APIError
from .metrics import Metrics

PROTECTED = ("/v1/", "/tokenize", "/detokenize", "/metrics")


async def send_error(send: Any, err: APIError) -> None:
    body = json.dumps(err.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ApiKey:
    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self.expected = b"Bearer " + key.encode("utf-8")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or not scope["path"].startswith(PROTECTED):
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
        if not hmac.compare_digest(given, self.expected):
            message = "a valid API key is needed: send 'Authorization: Bearer <key>'" if given else "no API key given"
            await send_error(send, APIError(401, message, code="invalid_api_key",
                                            headers={"WWW-Authenticate": "Bearer"}))
            return
        await self.app(scope, receive, send)


class CountRequests:
    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def counted(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            self.metrics.count_request(scope["path"], status[0])
