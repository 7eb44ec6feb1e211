"""SerialClient: talk to a SerialServer from a host script.

The client is what a microcontroller does (see `examples/mcu_client/`), in
Python: number requests, send them, read frames until the reply for that
seq. Frames with another seq (a late reply to a cancelled or timed-out
request) are skipped, and so are chunks that do not decode as frames (a
reply the server's write timeout cut short, line noise): the next valid
frame is taken, and a reply that never comes ends with the client's timeout
error. Both are counted in `stats`. `cancel()` may be called from another
thread while a `stream()` is being read; the stream then ends with the
server's DONE.

Constraints are registered once by id (`register_schema`, `register_choices`,
`register_regex`, `register_grammar`) and named by a request
(`generate(..., constraint=id)`); its text is a complete, valid answer only
when `last_stats["finish_reason"] == "stop"`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import serial

from ..errors import InvalidArgumentError, ProtocolError
from . import messages
from .protocol import ACK, CANCEL, CHAT, DONE, ERROR, GENERATE, INFO, INFO_REPLY, NO_SEQ, PING, PONG, PROTOCOL_VERSION, REGISTER, RESPONSE_TYPES, TOKEN, UNREGISTER, ErrorCode, Frame, FrameFault, FrameReader, split_message, type_name


class RemoteError(ProtocolError):
    """The server answered with an ERROR frame; `code` says why.

    >>> try:                                              # doctest: +SKIP
    ...     client.generate("hi")
    ... except RemoteError as e:
    ...     if e.code == ErrorCode.BUSY: ...
    """

    def __init__(self, code: int, seq: int, message: str) -> None:
        try:
            name = ErrorCode(code).name
        except ValueError:
            name = f"code {code}"
        where = f"request {seq}" if seq != NO_SEQ else "an undecodable frame"
        super().__init__(f"server error {name} for {where}: {message}")
        self.code = code
        self.seq = seq
        self.message = message


class _NoReply(ProtocolError):
    """Nothing came within the timeout."""


class SerialClient:
    """Client side of the serial protocol.

    `port` is a device path or pyserial URL, or an open pyserial port.
    `timeout` is how long to wait for each frame of a reply (the first token
    of a long prompt can take a while on a small board).

    `stats` counts what was skipped over the client's life: bad_frames
    (chunks between delimiters that are not valid frames: a reply cut short,
    noise) and skipped_frames (valid frames for other requests: late replies,
    our own requests heard back on a line that echoes).

        >>> with SerialClient("/dev/ttyUSB0", 115200) as c:   # doctest: +SKIP
        ...     c.ping()
        ...     for piece in c.stream("Say hi.", max_tokens=16, temperature=0):
        ...         print(piece, end="")
        ...     c.last_stats["stop_reason"]
        ...     c.register_choices(1, ["forward", "back", "stop"])
        ...     action = c.generate("Obstacle ahead. Action:", constraint=1, temperature=0)
        ...     valid = c.last_stats["finish_reason"] == "stop"
    """

    def __init__(self, port: str | serial.SerialBase, baud: int = 115200, timeout: float = 10.0) -> None:
        if timeout <= 0:
            raise InvalidArgumentError(f"timeout must be positive, got {timeout}")
        self._owned = isinstance(port, str)
        self._name = port if isinstance(port, str) else getattr(port, "port", repr(port))
        if isinstance(port, str):
            try:
                self._port = serial.serial_for_url(port, baudrate=baud, timeout=0.05)
            except (serial.SerialException, ValueError) as e:
                raise ProtocolError(f"cannot open serial port {port!r} at {baud} baud: {e}") from e
        else:
            self._port = port
            self._port.timeout = 0.05
        self.baud = baud
        self.timeout = timeout
        self.last_stats: dict[str, Any] = {}
        self.stats: dict[str, int] = {"bad_frames": 0, "skipped_frames": 0}
        self._reader = FrameReader()
        self._pending: list[Frame | FrameFault] = []
        self._seq = 0
        self._active: int | None = None  # seq of the stream being read
        self._write_lock = threading.Lock()

    def close(self) -> None:
        if self._owned:
            self._port.close()

    def __enter__(self) -> SerialClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- requests

    def ping(self, payload: bytes = b"") -> float:
        """Round-trip time of a PING, in seconds."""
        t0 = time.perf_counter()
        seq = self._request(PING, payload)
        reply = self._expect(seq, PING, (PONG,), unattributed=True)
        if reply.payload != payload:
            raise ProtocolError(f"PONG for request {seq} echoed {reply.payload!r}, sent {payload!r}")
        return time.perf_counter() - t0

    def info(self) -> dict[str, Any]:
        """`{"name", "ctx", "backend", "protocol_version", "max_payload", "max_constraints",
        "max_constraint_size"}` of the server."""
        seq = self._request(INFO, b"")
        return messages.decode_info_reply(self._expect(seq, INFO, (INFO_REPLY,), unattributed=True).payload)

    # ------------------------------------------------------ constraints

    def register_schema(self, constraint_id: int, schema: Mapping[str, Any] | str) -> dict[str, Any]:
        """Register a JSON Schema (a dict, or its JSON text) under `constraint_id` (1..255); the server
        compiles it now. Returns the ACK, `{"constraint": id, "constraints_held": n}`; a schema the server
        refuses raises RemoteError (BAD_CONSTRAINT, CONSTRAINT_LIMIT, UNSUPPORTED)."""
        return self._register(constraint_id, json_schema=schema)

    def register_choices(self, constraint_id: int, choices: Sequence[str]) -> dict[str, Any]:
        """Register a list of strings: a reply under it is exactly one of them."""
        return self._register(constraint_id, choices=choices)

    def register_regex(self, constraint_id: int, regex: str) -> dict[str, Any]:
        """Register a regex: a reply under it matches it whole."""
        return self._register(constraint_id, regex=regex)

    def register_grammar(self, constraint_id: int, grammar: str) -> dict[str, Any]:
        """Register a Lark grammar (llguidance's dialect, see `edge_sdk.generate.constraints`)."""
        return self._register(constraint_id, grammar=grammar)

    def unregister(self, constraint_id: int | None = None) -> dict[str, Any]:
        """Drop one registered constraint, or all of them (None); returns the ACK."""
        seq = self._request(UNREGISTER, messages.encode_unregister(constraint_id))
        return messages.decode_ack(self._expect(seq, UNREGISTER, (ACK,), unattributed=True).payload)

    def _register(self, constraint_id: int, **constraint: Any) -> dict[str, Any]:
        payload = messages.encode_register(constraint_id, **constraint)
        seq = self._request(REGISTER, payload)
        return messages.decode_ack(self._expect(seq, REGISTER, (ACK,), unattributed=True).payload)

    # ------------------------------------------------------- generation

    def generate(self, prompt: str, **sampling: Any) -> str:
        """Whole completion of `prompt`; `last_stats` holds the DONE statistics.

        `constraint=id` names a registered constraint; the text is then a complete answer exactly when
        `last_stats["finish_reason"] == "stop"` ("length": cut short by max_tokens or the context)."""
        return "".join(self.stream(prompt, **sampling))

    def chat(self, messages_: Sequence[Mapping[str, str]], **sampling: Any) -> str:
        """Whole reply to a chat (`[{"role": ..., "content": ...}, ...]`)."""
        return "".join(self.chat_stream(messages_, **sampling))

    def stream(self, prompt: str, **sampling: Any) -> Iterator[str]:
        """Text pieces as the server sends them.

        Sampling options are checked at once; the request goes out when
        iteration starts. Breaking out of the loop cancels it and reads up to
        its DONE, so the line is clean for the next request.
        """
        return self._stream(GENERATE, messages.encode_generate(prompt, **sampling))

    def chat_stream(self, messages_: Sequence[Mapping[str, str]], **sampling: Any) -> Iterator[str]:
        """Like `stream`, for a CHAT request."""
        return self._stream(CHAT, messages.encode_chat(messages_, **sampling))

    def cancel(self) -> bool:
        """Ask the server to stop the running stream; False when none runs.

        The stream keeps yielding what was already sent and ends at DONE with
        `last_stats["stop_reason"] == "cancelled"`.
        """
        target = self._active
        if target is None:
            return False
        self._request(CANCEL, messages.encode_cancel(target))
        return True

    # ---------------------------------------------------------- internals

    def _stream(self, msg_type: int, payload: bytes) -> Iterator[str]:
        # A generator: nothing is sent until the caller starts iterating, so
        # a stream that is dropped unread leaves nothing running on the server.
        self._port.reset_input_buffer()
        self._pending.clear()
        seq = self._request(msg_type, payload)
        self._active = seq
        self.last_stats = {}
        yield from self._pieces(seq, msg_type)

    def _pieces(self, seq: int, msg_type: int) -> Iterator[str]:
        finished = False  # the server ended the request (DONE or ERROR for seq)
        started = False
        try:
            while True:
                # Once tokens flow the request was clearly received, so an
                # unattributed ERROR (seq 0) is about something else on the line.
                frame = self._expect(seq, msg_type, (TOKEN, DONE), unattributed=not started)
                if frame.type == DONE:
                    self.last_stats = messages.decode_done(frame.payload)
                    finished = True
                    return
                started = True
                yield frame.payload.decode("utf-8", errors="replace")
        except RemoteError as e:
            finished = e.seq == seq
            raise
        except _NoReply:
            finished = True  # nothing to drain; a CANCEL is still worth sending
            self._send_cancel(seq)
            raise
        finally:
            self._active = None
            if not finished:
                self._abandon(seq, msg_type)

    def _send_cancel(self, seq: int) -> int | None:
        try:
            return self._request(CANCEL, messages.encode_cancel(seq))
        except ProtocolError:
            return None

    def _abandon(self, seq: int, msg_type: int) -> None:
        # The caller stopped reading early, or a frame was lost: cancel the
        # request and read up to its end, so the line is clean for the next one.
        cancel_seq = self._send_cancel(seq)
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                item = self._next_item(deadline, seq, msg_type)
                if isinstance(item, FrameFault):
                    self.stats["bad_frames"] += 1
                    continue
                if item.seq == seq and item.type == DONE:
                    self.last_stats = messages.decode_done(item.payload)
                    return
                if item.type == ERROR and item.seq in (seq, cancel_seq):
                    return  # the request failed, or never ran (NOT_RUNNING)
        except ProtocolError:
            pass

    def _next_seq(self) -> int:
        self._seq = self._seq % 0xFFFF + 1  # 1..65535; 0 is reserved
        return self._seq

    def _request(self, msg_type: int, payload: bytes) -> int:
        with self._write_lock:
            seq = self._next_seq()
            wire = split_message(msg_type, seq, payload)
            try:
                self._port.write(wire)
            except (serial.SerialException, OSError) as e:
                raise ProtocolError(f"cannot send {type_name(msg_type)} on {self._name}: {e}") from e
        return seq

    def _expect(self, seq: int, msg_type: int, want: tuple[int, ...], *, unattributed: bool) -> Frame:
        """Next frame for `seq` of a type in `want`; its ERROR raises, and so
        does an ERROR with seq 0 when `unattributed` (it may be about our request).
        Chunks that are not frames are skipped: the reply may still follow."""
        deadline = time.monotonic() + self.timeout
        while True:
            item = self._next_item(deadline, seq, msg_type)
            if isinstance(item, FrameFault):
                self.stats["bad_frames"] += 1
                continue
            if item.version != PROTOCOL_VERSION:
                raise ProtocolError(f"server speaks protocol version {item.version}; this client speaks {PROTOCOL_VERSION}")
            if item.type == ERROR and (item.seq == seq or (item.seq == NO_SEQ and unattributed)):
                code, text = messages.decode_error(item.payload)
                raise RemoteError(code, item.seq, text)
            if item.seq != seq or item.type not in RESPONSE_TYPES:
                self.stats["skipped_frames"] += 1
                continue  # stale reply, an answer to a CANCEL that crossed DONE, or an echo
            if item.type not in want:
                raise ProtocolError(f"expected {'/'.join(type_name(t) for t in want)} for request {seq}, got {type_name(item.type)}")
            return item

    def _next_item(self, deadline: float, seq: int, msg_type: int) -> Frame | FrameFault:
        while not self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _NoReply(
                    f"no reply to {type_name(msg_type)} (seq {seq}) within {self.timeout} s on {self._name}; "
                    f"is a server running there at {self.baud} baud?"
                )
            try:
                data = self._port.read(max(1, self._port.in_waiting))
            except (serial.SerialException, OSError) as e:
                raise ProtocolError(f"cannot read from {self._name}: {e}") from e
            if data:
                self._pending.extend(self._reader.feed(data))
        return self._pending.pop(0)
