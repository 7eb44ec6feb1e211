"""SerialServer and SerialClient over real pseudo-terminals.

Each test opens a pty pair: the server holds the master (opened through
/dev/ptmx with pyserial), the client opens the slave by its path, exactly as
it would open /dev/ttyUSB0. The model is a fake that yields the words of a
fixed text, optionally one per `gate.release()`, which makes cancellation and
busy replies deterministic to the token.
"""

from __future__ import annotations

import ctypes
import os
import random
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import serial

from edge_sdk.errors import ContextOverflowError, InvalidArgumentError, ModelFileError, ProtocolError, TokenizerError
from edge_sdk.serial import RemoteError, SerialClient, SerialServer, cobs, messages
from edge_sdk.serial.protocol import CANCEL, DONE, ERROR, GENERATE, PING, PONG, TOKEN, ErrorCode, Frame, FrameFault, FrameReader, encode_frame

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="needs POSIX pseudo-terminals (/dev/ptmx)")

WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]
TEXT = "".join(WORDS)
STATS = {"prefill_tok_s": 250.0, "decode_tok_s": 12.5}


# ------------------------------------------------------------- the model


class FakeModel:
    """Yields `words` one per step; a prompt containing "overflow" or "crash" fails."""

    def __init__(self, words: list[str] = WORDS, gated: bool = False, delay_s: float = 0.0, ctx: int = 2048) -> None:
        self.words = words
        self.ctx = ctx
        self.gate = threading.Semaphore(0) if gated else None
        self.delay_s = delay_s
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        self.closed_early = 0
        self.last_stats: dict[str, Any] = {}

    def info(self) -> dict[str, Any]:
        return {"name": "fake-words", "ctx": self.ctx, "backend": "fake", "vocab_size": 10}

    def tokenize(self, text: str, special: bool = False) -> list[str]:
        if "untokenizable" in text:
            raise TokenizerError("byte 0xff at offset 3 is not in the vocabulary")
        return text.split()  # one token per word

    def chat_prompt(self, messages_: list[dict[str, str]]) -> str:
        return " ".join(m["content"] for m in messages_)

    def stream(self, prompt: str, *, cancel: threading.Event | None = None, **sampling: Any) -> Iterator[str]:
        self.calls.append(("stream", prompt, sampling))
        self.cancel = cancel
        if "overflow" in prompt:
            raise ContextOverflowError("prompt of 5000 tokens does not fit the 2048-token context")
        if sampling.get("top_p", 1.0) > 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {sampling['top_p']}")
        crash = RuntimeError("kernel exploded") if "crash" in prompt else None
        if "unreadable" in prompt:
            crash = ModelFileError("/models/tiny.gguf: cannot read tensor blk.1.ffn_up.weight: [Errno 5] Input/output error")
        return self._words(len(prompt.split()), sampling, crash=crash)

    def chat_stream(self, messages_: list[dict[str, str]], *, cancel: threading.Event | None = None,
                    **sampling: Any) -> Iterator[str]:
        self.calls.append(("chat", messages_, sampling))
        self.cancel = cancel
        return self._words(sum(len(m["content"].split()) for m in messages_), sampling, crash=None)

    def _words(self, n_prompt: int, sampling: dict[str, Any], crash: Exception | None) -> Iterator[str]:
        limit = sampling.get("max_tokens", len(self.words))
        n = 0
        reason = "closed"
        try:
            for w in self.words[:limit]:
                if self.gate is not None and not self.gate.acquire(timeout=10):
                    raise RuntimeError("test gate never opened")
                if self.delay_s:
                    time.sleep(self.delay_s)
                if crash is not None and n == 2:
                    raise crash
                n += 1
                yield w
            reason = "length" if limit < len(self.words) else "eos"
        finally:
            if reason == "closed":
                self.closed_early += 1
            self.last_stats = {"prompt_tokens": n_prompt, "generated_tokens": n, **STATS, "stop_reason": reason}


# ------------------------------------------------------------ the line


def open_pty() -> tuple[serial.Serial, str]:
    """A pty master as a pyserial port, and the path of its slave."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptsname.restype = ctypes.c_char_p
    master = serial.Serial("/dev/ptmx", timeout=0.05)
    if libc.grantpt(master.fileno()) != 0 or libc.unlockpt(master.fileno()) != 0:
        master.close()
        pytest.skip("cannot unlock a pseudo-terminal here")
    return master, libc.ptsname(master.fileno()).decode()


class RawLine:
    """The client end as bytes: send frames, read frames, nothing else."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.port = serial.Serial(path, timeout=0.05)
        self.reader = FrameReader()
        self.pending: list[Frame | FrameFault] = []
        self.raw = bytearray()

    def send(self, data: bytes) -> None:
        self.port.write(data)

    def frames(self, n: int, timeout: float = 5.0) -> list[Frame | FrameFault]:
        deadline = time.monotonic() + timeout
        while len(self.pending) < n and time.monotonic() < deadline:
            data = self.port.read(max(1, self.port.in_waiting))
            self.raw += data
            self.pending += self.reader.feed(data)
        got, self.pending = self.pending[:n], self.pending[n:]
        assert len(got) == n, f"expected {n} frames, got {got}"
        return got

    def quiet(self, wait_s: float = 0.2) -> bool:
        """True when nothing arrives for `wait_s`."""
        time.sleep(wait_s)
        return not self.pending and self.port.in_waiting == 0

    def close(self) -> None:
        self.port.close()


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


@pytest.fixture
def pty():
    master, path = open_pty()
    yield master, path
    master.close()


@pytest.fixture
def serve(pty):
    """serve(model, **kw) -> (server, slave path); stopped at the end of the test."""
    master, path = pty
    servers: list[SerialServer] = []

    def start(model: FakeModel, **kw: Any) -> tuple[SerialServer, str]:
        srv = SerialServer(model, master, **kw).start()
        servers.append(srv)
        return srv, path

    yield start
    for srv in servers:
        if srv.model.gate is not None:
            srv.model.gate.release(1000)
        srv.stop()


def token(seq: int, text: str) -> Frame:
    return Frame(TOKEN, seq, text.encode())


def error(seq: int, code: ErrorCode, message: str) -> Frame:
    return Frame(ERROR, seq, messages.encode_error(code, message))


