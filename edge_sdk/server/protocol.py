"""uvicorn's h11 protocol with a deadline for the request head, against slowloris-style clients.

uvicorn closes idle keep-alive connections but waits forever for a request head that never ends, so a
client that sends a few header bytes now and then holds a connection (and a file descriptor) for as long as
it likes. `guarded_protocol(seconds)` is `H11Protocol` that closes a connection when a request has not begun
(a whole head parsed by h11) within `seconds` of the connection opening or the previous response ending.
Parsing stays h11's.

Example::

    uvicorn.Config(app, http=guarded_protocol(10.0))
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11Protocol(H11Protocol):
    header_timeout_s = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # a request is being served: its body and response have their own limits

    def on_response_complete(self) -> None:
        self._arm()  # before the next pipelined request, which handle_events may start at once
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def guarded_protocol(header_timeout_s: float) -> type[GuardedH11Protocol]:
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": float(header_timeout_s)})
