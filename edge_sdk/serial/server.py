"""SerialServer: serve a model to a microcontroller over a serial line.

Two threads share the work. A reader thread turns bytes into requests
(`FrameReader` -> `RequestAssembler`) and puts them, and any faults, on a
queue. The serving thread answers them in order; while a GENERATE or CHAT
streams, it looks at the queue after every token, so a CANCEL stops the stream
within one token, a PING is answered between tokens, and a second GENERATE is
refused as BUSY. Only the serving thread writes to the port.

A board may register constraints (REGISTER: an id and a JSON Schema, choices, a
regex or a Lark grammar; `registry.py`) and name them in a GENERATE or CHAT:
the reply is then always valid, and its DONE says whether the constraint was
completed (finish_reason "stop") or the reply was cut short ("length").

Nothing on the line can stop the server: a fault becomes an ERROR frame (with
seq 0 when the frame's seq cannot be trusted; faults that arrive while one is
still waiting to be answered are counted into that one's ERROR, so line noise
never makes more than one unanswered fault report), a model exception becomes an
ERROR for its request, a write that times out or fails (the peer is gone)
abandons the stream, and read failures (a closed peer, an unplugged adapter)
are retried with a back-off. Memory is bounded by MAX_WIRE per frame and the
server's `max_message` per request.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import serial

from ..errors import EdgeSDKError, InvalidArgumentError, ProtocolError
from ..generate.generator import GenerationStats
from ..generate.sampling import SamplingParams
from . import messages
from .protocol import ACK, CANCEL, DONE, ERROR, GENERATE, INFO, INFO_REPLY, MAX_MESSAGE, MAX_PAYLOAD, NO_SEQ, PING, PONG, PROTOCOL_VERSION, REGISTER, TOKEN, UNREGISTER, ErrorCode, Frame, FrameFault, FrameReader, Message, MessageFault, RequestAssembler, encode_frame
from .registry import MAX_CONSTRAINT_SIZE, MAX_CONSTRAINTS, ConstraintRegistry, Refused

log = logging.getLogger("edge_sdk.serial")


class _LineBack:
    """The port is readable again after failing reads: a new peer, whose line holds no constraints yet."""


Event = Message | MessageFault | FrameFault | _LineBack


class StreamingModel(Protocol):
    """What the server drives; `edge_sdk.load(...)` returns one.

    `tokenize` and `chat_prompt` count a request's prompt tokens the way
    `stream` and `chat_stream` do, so that its max_tokens can be capped at
    what the context has room for; `info()["ctx"]` is the context length.
    `compile_constraint` (optional: without it REGISTER is UNSUPPORTED) checks
    and compiles a constraint given as `stream` takes it (`choices=`, `regex=`,
    `grammar=`, `response_format=`), raising InvalidArgumentError for a bad one.
    """

    last_stats: dict[str, Any]

    def stream(self, prompt: str, *, cancel: threading.Event | None = None, **sampling: Any) -> Iterator[str]: ...

    def chat_stream(self, messages: list[dict[str, str]], *, cancel: threading.Event | None = None,
                    **sampling: Any) -> Iterator[str]: ...

    def tokenize(self, text: str, special: bool = False) -> list[int]: ...

    def chat_prompt(self, messages: list[dict[str, str]]) -> str: ...

    def info(self) -> dict[str, Any]: ...


class _LinkDown(Exception):
    """A write to the port failed or timed out."""


@dataclass
class _Active:
    seq: int
    cancel: threading.Event = field(default_factory=threading.Event)  # the model's stream stops at its next check


class SerialServer:
    """Serve `model` on a serial port, one request at a time.

    `port` is a device path or pyserial URL (opened here, closed by `stop`), or
    an open pyserial port (its `timeout` and `write_timeout` are set; it stays
    open). `write_timeout` is how long a blocked write may wait before the
    peer counts as gone and the stream is abandoned.

    A request's max_tokens is capped at what it can get: the context's room
    after its prompt, and `max_tokens` when given (the most one request may
    generate here). A capped request's DONE carries `capped_max_tokens`, the
    value it ran with.

    A line holds at most `max_constraints` registered constraints of at most
    `max_constraint_size` bytes each (INFO reports both).

        >>> model = edge_sdk.load("SmolLM2-135M-Instruct")        # doctest: +SKIP
        >>> with SerialServer(model, "/dev/ttyAMA0", 115200) as srv:  # doctest: +SKIP
        ...     srv.serve_forever()   # until Ctrl-C or srv.stop() from another thread

    `stats` counts what happened: frames_in, frames_out, ignored (response
    frames received: an echo or another server), faults, bytes_in,
    discarded_bytes, read_errors, write_errors, requests, cancelled, aborted,
    registered (REGISTERs that took effect).
    """

    def __init__(
        self,
        model: StreamingModel,
        port: str | serial.SerialBase,
        baud: int = 115200,
        *,
        write_timeout: float = 2.0,
        max_message: int = MAX_MESSAGE,
        max_tokens: int | None = None,
        poll_s: float = 0.05,
        retry_s: float = 0.2,
        max_constraints: int = MAX_CONSTRAINTS,
        max_constraint_size: int = MAX_CONSTRAINT_SIZE,
    ) -> None:
        if write_timeout <= 0 or poll_s <= 0 or retry_s <= 0:
            raise InvalidArgumentError("write_timeout, poll_s and retry_s must be positive")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
            raise InvalidArgumentError(f"max_tokens must be an int >= 1 (or None for no limit but the context), got {max_tokens!r}")
        self._max_tokens = max_tokens
        self._registry = ConstraintRegistry(max_constraints, max_constraint_size)
        self.model = model
        self._owned = isinstance(port, str)
        if isinstance(port, str):
            try:
                self._port = serial.serial_for_url(port, baudrate=baud, timeout=poll_s, write_timeout=write_timeout)
            except (serial.SerialException, ValueError) as e:
                raise ProtocolError(f"cannot open serial port {port!r} at {baud} baud: {e}") from e
        else:
            self._port = port
            self._port.timeout = poll_s
            self._port.write_timeout = write_timeout
        self._max_message = max_message
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._events: queue.Queue[Event] = queue.Queue()
        self._fault_lock = threading.Lock()
        self._folded: int | None = None  # a FrameFault is queued: how many more came since (folded into its ERROR)
        self._active: _Active | None = None  # the streaming request; the reader cancels it directly
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._thread: threading.Thread | None = None
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "frames_in",
                "frames_out",
                "ignored",
                "faults",
                "bytes_in",
                "discarded_bytes",
                "read_errors",
                "write_errors",
                "requests",
                "cancelled",
                "aborted",
                "registered",
            ),
            0,
        )

    # ------------------------------------------------------------ lifecycle

    def start(self) -> SerialServer:
        """Serve in a background thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._thread = threading.Thread(target=self.serve_forever, name="edge-sdk-serial-serve", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve until `stop()`; the port is closed on return if it was opened here."""
        self._reader = threading.Thread(target=self._read_loop, name="edge-sdk-serial-read", daemon=True)
        self._reader.start()
        try:
            while not self._stop.is_set():
                try:
                    event = self._events.get(timeout=self._poll_s)
                except queue.Empty:
                    continue
                self._handle(event, None)
        finally:
            self._stop.set()
            self._wake_reader()
            self._reader.join()
            if self._owned:
                self._port.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the server to stop; a running stream ends with DONE "shutdown"."""
        self._stop.set()
        active = self._active
        if active is not None:
            active.cancel.set()  # also ends a long prompt's prefill at its next chunk
        self._wake_reader()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"serial server did not stop within {timeout} s (is the model stuck in a token?)")

    def __enter__(self) -> SerialServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._thread is None and self._owned and self._port.is_open:
            self._port.close()

    def _wake_reader(self) -> None:
        cancel = getattr(self._port, "cancel_read", None)
        if cancel is not None:
            try:
                cancel()
            except (serial.SerialException, OSError, AttributeError, TypeError, ValueError):
                pass  # a port already closed has no read to wake

    # --------------------------------------------------------------- reader

    def _read_loop(self) -> None:
        reader = FrameReader()
        assembler = RequestAssembler(self._max_message)
        failing = False
        while not self._stop.is_set():
            try:
                data = self._port.read(max(1, self._port.in_waiting))
            except (serial.SerialException, OSError, TypeError) as e:
                # TypeError: pyserial's posix read on a port closed under it.
                self.stats["read_errors"] += 1
                if not failing:
                    log.warning("serial read failed (%s); retrying every %.1f s", e, self._retry_s)
                failing = True
                self._stop.wait(self._retry_s)
                continue
            if failing and data:
                log.info("serial port readable again")
                failing = False
                self._events.put(_LineBack())
            if not data:
                continue
            self.stats["bytes_in"] += len(data)
            before = reader.discarded_bytes
            for item in reader.feed(data):
                if isinstance(item, FrameFault):
                    self.stats["faults"] += 1
                    with self._fault_lock:
                        if self._folded is not None:
                            self._folded += 1  # folded into the report still queued
                            continue
                        self._folded = 0
                    self._events.put(item)
                    continue
                self.stats["frames_in"] += 1
                for event in assembler.push(item):
                    if not self._cancels_active(event):
                        self._events.put(event)
            self.stats["discarded_bytes"] += reader.discarded_bytes - before
            self.stats["ignored"] = assembler.ignored

    def _cancels_active(self, event: Event) -> bool:
        """A CANCEL of the streaming request stops it here, at once, even in the middle of a prompt's prefill
        (the serving thread is then inside the model and looks at the queue only between tokens)."""
        active = self._active
        if active is None or not isinstance(event, Message) or event.type != CANCEL:
            return False
        try:
            target = messages.decode_cancel(event.payload)
        except ProtocolError:
            return False  # the serving thread reports it
        if target != active.seq:
            return False
        active.cancel.set()
        return True

    # -------------------------------------------------------------- serving

    def _handle(self, event: Event, active: _Active | None) -> None:
        """Answer one event; `active` is the streaming request, if any."""
        if isinstance(event, FrameFault):
            with self._fault_lock:
                more, self._folded = self._folded or 0, None
            detail = event.detail if not more else f"{event.detail} (and {more} more bad frame(s) since)"
            self._reply(ERROR, NO_SEQ, messages.encode_error(event.code, detail))
            return
        if isinstance(event, MessageFault):
            self._reply(ERROR, event.seq, messages.encode_error(event.code, event.detail), event.version)
            return
        if isinstance(event, _LineBack):
            if len(self._registry):
                log.info("line came back: dropping its %d registered constraint(s)", len(self._registry))
            self._registry.clear()
            return
        if event.type == PING:
            self._reply(PONG, event.seq, event.payload)
        elif event.type == INFO:
            self._reply_info(event.seq)
        elif event.type == CANCEL:
            self._cancel(event, active)
        elif active is not None:  # GENERATE, CHAT, REGISTER, UNREGISTER (a compile would stall the stream)
            self._reply(ERROR, event.seq, messages.encode_error(ErrorCode.BUSY, f"busy: request {active.seq} is streaming"))
        elif event.type in (REGISTER, UNREGISTER):
            self._constraint_request(event)
        else:
            try:
                self._serve_stream(event)
            finally:
                self._active = None

    def _constraint_request(self, req: Message) -> None:
        """REGISTER or UNREGISTER: ACK with the constraints the line holds now, or ERROR."""
        try:
            if req.type == REGISTER:
                cid, kind, value = messages.decode_register(req.payload)
            else:
                cid = messages.decode_unregister(req.payload)
        except ProtocolError as e:
            self._reply(ERROR, req.seq, messages.encode_error(ErrorCode.BAD_PAYLOAD, str(e)))
            return
        try:
            if req.type == REGISTER:
                self._registry.register(self.model, cid, kind, value)
                self.stats["registered"] += 1
            else:
                self._registry.unregister(cid)
        except Refused as e:
            self._reply(ERROR, req.seq, messages.encode_error(e.code, e.message))
            return
        except Exception as e:  # noqa: BLE001 - a broken model must not stop the server
            log.exception("REGISTER %s failed", cid)
            self._reply(ERROR, req.seq, messages.encode_error(ErrorCode.INTERNAL, f"{type(e).__name__}: {e}"))
            return
        self._reply(ACK, req.seq, messages.encode_ack({"constraint": cid, "constraints_held": len(self._registry)}))

    def _cancel(self, event: Message, active: _Active | None) -> None:
        try:
            target = messages.decode_cancel(event.payload)
        except ProtocolError as e:
            self._reply(ERROR, event.seq, messages.encode_error(ErrorCode.BAD_PAYLOAD, str(e)))
            return
        if active is not None and active.seq == target:
            active.cancel.set()
        else:
            self._reply(ERROR, event.seq, messages.encode_error(ErrorCode.NOT_RUNNING, f"request {target} is not streaming"))

    def _reply_info(self, seq: int) -> None:
        try:
            info = dict(self.model.info())
        except Exception as e:  # noqa: BLE001 - a broken model must not stop the server
            log.exception("model.info() failed")
            self._reply(ERROR, seq, messages.encode_error(ErrorCode.INTERNAL, f"info failed: {type(e).__name__}: {e}"))
            return
        info.update(protocol_version=PROTOCOL_VERSION, max_payload=MAX_PAYLOAD,
                    max_constraints=self._registry.max_constraints, max_constraint_size=self._registry.max_size)
        self._reply(INFO_REPLY, seq, messages.encode_info_reply(info))

    def _serve_stream(self, req: Message) -> None:
        seq = req.seq
        try:
            if req.type == GENERATE:
                prompt, sampling = messages.decode_generate(req.payload)
            else:
                chat, sampling = messages.decode_chat(req.payload)
        except ProtocolError as e:
            self._reply(ERROR, seq, messages.encode_error(ErrorCode.BAD_PAYLOAD, str(e)))
            return
        cid = sampling.pop("constraint", None)
        constrained = cid is not None
        if constrained:
            try:
                sampling.update(self._registry.lookup(cid))
            except Refused as e:
                self._reply(ERROR, seq, messages.encode_error(e.code, e.message))
                return
        self.stats["requests"] += 1
        before = getattr(self.model, "last_stats", None)
        before_copy = dict(before) if isinstance(before, dict) else None
        active = self._active = _Active(seq)
        pieces = 0
        reason = "stop"
        t0 = time.perf_counter()
        it: Iterator[str] | None = None
        capped: int | None = None
        try:
            capped = self._cap_max_tokens(sampling, prompt if req.type == GENERATE else None,
                                          chat if req.type != GENERATE else None)
            it = (self.model.stream(prompt, cancel=active.cancel, **sampling) if req.type == GENERATE
                  else self.model.chat_stream(chat, cancel=active.cancel, **sampling))
            for piece in it:
                pieces += 1
                for chunk in messages.split_utf8(piece, MAX_PAYLOAD):
                    self._send(TOKEN, seq, chunk)
                self._drain(active)
                if active.cancel.is_set():
                    break
            if self._stop.is_set():
                reason = "shutdown"
            elif active.cancel.is_set():
                reason = "cancelled"
        except _LinkDown as e:
            self.stats["aborted"] += 1
            log.warning("stream %d abandoned: %s", seq, e)
            self._close(it)
            self._flush_output()
            return
        except (EdgeSDKError, ValueError) as e:
            # The model refused this request (too long, a value out of range).
            self._close(it)
            self._reply(ERROR, seq, messages.encode_error(ErrorCode.MODEL_ERROR, f"{type(e).__name__}: {e}"))
            return
        except Exception as e:  # noqa: BLE001 - a broken model must not stop the server
            log.exception("stream %d failed", seq)
            self._close(it)
            self._reply(ERROR, seq, messages.encode_error(ErrorCode.INTERNAL, f"{type(e).__name__}: {e}"))
            return
        self._close(it)
        if reason == "cancelled":
            self.stats["cancelled"] += 1
        stats = self._final_stats(before, before_copy, pieces, time.perf_counter() - t0)
        if reason != "stop" or "stop_reason" not in stats:
            stats["stop_reason"] = reason
        # One rule for every DONE: "stop" only when the text ended and its constraint is complete.
        # A model that does not say how far the constraint got counts as not having completed it.
        state = (stats.get("constraint") or "incomplete") if constrained else None
        stats["finish_reason"] = GenerationStats(stop_reason=stats["stop_reason"], constraint=state).finish_reason
        stats["constraint"] = state
        if capped is not None:
            stats["capped_max_tokens"] = capped
        self._reply(DONE, seq, messages.encode_done(stats))

    def _cap_max_tokens(self, sampling: dict[str, Any], prompt: str | None, chat: list[dict[str, str]] | None) -> int | None:
        """Lower `sampling["max_tokens"]` to what the request can get; the new value, or None when it stands.

        After a prompt of P tokens a context of ctx tokens lets the model
        generate ctx - P + 1 (the last token needs no room in the cache): a
        larger max_tokens (up to 0xFFFFFFFF on the wire) would end there
        anyway, with stop_reason "context", which it still does. The
        server's own limit bounds it further ("length"). An absent
        max_tokens is the model's default: it stands when the server has no
        limit of its own (the context bounds it as before), and is capped
        like a requested one when it has. A max_tokens the model will refuse
        (0) and a prompt that does not fit stand too: the model says why.
        """
        asked = sampling.get("max_tokens")
        if asked is None:
            if self._max_tokens is None:
                return None
            asked = SamplingParams.max_tokens  # the default of edge_sdk models
        limit = asked if self._max_tokens is None else min(asked, self._max_tokens)
        if chat is not None:  # counted as chat_stream and stream count them
            n_prompt = len(self.model.tokenize(self.model.chat_prompt(chat), special=True))
        else:
            n_prompt = len(self.model.tokenize(prompt or ""))
        room = int(self.model.info()["ctx"]) - n_prompt + 1
        if room >= 1:
            limit = min(limit, room)
        if limit >= asked:
            return None
        sampling["max_tokens"] = limit
        return limit

    def _final_stats(self, before: Any, before_copy: dict | None, pieces: int, elapsed: float) -> dict[str, Any]:
        # Use the model's own numbers when this stream updated them; otherwise
        # (a model that sets last_stats only on natural completion) count here.
        now = getattr(self.model, "last_stats", None)
        if isinstance(now, dict) and (now is not before or now != before_copy):
            return dict(now)
        return {"generated_tokens": pieces, "decode_tok_s": pieces / elapsed if elapsed > 0 else 0.0}

    def _drain(self, active: _Active) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            self._handle(event, active)

    # -------------------------------------------------------------- writing

    def _send(self, ftype: int, seq: int, payload: bytes, version: int = PROTOCOL_VERSION) -> None:
        wire = encode_frame(Frame(ftype, seq, payload, version))
        try:
            self._port.write(wire)
        except (serial.SerialException, OSError) as e:
            # SerialTimeoutException is a SerialException.
            self.stats["write_errors"] += 1
            raise _LinkDown(f"{type(e).__name__}: {e}") from e
        self.stats["frames_out"] += 1

    def _reply(self, ftype: int, seq: int, payload: bytes, version: int = PROTOCOL_VERSION) -> None:
        try:
            self._send(ftype, seq, payload, version)
        except InvalidArgumentError as e:  # a reply that cannot be framed (too long): say so instead
            log.error("reply to seq %d not sent: %s", seq, e)
            self._reply(ERROR, seq, messages.encode_error(ErrorCode.INTERNAL, f"reply not sent: {e}"))
        except _LinkDown as e:
            log.warning("reply to seq %d dropped: %s", seq, e)
            self._flush_output()

    def _flush_output(self) -> None:
        # Drop what a vanished peer did not read, so a returning one is not
        # flooded with a stale stream.
        try:
            self._port.reset_output_buffer()
        except (serial.SerialException, OSError, AttributeError):
            pass

    @staticmethod
    def _close(it: Iterator[str] | None) -> None:
        close = getattr(it, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001
                log.exception("closing the model's stream failed")