def done(seq: int, **stats: Any) -> Frame:
    return Frame(DONE, seq, messages.encode_done(stats))


def ping(seq: int, payload: bytes = b"") -> bytes:
    return encode_frame(Frame(PING, seq, payload))


# ------------------------------------------------------- normal service


def test_info_ping_generate_and_chat(serve) -> None:
    model = FakeModel()
    srv, path = serve(model)
    with SerialClient(path, timeout=5) as client:
        assert client.info() == {"name": "fake-words", "ctx": 2048, "backend": "fake", "protocol_version": 2, "max_payload": 1024,
                                 "max_constraints": 16, "max_constraint_size": 4096}
        assert 0 < client.ping(b"hello") < 5
        sampling = dict(max_tokens=4, temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, repetition_penalty=1.1, seed=42, stop=["\n"])
        assert client.generate("go right now", **sampling) == "The quick brown fox"
        assert model.calls[-1] == ("stream", "go right now", sampling)
        assert client.last_stats == {"prompt_tokens": 3, "generated_tokens": 4, **STATS, "stop_reason": "length",
                                     "finish_reason": "length"}
        chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Wave."}]
        assert client.chat(chat, max_tokens=2) == "The quick"
        assert model.calls[-1] == ("chat", chat, {"max_tokens": 2})
        assert client.last_stats["prompt_tokens"] == 3
    assert srv.stats["requests"] == 2 and srv.stats["faults"] == 0


def test_an_unread_stream_sends_nothing(serve) -> None:
    model = FakeModel()
    srv, path = serve(model)
    with SerialClient(path, timeout=5) as client:
        with pytest.raises(TypeError, match=r"unknown field\(s\) \['topk'\]"):
            client.stream("hi", topk=3)  # options are checked at the call
        unread = client.stream("hi")
        assert client.cancel() is False
        client.ping()
        del unread
    assert srv.stats["frames_in"] == 1 and model.calls == []


def test_stream_wire_bytes_are_exact(serve) -> None:
    srv, path = serve(FakeModel())
    line = RawLine(path)
    line.send(encode_frame(Frame(GENERATE, 7, messages.encode_generate("hi", max_tokens=3))))
    got = line.frames(4)
    stats = {"prompt_tokens": 1, "generated_tokens": 3, **STATS, "stop_reason": "length", "finish_reason": "length"}
    expected = [token(7, "The"), token(7, " quick"), token(7, " brown"), done(7, **stats)]
    assert got == expected
    assert bytes(line.raw) == b"".join(encode_frame(f) for f in expected)
    line.close()


def test_long_prompt_and_long_pieces(serve) -> None:
    """A 3 KB prompt travels as three fragments; a 1500-byte piece as two TOKENs."""
    model = FakeModel(words=["Grüß", " 🤖", "€" * 500])
    srv, path = serve(model)
    prompt = "word " * 600
    with SerialClient(path, timeout=5) as client:
        assert list(client.stream(prompt)) == ["Grüß", " 🤖", "€" * 341, "€" * 159]
    assert model.calls[-1] == ("stream", prompt, {})
    assert srv.stats["frames_in"] == 3


def test_cancel_stops_within_one_token(serve) -> None:
    model = FakeModel(gated=True)
    srv, path = serve(model)
    with SerialClient(path, timeout=5) as client:
        it = client.stream("hi there")
        model.gate.release(3)
        assert [next(it), next(it), next(it)] == ["The", " quick", " brown"]
        assert client.cancel() is True
        # The server is inside the model's next token; let the CANCEL reach its queue first.
        wait_for(lambda: srv.stats["frames_in"] == 2)
        model.gate.release(1)
        # "within one token": the token the model was producing when CANCEL arrived may still be sent
        rest = list(it)
        assert rest in ([], [" fox"])
        assert client.last_stats == {"prompt_tokens": 2, "generated_tokens": 3 + len(rest), **STATS,
                                     "stop_reason": "cancelled", "finish_reason": "cancelled"}
        assert model.closed_early == 1 and srv.stats["cancelled"] == 1
        assert client.cancel() is False
        # The model is usable afterwards.
        model.gate.release(len(WORDS))
        assert client.generate("again") == TEXT
        assert client.last_stats["stop_reason"] == "eos"


def test_breaking_out_of_a_stream_cancels_it(serve) -> None:
    model = FakeModel(gated=True)
    srv, path = serve(model)

    def open_gate_once_cancel_arrived() -> None:
        wait_for(lambda: srv.stats["frames_in"] == 2)
        model.gate.release(len(WORDS))

    helper = threading.Thread(target=open_gate_once_cancel_arrived)
    with SerialClient(path, timeout=5) as client:
        model.gate.release(1)
        helper.start()
        for piece in client.stream("hi"):
            assert piece == "The"
            break  # closing the stream sends CANCEL and reads up to its DONE
        helper.join()
        assert client.last_stats == {"prompt_tokens": 1, "generated_tokens": 2, **STATS, "stop_reason": "cancelled",
                                     "finish_reason": "cancelled"}
        assert client.generate("next", max_tokens=2) == "The quick"
    assert model.closed_early == 1


def test_unattributed_error_mid_stream_does_not_end_it(serve) -> None:
    """Noise on the way to the server while a stream runs: the server answers
    ERROR seq 0, and the client, already receiving tokens, knows it is not
    about its request."""
    model = FakeModel(gated=True)
    srv, path = serve(model)
    with SerialClient(path, timeout=5) as client:
        it = client.stream("hi")
        model.gate.release(1)
        assert next(it) == "The"
        with serial.Serial(path) as other_writer:
            other_writer.write(b"\x00\xff\xff\x00")
        wait_for(lambda: srv.stats["faults"] == 1)
        model.gate.release(len(WORDS))
        assert "".join(it) == TEXT[3:]
        assert client.last_stats["stop_reason"] == "eos"


def test_bad_frame_from_the_server_is_skipped_mid_stream(serve, pty) -> None:
    master, _ = pty
    model = FakeModel(gated=True)
    srv, path = serve(model)
    with SerialClient(path, timeout=5) as client:
        it = client.stream("hi")
        model.gate.release(1)
        assert next(it) == "The"
        master.write(b"\x00\xff\xff\x00")  # garbage from the server's side of the wire
        model.gate.release(len(WORDS))
        assert "".join(it) == TEXT[3:]
        assert client.last_stats["stop_reason"] == "eos"
        assert client.stats == {"bad_frames": 1, "skipped_frames": 0}
        assert model.closed_early == 0 and srv.stats["cancelled"] == 0


class ScriptedServer:
    """The server end of a pty as a script: each request frame that arrives
    is answered with the next bytes of `replies` (cut frames included)."""

    def __init__(self, master: serial.Serial, replies: list[bytes]) -> None:
        self.master = master
        self.replies = list(replies)
        self.requests: list[Frame] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reader = FrameReader()
        while not self._stop.is_set() and self.replies:
            try:
                data = self.master.read(max(1, self.master.in_waiting))
            except serial.SerialException:  # the client closed its end
                return
            for item in reader.feed(data):
                if isinstance(item, Frame) and self.replies:
                    self.requests.append(item)
                    self.master.write(self.replies.pop(0))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def cut(wire: bytes, keep: int) -> bytes:
    """The first `keep` bytes of a frame on the wire: what a write that timed out leaves."""
    assert 1 < keep < len(wire) - 1
    return wire[:keep]


def test_client_skips_a_reply_cut_short_and_takes_the_next(pty) -> None:
    """A frame cut short (the server's write timed out in the middle of it) is
    followed by the next frame's leading 0x00: the client counts the bad chunk
    and takes the valid reply after it."""
    master, path = pty
    pong = encode_frame(Frame(PONG, 1, b"hb"))
    tokens = [encode_frame(token(2, w)) for w in ("The", " quick")]
    stale = encode_frame(token(9, "late"))  # a valid frame for another request: skipped, counted apart
    reply = tokens[0] + cut(tokens[1], 7) + stale + tokens[1] + encode_frame(done(2, generated_tokens=2, stop_reason="length"))
    script = ScriptedServer(master, [cut(pong, 6) + pong, reply, cut(encode_frame(Frame(PONG, 3)), 5), encode_frame(Frame(PONG, 4))])
    try:
        with SerialClient(path, timeout=0.5) as client:
            client.ping(b"hb")
            assert client.stats == {"bad_frames": 1, "skipped_frames": 0}
            assert client.generate("hi", max_tokens=2) == "The quick"
            assert client.last_stats == {"generated_tokens": 2, "stop_reason": "length"}
            assert client.stats == {"bad_frames": 2, "skipped_frames": 1}
            # A reply that never comes after its cut start still ends with the timeout; the cut
            # chunk waits for a delimiter, and the next frame's leading 0x00 makes it a bad frame.
            with pytest.raises(ProtocolError, match=r"no reply to PING \(seq 3\) within 0.5 s on /dev/pts/\d+"):
                client.ping()
            assert client.stats == {"bad_frames": 2, "skipped_frames": 1}
            client.ping()
            assert client.stats == {"bad_frames": 3, "skipped_frames": 1}
        assert [(f.type, f.seq) for f in script.requests] == [(PING, 1), (GENERATE, 2), (PING, 3), (PING, 4)]
    finally:
        script.close()


def test_client_refuses_a_server_of_the_old_version(pty) -> None:
    """A version-1 server answers in version 1: the client says which versions meet, instead of a timeout."""
    master, path = pty
    script = ScriptedServer(master, [encode_frame(Frame(PONG, 1, version=1))])
    try:
        with SerialClient(path, timeout=2) as client:
            with pytest.raises(ProtocolError, match="^server speaks protocol version 1; this client speaks 2$"):
                client.ping()
        assert [(f.type, f.seq, f.version) for f in script.requests] == [(PING, 1, 2)]
    finally:
        script.close()


class CorruptFirstWrite:
    """A pyserial port whose first write has one bit flipped in its CRC."""

    def __init__(self, port: serial.Serial) -> None:
        self._port = port
        self.corrupted = False

    def write(self, data: bytes) -> int | None:
        if not self.corrupted:
            self.corrupted = True
            data = data[:-2] + bytes([data[-2] ^ 0x01]) + data[-1:]
        return self._port.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("_port", "corrupted"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._port, name, value)


def test_a_request_lost_on_the_line_fails_fast(serve) -> None:
    model = FakeModel()
    srv, path = serve(model)
    with serial.Serial(path) as port:
        client = SerialClient(CorruptFirstWrite(port), timeout=5)  # type: ignore[arg-type]
        t0 = time.monotonic()
        with pytest.raises(RemoteError) as e:
            client.generate("hi")
        # The server's ERROR seq 0 arrives at once, and the CANCEL the client
        # sends to be safe is answered NOT_RUNNING: no timeout is waited out.
        assert time.monotonic() - t0 < 2.5
        assert (e.value.code, e.value.seq) == (ErrorCode.BAD_CRC, 0)
        assert model.calls == []
        assert client.generate("hi", max_tokens=1) == "The"


def test_busy_ping_and_stray_cancel_while_streaming(serve) -> None:
    model = FakeModel(gated=True)
    srv, path = serve(model)
    line = RawLine(path)
    line.send(encode_frame(Frame(GENERATE, 1, messages.encode_generate("one"))))
    line.send(encode_frame(Frame(GENERATE, 2, messages.encode_generate("two"))))
    line.send(ping(3, b"hb"))
    line.send(encode_frame(Frame(CANCEL, 4, messages.encode_cancel(9))))
    wait_for(lambda: srv.stats["frames_in"] == 4)
    model.gate.release(1)
    assert line.frames(4) == [
        token(1, "The"),
        error(2, ErrorCode.BUSY, "busy: request 1 is streaming"),
        Frame(PONG, 3, b"hb"),
        error(4, ErrorCode.NOT_RUNNING, "request 9 is not streaming"),
    ]
    model.gate.release(len(WORDS))
    rest = line.frames(len(WORDS))
    assert rest[:-1] == [token(1, w) for w in WORDS[1:]]
    assert rest[-1] == done(1, prompt_tokens=1, generated_tokens=10, **STATS, stop_reason="eos", finish_reason="stop")
    assert [c[1] for c in model.calls] == ["one"]
    line.close()


def test_model_errors_become_error_frames(serve) -> None:
    model = FakeModel()
    srv, path = serve(model)
    with SerialClient(path, timeout=5) as client:
        with pytest.raises(RemoteError) as e:
            client.generate("overflow please")
        assert e.value.code == ErrorCode.MODEL_ERROR and e.value.seq == 1
        assert str(e.value) == (
            "server error MODEL_ERROR for request 1: ContextOverflowError: prompt of 5000 tokens does not fit the 2048-token context"
        )
        pieces: list[str] = []
        with pytest.raises(RemoteError, match="server error INTERNAL for request 2: RuntimeError: kernel exploded"):
            for p in client.stream("crash now"):
                pieces.append(p)
        assert pieces == ["The", " quick"]
        with pytest.raises(RemoteError, match=r"server error MODEL_ERROR for request 3: ValueError: top_p must be in \(0, 1\], got 2.0"):
            client.generate("fine", top_p=2.0)
        assert client.generate("fine", max_tokens=1) == "The"


def test_a_model_that_fails_mid_request_gets_an_error_frame_and_service_continues(serve) -> None:
    """An edge_sdk error raised by the model in the middle of a stream (its file became unreadable) or
    while the server counts the prompt ends that request with ERROR MODEL_ERROR; the next request is served."""
    model = FakeModel()
    srv, path = serve(model)
    line = RawLine(path)
    line.send(encode_frame(Frame(GENERATE, 1, messages.encode_generate("unreadable now", max_tokens=5))))
    assert line.frames(3) == [
        token(1, "The"),
        token(1, " quick"),
        error(1, ErrorCode.MODEL_ERROR,
              "ModelFileError: /models/tiny.gguf: cannot read tensor blk.1.ffn_up.weight: [Errno 5] Input/output error"),
    ]
    assert model.closed_early == 1
    line.send(encode_frame(Frame(GENERATE, 2, messages.encode_generate("untokenizable \xff", max_tokens=5))))
    assert line.frames(1) == [error(2, ErrorCode.MODEL_ERROR, "TokenizerError: byte 0xff at offset 3 is not in the vocabulary")]
    line.send(encode_frame(Frame(GENERATE, 3, messages.encode_generate("fine", max_tokens=1))))
    assert line.frames(2) == [token(3, "The"), done(3, prompt_tokens=1, generated_tokens=1, **STATS, stop_reason="length",
                                                    finish_reason="length")]
    line.send(ping(4))
    assert line.frames(1) == [Frame(PONG, 4)]
    assert srv.stats["requests"] == 3 and srv.stats["write_errors"] == 0
    line.close()


def test_max_tokens_is_capped_at_the_context_and_the_server_limit(serve) -> None:
    """A context of 6 tokens leaves a 3-word prompt room for 6 - 3 + 1 = 4 tokens (the last needs no
    cache slot); the server's own limit is 5. The model is asked for the capped value, and DONE says it."""
    model = FakeModel(ctx=6)
    srv, path = serve(model, max_tokens=5)
    with SerialClient(path, timeout=5) as client:
        assert client.generate("a b c", max_tokens=0xFFFFFFFF) == "The quick brown fox"
        assert model.calls[-1] == ("stream", "a b c", {"max_tokens": 4})
        assert client.last_stats == {"prompt_tokens": 3, "generated_tokens": 4, **STATS, "stop_reason": "length",
                                     "capped_max_tokens": 4, "finish_reason": "length"}
        client.generate("a", max_tokens=100)  # room for 6; the limit is 5
        assert model.calls[-1][2] == {"max_tokens": 5} and client.last_stats["capped_max_tokens"] == 5
        client.chat([{"role": "user", "content": "x y"}], max_tokens=9, temperature=0)  # room for 5
        assert model.calls[-1][2] == {"max_tokens": 5, "temperature": 0.0} and client.last_stats["capped_max_tokens"] == 5
        client.generate("a", top_k=3)  # no max_tokens: the model's default (128) is over the limit
        assert model.calls[-1][2] == {"max_tokens": 5, "top_k": 3} and client.last_stats["capped_max_tokens"] == 5
        assert client.generate("a b", max_tokens=3) == "The quick brown"  # fits: runs as asked, no field
        assert model.calls[-1][2] == {"max_tokens": 3} and "capped_max_tokens" not in client.last_stats
        client.generate("a", max_tokens=0)  # never raised: the model refuses it (a real one with MODEL_ERROR)
        assert model.calls[-1][2] == {"max_tokens": 0} and "capped_max_tokens" not in client.last_stats
    assert srv.stats["requests"] == 6


def test_max_tokens_without_a_server_limit(serve) -> None:
    model = FakeModel(ctx=6)
    srv, path = serve(model)
    with SerialClient(path, timeout=5) as client:
        client.generate("a", top_k=3)  # the default stands: no limit here, the context bounds it as before
        assert model.calls[-1][2] == {"top_k": 3} and "capped_max_tokens" not in client.last_stats
        client.generate("a", max_tokens=7)  # exactly the room: 6 - 1 + 1
        assert model.calls[-1][2] == {"max_tokens": 6} and client.last_stats["capped_max_tokens"] == 6
        client.generate("a b c d e f", max_tokens=1 << 31)  # a prompt that fills the context leaves room for 1
        assert model.calls[-1][2] == {"max_tokens": 1} and client.last_stats["capped_max_tokens"] == 1
    with pytest.raises(InvalidArgumentError, match=r"max_tokens must be an int >= 1 \(or None for no limit but the context\), got 0"):
        SerialServer(model, path, max_tokens=0)


# ---------------------------------------------------------- hostile line


def _body(version: int, ftype: int, seq: int, payload: bytes) -> bytes:
    head = struct.pack("<BBHH", version, ftype, seq, len(payload)) + payload
    return head + struct.pack("<I", zlib.crc32(head))


def _wire(body: bytes) -> bytes:
    return b"\x00" + cobs.encode(body) + b"\x00"


def test_hostile_line_gets_exact_errors_and_service_continues(serve) -> None:
    model = FakeModel()
    srv, path = serve(model)
    line = RawLine(path)
    gen = _body(2, GENERATE, 20, messages.encode_generate("Hello there"))
    flipped = bytearray(gen)
    flipped[9] ^= 0x01
    rng = random.Random(1234)
    noise = bytes(rng.randrange(1, 256) for _ in range(500))
    cases: list[tuple[str, bytes, Frame]] = [
        ("no delimiter in 40 bytes of 0xff", b"\xff" * 40, error(0, ErrorCode.BAD_FRAME, "COBS: group at offset 0 needs 254 bytes, only 39 left")),
        ("random noise", noise, error(0, ErrorCode.BAD_FRAME, "COBS: group at offset 461 needs 124 bytes, only 38 left")),
        (
            "flipped bit",
            _wire(bytes(flipped)),
            error(0, ErrorCode.BAD_CRC, f"CRC-32 is 0x{zlib.crc32(bytes(flipped[:-4])):08x}, frame says 0x{zlib.crc32(gen[:-4]):08x}"),
        ),
        ("truncated", _wire(gen[:-6]), error(0, ErrorCode.BAD_LENGTH, "header says 14 payload bytes, frame carries 8")),
        ("oversized", _wire(_body(2, GENERATE, 21, b"a" * 1100)), error(0, ErrorCode.TOO_LARGE, "frame longer than 1039 encoded bytes discarded")),
        ("unknown type", _wire(_body(2, 0x7E, 22, b"")), error(22, ErrorCode.UNKNOWN_TYPE, "frame type 0x7e is not a request")),
        (
            "unknown version",
            _wire(_body(3, PING, 23, b"")),
            error(23, ErrorCode.BAD_VERSION, "protocol version 3 is not supported; this server speaks 2"),
        ),
        (  # an old client is answered in its own version, whose ERROR layout is the same: it can read why
            "old version",
            _wire(_body(1, PING, 28, b"")),
            Frame(ERROR, 28, messages.encode_error(ErrorCode.BAD_VERSION, "protocol version 1 is not supported; this server speaks 2"), 1),
        ),
        ("reserved seq", ping(0), error(0, ErrorCode.BAD_SEQ, "seq 0 is reserved; number requests from 1")),
        (
            "no prompt",
            encode_frame(Frame(GENERATE, 24, bytes.fromhex("10 04 00 01 00 00 00"))),
            error(24, ErrorCode.BAD_PAYLOAD, "GENERATE has no prompt field (0x01)"),
        ),
        (
            "unknown sampling field",
            encode_frame(Frame(GENERATE, 25, messages.encode_generate("x") + bytes.fromhex("7f 00 00"))),
            error(25, ErrorCode.BAD_PAYLOAD, "unknown field tag 0x7f"),
        ),
        ("cancel while idle", encode_frame(Frame(CANCEL, 26, messages.encode_cancel(20))), error(26, ErrorCode.NOT_RUNNING, "request 20 is not streaming")),
        ("flood", bytes(rng.randrange(1, 256) for _ in range(100_000)), error(0, ErrorCode.TOO_LARGE, "frame longer than 1039 encoded bytes discarded")),
    ]
    for i, (what, bad, reply) in enumerate(cases):
        line.send(bad + ping(100 + i))
        assert line.frames(2, timeout=10) == [reply, Frame(PONG, 100 + i)], what
    # A reply frame sent to the server (an echoing line) gets no answer at all.
    line.send(encode_frame(token(27, "echo")) + ping(200))
    assert line.frames(1) == [Frame(PONG, 200)]
    assert line.quiet()
    assert srv.stats["ignored"] == 1
    assert srv.stats["faults"] == 6
    assert srv.stats["discarded_bytes"] == len(_wire(_body(2, GENERATE, 21, b"a" * 1100))) - 2 + 100_000
    line.close()
    with SerialClient(path, timeout=5) as client:
        assert client.generate("still there?") == TEXT
    assert [c[1] for c in model.calls] == ["still there?"]


def test_random_garbage_never_stops_the_server(serve) -> None:
    """600 seeded pieces of garbage: random bytes, floods without a delimiter, frames with a valid CRC but
    any version, type, seq and payload, requests whose fields are random, GENERATEs with raw sampling values. The server reads every byte (its counts are those of
    a FrameReader fed the same bytes) and still answers a PING."""
    rng = random.Random(20240611)
    model = FakeModel()
    srv, path = serve(model)
    line = RawLine(path)
    sent = bytearray()

    def rand(n: int) -> bytes:
        return bytes(rng.randrange(256) for _ in range(n))

    for _ in range(600):
        kind = rng.random()
        if kind < 0.02:  # a run without delimiters, longer than any frame
            data = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1100, 3000)))
        elif kind < 0.35:
            data = rand(rng.randrange(1, 90))
        elif kind < 0.45:  # a GENERATE with a prompt and raw u32/f32 sampling values (NaN, 0xFFFFFFFF, ...)
            sampling = b"".join(bytes([tag]) + b"\x04\x00" + rand(4) for tag in sorted(rng.sample(range(0x10, 0x17), 2)))
            data = _wire(_body(2, GENERATE, rng.randrange(1, 0x10000), b"\x01\x02\x00hi" + sampling))
        elif kind < 0.7:
            data = _wire(_body(rng.choice([2, 2, 2, 0, 1, 3, 255]), rng.randrange(256), rng.randrange(0x10000), rand(rng.randrange(60))))
        else:  # a request of a real type, with random fields (tag u8 | len u16 | value)
            fields = b"".join(bytes([rng.choice([1, 2, 3, 0x10, 0x11, 0x16, 0x17, 0x18, 0x34, 0x40, 0x41, 0x42, 0x43, rng.randrange(256)])])
                              + struct.pack("<H", n) + rand(n) for n in (rng.randrange(6) for _ in range(rng.randrange(4))))
            data = _wire(_body(2, rng.choice([GENERATE, 0x04, CANCEL, PING, 0x02, GENERATE | 0x40, 0x06, 0x07, 0x46]), rng.randrange(1, 0x10000), fields))
        line.send(data)
        sent += data
    line.send(b"\x00" + ping(0xBEEF, b"alive"))
    sent += b"\x00" + ping(0xBEEF, b"alive")
    deadline = time.monotonic() + 20
    got: list[Frame | FrameFault] = []
    while Frame(PONG, 0xBEEF, b"alive") not in got:
        assert time.monotonic() < deadline, "no PONG after the garbage"
        got += line.frames(1, timeout=deadline - time.monotonic())
    expected = FrameReader().feed(bytes(sent))
    assert srv.stats["bytes_in"] == len(sent)
    assert srv.stats["faults"] == sum(isinstance(x, FrameFault) for x in expected)
    assert srv.stats["frames_in"] == sum(isinstance(x, Frame) for x in expected)
    assert srv._thread is not None and srv._thread.is_alive() and srv._reader is not None and srv._reader.is_alive()
    line.close()


def test_line_noise_is_answered_in_batches(serve) -> None:
    """20,000 empty frames of noise (0x01 decodes to nothing): every fault is reported, but one ERROR covers all that arrived
    while it waited, so the reply is far shorter than the noise and the PING after it is answered."""
    srv, path = serve(FakeModel())
    line = RawLine(path)
    n = 20_000
    line.send(b"\x01\x00" * n + ping(7))
    got: list[Frame] = []
    while not got or got[-1].type != PONG:
        got += line.frames(1, timeout=10)
    assert got[-1] == Frame(PONG, 7)
    errors = [messages.decode_error(f.payload) for f in got[:-1]]
    assert all(f.type == ERROR and f.seq == 0 for f in got[:-1])
    assert {code for code, _ in errors} == {ErrorCode.BAD_FRAME}
    counted = 0
    for _, detail in errors:
        m = re.fullmatch(r"frame of 0 bytes is shorter than the 10-byte minimum(?: \(and (\d+) more bad frame\(s\) since\))?", detail)
        assert m, detail
        counted += 1 + int(m.group(1) or 0)
    assert counted == n == srv.stats["faults"]
    assert len(errors) < n // 100, len(errors)
    line.close()


def test_ping_too_large_to_echo_is_refused_and_service_continues(serve) -> None:
    srv, path = serve(FakeModel())
    line = RawLine(path)
    payload = bytes(0 if i % 50 == 0 else 0x61 for i in range(1028))
    body = bytes([2, PING, 5, 0]) + struct.pack("<H", len(payload)) + payload
    line.send(_wire(body + struct.pack("<I", zlib.crc32(body))) + ping(6))
    assert line.frames(2) == [error(0, ErrorCode.TOO_LARGE, "payload of 1028 bytes is over the 1024-byte frame limit"),
                              Frame(PONG, 6)]
    line.close()


class SlowPrefillModel(FakeModel):
    """A model whose prompt takes `prefill_s` unless its cancel event is set first (as edge_sdk checks it
    between prefill chunks)."""

    def __init__(self, prefill_s: float) -> None:
        super().__init__()
        self.prefill_s = prefill_s

    def stream(self, prompt: str, *, cancel: threading.Event | None = None, **sampling: Any) -> Iterator[str]:
        words = super().stream(prompt, cancel=cancel, **sampling)

        def run() -> Iterator[str]:
            if cancel is not None and cancel.wait(self.prefill_s):
                self.last_stats = {"prompt_tokens": 1, "generated_tokens": 0, **STATS, "stop_reason": "cancelled"}
                return
            yield from words

        return run()


def test_cancel_reaches_a_long_prefill(serve) -> None:
    model = SlowPrefillModel(prefill_s=30)
    srv, path = serve(model)
    line = RawLine(path)
    t0 = time.monotonic()
    line.send(encode_frame(Frame(GENERATE, 1, messages.encode_generate("a long prompt"))))
    wait_for(lambda: model.calls)
    line.send(encode_frame(Frame(CANCEL, 2, messages.encode_cancel(1))))
    (reply,) = line.frames(1, timeout=10)
    assert time.monotonic() - t0 < 10  # not the 30 s prefill
    assert reply.type == DONE and reply.seq == 1
    assert messages.decode_done(reply.payload)["stop_reason"] == "cancelled"
    assert srv.stats["cancelled"] == 1
    assert line.quiet()  # the CANCEL itself gets no reply of its own
    line.send(ping(3))
    assert line.frames(1) == [Frame(PONG, 3)]
    line.close()


def test_echoing_line_does_not_storm() -> None:
    """On a loopback line the server hears its own replies; it must not answer them."""
    port = serial.serial_for_url("loop://", timeout=0.05)
    srv = SerialServer(FakeModel(), port).start()
    try:
        port.write(ping(1) + b"\x13\x37\x00")
        wait_for(lambda: srv.stats["ignored"] == 2)
        time.sleep(0.2)
        assert srv.stats["frames_out"] == 2  # one PONG, one ERROR for the garbage
        assert srv.stats["frames_in"] == 3 and srv.stats["faults"] == 1
    finally:
        srv.stop()
        port.close()


def test_client_that_stops_reading_is_dropped_and_served_again(serve) -> None:
    model = FakeModel(words=[" word"] * 5000)
    srv, path = serve(model, write_timeout=0.3)
    line = RawLine(path)
    line.send(encode_frame(Frame(GENERATE, 1, messages.encode_generate("talk"))))
    # Nobody reads: the pty fills up and a write times out.
    # (the server counts the abort, then closes the model's stream: wait for both)
    wait_for(lambda: srv.stats["aborted"] == 1 and model.closed_early == 1, timeout=20)
    assert srv.stats["write_errors"] == 1
    assert 0 < model.last_stats["generated_tokens"] < 5000
    line.port.reset_input_buffer()
    line.send(ping(2))
    got = [f for f in line.frames(1) if isinstance(f, Frame)]
    while not got or got[-1] != Frame(PONG, 2):
        got += line.frames(1)  # a frame cut by the timed-out write may come first
    assert got[-1] == Frame(PONG, 2) and all(f.seq == 1 for f in got[:-1])
    model.words = WORDS
    line.send(encode_frame(Frame(GENERATE, 3, messages.encode_generate("again", max_tokens=2))))
    assert line.frames(3) == [token(3, "The"), token(3, " quick"),
                              done(3, prompt_tokens=1, generated_tokens=2, **STATS, stop_reason="length", finish_reason="length")]
    line.close()


def test_client_that_closes_its_port_and_comes_back(serve) -> None:
    model = FakeModel(words=[" word"] * 200, delay_s=0.002)
    srv, path = serve(model, retry_s=0.05)
    line = RawLine(path)
    line.send(encode_frame(Frame(GENERATE, 1, messages.encode_generate("talk"))))
    assert line.frames(2) == [token(1, " word")] * 2
    line.close()
    # With no slave open the server's reads fail (EIO on the master); it retries.
    wait_for(lambda: srv.stats["read_errors"] > 0)
    # Linux discards what the master writes while no slave is open, so the
    # stream runs to its end unnoticed, as it would on a UART whose peer was
    # unplugged; a kernel that blocks instead ends it through the write timeout.
    wait_for(lambda: model.last_stats.get("generated_tokens", 0) == 200 or srv.stats["aborted"] == 1, timeout=20)
    line = RawLine(path)
    line.send(ping(2))
    assert line.frames(1) == [Frame(PONG, 2)]
    line.close()
    with SerialClient(path, timeout=5) as client:
        model.words = WORDS
        assert client.generate("back") == TEXT


def test_stop_during_a_stream_sends_done_shutdown(pty) -> None:
    master, path = pty
    model = FakeModel(gated=True)
    srv = SerialServer(model, master).start()
    line = RawLine(path)
    line.send(encode_frame(Frame(GENERATE, 5, messages.encode_generate("hi"))))
    model.gate.release(1)
    assert line.frames(1) == [token(5, "The")]
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    wait_for(lambda: srv._stop.is_set())
    model.gate.release(1)
    stopper.join(5)
    assert not stopper.is_alive() and not srv._thread.is_alive()
    # The server looks at the stop flag after each token it sends. If it looked before the stop was asked, it
    # sends the token in flight (" quick") and then DONE; if after, DONE at once: either way within one token.
    got = line.frames(1)
    in_flight = got[0].type == TOKEN
    if in_flight:
        assert got == [token(5, " quick")]
        got = line.frames(1)
    assert got[0].type == DONE
    stats = messages.decode_done(got[0].payload)
    assert stats["stop_reason"] == "shutdown" and stats["prompt_tokens"] == 1
    assert stats["generated_tokens"] == 1 + in_flight
    assert master.is_open  # a port passed in stays open
    line.close()


def test_server_opens_and_closes_a_port_by_path(pty) -> None:
    master, path = pty
    srv = SerialServer(FakeModel(), path, 115200).start()
    master.write(ping(9))
    reader = FrameReader()
    got: list[Frame | FrameFault] = []
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        got += reader.feed(master.read(64))
    assert got == [Frame(PONG, 9)]
    srv.stop()
    assert not srv._port.is_open
    with pytest.raises(ProtocolError, match="cannot open serial port '/nonexistent/tty' at 115200 baud"):
        SerialServer(FakeModel(), "/nonexistent/tty")


def test_client_timeout_message(pty) -> None:
    master, path = pty  # nothing serves the master
    with SerialClient(path, 115200, timeout=0.2) as client:
        with pytest.raises(ProtocolError, match=r"no reply to PING \(seq 1\) within 0.2 s on /dev/pts/\d+; is a server running there at 115200 baud\?"):
            client.ping()


# ------------------------------------------------------------ throughput


def test_streaming_keeps_up_with_a_115200_baud_link(serve) -> None:
    """What this shows, and what it cannot.

    A pty moves bytes at memory speed and ignores the baud rate, so no test
    here can watch a real UART. What it can show is that the server's own
    per-token work (encode, write) and the client's (read, decode) take less
    time than the same bytes need on a 115200-baud line (10 bits a byte,
    8N1). Then on a real link the UART sets the pace, and tokens wait for the
    wire, not for us. The framing cost per token is pinned exactly: a 5-byte
    piece takes 18 bytes on the wire (6 header, 4 CRC, 1 COBS, 2 delimiters),
    so 115200 baud carries at most 640 such tokens a second.
    """
    n = 400
    model = FakeModel(words=[" word"] * n)
    srv, path = serve(model)
    assert len(encode_frame(token(1, " word"))) == 18
    wire = n * 18 + len(encode_frame(done(1, prompt_tokens=1, generated_tokens=n, **STATS, stop_reason="eos", finish_reason="stop")))
    link_s = wire * 10 / 115200
    with SerialClient(path, timeout=5) as client:
        client.generate("warm", max_tokens=5)
        t0 = time.perf_counter()
        text = client.generate("go")
        elapsed = time.perf_counter() - t0
    assert text == " word" * n
    ratio = elapsed / link_s
    print(f"\n{n} tokens, {wire} wire bytes: {elapsed * 1e3:.1f} ms over the pty vs {link_s * 1e3:.1f} ms at 115200 baud (ratio {ratio:.3f})")
    assert ratio < 0.5, f"serving took {ratio:.2f}x the link time; the link should be the bottleneck"


# ------------------------------------------------------------------ CLI


def test_cli_serve_serial(pty, monkeypatch, capsys) -> None:
    import argparse

    from edge_sdk.cli import serve_serial

    master, path = pty
    model = FakeModel()
    started: list[SerialServer] = []

    class Recorded(SerialServer):
        def serve_forever(self) -> None:
            started.append(self)
            super().serve_forever()

    monkeypatch.setattr(serve_serial, "load_from_args", lambda a: model)
    monkeypatch.setattr(serve_serial, "SerialServer", Recorded)
    parser = argparse.ArgumentParser(prog="edge-sdk")
    serve_serial.register(parser.add_subparsers())
    args = parser.parse_args(["serve-serial", "--port", path, "--baud", "57600", "-m", "tiny", "--threads", "2", "--max-tokens", "1",
                              "--max-constraints", "3"])
    assert (args.port, args.baud, args.model, args.threads, args.backend, args.write_timeout) == (path, 57600, "tiny", 2, "auto", 2.0)
    assert (args.max_constraints, args.max_constraint_bytes) == (3, 4096)
    rc: list[int] = []
    runner = threading.Thread(target=lambda: rc.append(args.func(args)))
    runner.start()
    wait_for(lambda: bool(started))
    reader = FrameReader()
    master.write(encode_frame(Frame(GENERATE, 1, messages.encode_generate("hi", max_tokens=2))))
    got: list[Frame | FrameFault] = []
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        got += reader.feed(master.read(64))
    # --max-tokens 1: the request for 2 runs with 1, and its DONE says so
    assert got == [token(1, "The"), done(1, prompt_tokens=1, generated_tokens=1, **STATS, stop_reason="length", capped_max_tokens=1,
                                         finish_reason="length")]
    master.write(encode_frame(Frame(0x02, 2)))  # INFO: the limits of --max-constraints and the default size
    got, deadline = [], time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        got += reader.feed(master.read(64))
    info = messages.decode_info_reply(got[0].payload)
    assert (info["max_constraints"], info["max_constraint_size"]) == (3, 4096)
    started[0].stop()
    runner.join(5)
    assert rc == [0]
    err = capsys.readouterr().err
    assert f"[serving fake-words (backend fake, ctx 2048) on {path} at 57600 baud, protocol v2; Ctrl-C to stop]" in err
    assert "[served 1 requests (0 cancelled, 0 abandoned); 0 bad frames, 0 read errors, 0 write errors]" in err


def test_cli_bad_port_fails_before_loading_the_model(monkeypatch) -> None:
    import argparse

    from edge_sdk.cli import serve_serial

    def no_load(a: argparse.Namespace) -> None:
        raise AssertionError("the model must not be loaded for a port that does not open")

    monkeypatch.setattr(serve_serial, "load_from_args", no_load)
    parser = argparse.ArgumentParser(prog="edge-sdk")
    serve_serial.register(parser.add_subparsers())
    args = parser.parse_args(["serve-serial", "--port", "/nonexistent/tty"])
    with pytest.raises(ProtocolError, match="cannot open serial port '/nonexistent/tty' at 115200 baud"):
        args.func(args)


def test_cli_max_tokens_below_one_fails_before_loading_the_model(monkeypatch) -> None:
    import argparse

    from edge_sdk.cli import serve_serial
    from edge_sdk.errors import InvalidArgumentError

    monkeypatch.setattr(serve_serial, "load_from_args", lambda a: pytest.fail("the model must not be loaded"))
    parser = argparse.ArgumentParser(prog="edge-sdk")
    serve_serial.register(parser.add_subparsers())
    args = parser.parse_args(["serve-serial", "--port", "/nonexistent/tty", "--max-tokens", "0"])
    with pytest.raises(InvalidArgumentError, match="^--max-tokens must be >= 1, got 0$"):
        args.func(args)
    args = parser.parse_args(["serve-serial", "--port", "/nonexistent/tty", "--max-constraint-bytes", "0"])
    with pytest.raises(InvalidArgumentError, match="^--max-constraint-bytes must be >= 1, got 0$"):
        args.func(args)


# ------------------------------------------------- a real (tiny) model
# `tiny_gguf` (tests/conftest.py): a 2-layer random LLaMA with a byte-level BPE
# vocabulary, written as a GGUF file.


def test_serves_a_real_tiny_model(pty, tiny_gguf) -> None:
    """The serial link is transparent: text and statistics are exactly what
    the same model gives through the Python API at temperature 0."""
    import edge_sdk

    master, path = pty
    model = edge_sdk.load(tiny_gguf, backend="numpy")
    direct = list(model.stream("hello world", max_tokens=8, temperature=0))
    direct_stats = dict(model.last_stats)
    long_direct = list(model.stream("hello world", max_tokens=120, temperature=0))
    long_stats = dict(model.last_stats)
    assert long_stats["generated_tokens"] > 10  # enough to cancel in the middle
    chat = [{"role": "user", "content": "hi"}]
    direct_chat = model.chat(chat, max_tokens=4, temperature=0)
    to_the_end = model.generate("hello world", max_tokens=0xFFFFFFFF, temperature=0)
    n_prompt = len(model.tokenize("hello world"))
    # 4 prompt tokens in a 128-token context: 125 generated (the last needs no cache slot)
    assert (n_prompt, model.last_stats["generated_tokens"], model.last_stats["stop_reason"]) == (4, 125, "context")
    srv = SerialServer(model, master).start()
    try:
        with SerialClient(path, timeout=10) as client:
            info = client.info()
            assert (info["ctx"], info["backend"], info["name"]) == (128, "numpy", tiny_gguf)
            assert list(client.stream("hello world", max_tokens=8, temperature=0)) == direct
            keys = ("prompt_tokens", "generated_tokens", "stop_reason")
            assert {k: client.last_stats[k] for k in keys} == {k: direct_stats[k] for k in keys}
            assert client.last_stats["decode_tok_s"] > 0
            assert client.chat(chat, max_tokens=4, temperature=0) == direct_chat
            # Cancel a long stream after two pieces; the model stays usable.
            it = client.stream("hello world", max_tokens=120, temperature=0)
            got = [next(it), next(it)]
            client.cancel()
            got += list(it)
            assert got == long_direct[: len(got)] and len(got) < len(long_direct)
            assert client.last_stats["stop_reason"] == "cancelled"
            assert client.last_stats["generated_tokens"] < long_stats["generated_tokens"]
            assert list(client.stream("hello world", max_tokens=8, temperature=0)) == direct
            # max_tokens 0xFFFFFFFF runs with what the context has room for: the same text, and DONE says so
            assert client.generate("hello world", max_tokens=0xFFFFFFFF, temperature=0) == to_the_end
            keys = ("prompt_tokens", "generated_tokens", "stop_reason", "capped_max_tokens")
            assert {k: client.last_stats[k] for k in keys} == {
                "prompt_tokens": 4, "generated_tokens": 125, "stop_reason": "context", "capped_max_tokens": 125}
    finally:
        srv.stop()
        model.close()


def test_cli_serves_a_real_tiny_model_until_sigterm(pty, tiny_gguf) -> None:
    import signal
    import subprocess
    import sys

    master, path = pty
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_sdk", "serve-serial", "--port", path, "-m", tiny_gguf, "--backend", "numpy"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        # Bytes sent before the server opens its end are lost (as on a UART),
        # so ping until it answers, the way a microcontroller would at boot.
        client = SerialClient(master, timeout=0.5)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping()
                break
            except ProtocolError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
        client.timeout = 10
        import edge_sdk

        with edge_sdk.load(tiny_gguf, backend="numpy") as same:
            expected = same.generate("hello world", max_tokens=3, temperature=0)
        assert client.generate("hello world", max_tokens=3, temperature=0) == expected
        assert client.info()["backend"] == "numpy"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out == ""
    assert f"on {path} at 115200 baud, protocol v2; Ctrl-C to stop]" in err
    # (A ping sent while the server opened its end could arrive cut; bad-frame counts are not pinned here.)
    assert "[served 1 requests (0 cancelled, 0 abandoned); " in err
