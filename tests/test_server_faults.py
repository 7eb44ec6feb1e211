"""The HTTP server under load and faults, over loopback only, each test bounded in count and time.

Concurrent clients past the queue, clients that leave mid-stream or while queued, slowloris-style partial
requests, garbage bytes, and SIGTERM on a real `edge-sdk serve` process. Generations are slowed where a test
needs one to be in flight (the backend's forward call sleeps), so nothing depends on the machine's speed.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time

import httpx
import pytest

pytest.importorskip("openai")

import edge_sdk  # noqa: E402
from server_harness import load_tiny, running, subprocess_server, url, wait_ready, write_long_tiny_gguf  # noqa: E402

LONG_PROMPT = "Hello"  # the tiny model's greedy continuation of it runs to max_tokens (no end of text)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return write_long_tiny_gguf(str(tmp_path_factory.mktemp("faults") / "tiny-long.gguf"))


@pytest.fixture(scope="module")
def model(gguf):
    with load_tiny(gguf) as m:
        yield m


class Slowed:
    """The model's forward calls, slowed to `seconds` each and counted."""

    def __init__(self, model, monkeypatch, seconds: float) -> None:
        self.calls = 0
        self.seconds = seconds
        inner = model.backend.forward

        def forward(*a, **kw):
            self.calls += 1
            time.sleep(self.seconds)
            return inner(*a, **kw)

        monkeypatch.setattr(model.backend, "forward", forward)


def _metric(server, name: str) -> float:
    text = httpx.get(url(server, "/metrics")).text
    return float(re.search(rf"^edge_sdk_{name} (\S+)$", text, re.M).group(1))


def _wait(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- load ---------------------------------------------------------------------------------------------------
# resident memory after 211 requests may exceed that after the first 10 by this much (measured here: +0.2 MiB)
RSS_GROWTH_BOUND = 8 << 20


@pytest.mark.slow
def test_eight_clients_past_the_queue(gguf):
    """8 clients x 25 requests against 1 running + 3 waiting: each gets its exact answer or a 503."""
    with edge_sdk.load(gguf) as ref_model:  # the settings `edge-sdk serve -m` loads with
        want = ref_model.generate("The cat", max_tokens=8)
        want_after = ref_model.generate("The dog", max_tokens=12)
    with subprocess_server(gguf, "--queue", "3") as (proc, port):
        wait_ready(port)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=30) as c:
            for _ in range(10):
                assert c.post(base + "/v1/completions", json={"prompt": "The cat", "max_tokens": 8}).status_code == 200
            rss_10 = float(re.search(r"^edge_sdk_resident_memory_bytes (\S+)$", c.get(base + "/metrics").text,
                                     re.M).group(1))
        results: list[tuple[int, str]] = []
        failures: list[str] = []

        def client() -> None:
            with httpx.Client(timeout=30) as c:
                for _ in range(25):
                    try:
                        r = c.post(base + "/v1/completions", json={"prompt": "The cat", "max_tokens": 8})
                    except httpx.HTTPError as e:  # a hang is a ReadTimeout after 30 s
                        failures.append(repr(e))
                        continue
                    if r.status_code == 200:
                        results.append((200, r.json()["choices"][0]["text"]))
                    else:
                        results.append((r.status_code, r.json()["error"]["code"] + " " + r.headers.get("retry-after", "")))

        threads = [threading.Thread(target=client) for _ in range(8)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not failures and len(results) == 200 and time.monotonic() - t0 < 120
        ok = [text for status, text in results if status == 200]
        busy = [text for status, text in results if status != 200]
        print(f"{len(ok)} answered, {len(busy)} refused with 503")
        assert ok and all(text == want for text in ok)
        assert all(re.fullmatch(r"queue_full \d+", b) for b in busy) and {s for s, _ in results} <= {200, 503}
        with httpx.Client(timeout=30) as c:
            r = c.post(base + "/v1/completions", json={"prompt": "The dog", "max_tokens": 12})
            assert r.json()["choices"][0]["text"] == want_after
            text = c.get(base + "/metrics").text
        rss_after = float(re.search(r"^edge_sdk_resident_memory_bytes (\S+)$", text, re.M).group(1))
        served = re.search(r'^edge_sdk_requests_total\{route="/v1/completions",code="200"\} (\d+)$', text, re.M)
        assert int(served.group(1)) == 10 + len(ok) + 1
        print(f"RSS after 10 requests {rss_10 / 2**20:.1f} MiB, after {11 + len(results)}: {rss_after / 2**20:.1f} MiB")
        assert rss_after - rss_10 < RSS_GROWTH_BOUND, (rss_10, rss_after)


# -- clients that leave -------------------------------------------------------------------------------------
def test_a_client_leaving_mid_stream_cancels_within_one_token(model, monkeypatch):
    slow = Slowed(model, monkeypatch, 0.01)
    with running(model) as s:
        at_abandon: list[int] = []
        abandon = s.state.scheduler.abandon

        def recorded(job):
            at_abandon.append(slow.calls)
            abandon(job)

        monkeypatch.setattr(s.state.scheduler, "abandon", recorded)
        cancelled = _metric(s, "generations_cancelled_total")
        body = {"prompt": LONG_PROMPT, "max_tokens": 1500, "stream": True}
        with httpx.stream("POST", url(s, "/v1/completions"), json=body, timeout=30) as r:
            lines = r.iter_lines()
            got = [next(lines) for _ in range(6)]  # three events and their blank lines
        assert all(line.startswith("data: ") for line in got[::2])
        _wait(lambda: s.state.scheduler.running is None)
        assert at_abandon, "the server never noticed the client leave"
        assert slow.calls - at_abandon[0] <= 1  # at most the forward call under way when it left
        assert model.last_stats["stop_reason"] == "cancelled" and model.last_stats["generated_tokens"] < 100
        assert _metric(s, "generations_cancelled_total") == cancelled + 1
        monkeypatch.setattr(slow, "seconds", 0.0)
        r = httpx.post(url(s, "/v1/completions"), json={"prompt": "The cat", "max_tokens": 5}, timeout=10)
        assert r.json()["choices"][0]["text"] == model.generate("The cat", max_tokens=5)


def test_a_client_leaving_a_whole_request_or_the_queue(model, monkeypatch):
    Slowed(model, monkeypatch, 0.01)
    with running(model, queue=2) as s:
        sched = s.state.scheduler
        long_body = {"prompt": LONG_PROMPT, "max_tokens": 1500}
        outcomes: list[str] = []

        def impatient(timeout: float) -> None:
            try:
                httpx.post(url(s, "/v1/completions"), json=long_body, timeout=timeout)
                outcomes.append("answered")
            except httpx.ReadTimeout:
                outcomes.append("gave up")

        first = threading.Thread(target=impatient, args=(0.6,))
        first.start()
        _wait(lambda: sched.running is not None)
        queued = threading.Thread(target=impatient, args=(0.3,))
        queued.start()
        _wait(lambda: sched.depth == 1)
        queued.join(10)
        _wait(lambda: sched.depth == 0)  # it left the queue before it ran
        first.join(10)
        _wait(lambda: sched.running is None)  # and the running one stopped when its client gave up
        assert outcomes == ["gave up", "gave up"]
        assert model.last_stats["stop_reason"] == "cancelled" and model.last_stats["generated_tokens"] < 1500
        assert _metric(s, "generations_total") == 1  # the queued one never ran


# -- slow and broken clients --------------------------------------------------------------------------------
def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def _answer(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (or 5 s pass)."""
    out = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return out
            out += data
    except socket.timeout:
        return out + b"<still open>"
    except ConnectionResetError:  # closed with bytes of ours unread
        return out


def test_slowloris_and_garbage_do_not_stop_the_server(model):
    with running(model, header_timeout_s=0.5, body_timeout_s=0.5) as s:
        want = model.generate("The cat", max_tokens=4)
        slow = [_connect(s) for _ in range(20)]
        for sock in slow:
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        r = httpx.post(url(s, "/v1/completions"), json={"prompt": "The cat", "max_tokens": 4}, timeout=10)
        assert r.json()["choices"][0]["text"] == want  # served while 20 heads are pending
        for i in range(3):  # a header line every 0.15 s does not extend the deadline
            time.sleep(0.15)
            for sock in slow:
                try:
                    sock.sendall(b"X-Slow-%d: 1\r\n" % i)
                except OSError:
                    pass
        assert all(_answer(sock) == b"" for sock in slow)  # closed, without an answer
        assert time.monotonic() - t0 < 3
        for sock in slow:
            sock.close()

        body = _connect(s)  # a body that stops coming: 408 after body_timeout_s
        body.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"prompt\":")
        answer = _answer(body)
        assert answer.startswith(b"HTTP/1.1 408 ") and b'"code":"timeout"' in answer
        body.close()

        garbage = [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS hello
                   b"\x00\xff\x13\x37" * 64 + b"\r\n\r\n",
                   b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
                   b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                   b"GET /health HTTP/1.1\r\n\r\n"]  # no Host
        for g in garbage:
            sock = _connect(s)
            try:
                sock.sendall(g)
            except OSError:
                pass
            answer = _answer(sock)
            sock.close()
            assert answer == b"" or re.match(rb"HTTP/1\.1 4\d\d ", answer), answer[:80]
        r = httpx.post(url(s, "/v1/completions"), json={"prompt": "The cat", "max_tokens": 4}, timeout=10)
        assert r.json()["choices"][0]["text"] == want


# -- shutdown -----------------------------------------------------------------------------------------------
def test_stop_lets_a_running_generation_finish_and_refuses_the_queue(model, monkeypatch):
    Slowed(model, monkeypatch, 0.02)
    want = model.generate("The cat", max_tokens=20)
    with running(model, shutdown_grace_s=10) as s:
        body = {"prompt": "The cat", "max_tokens": 20, "stream": True}
        out: dict = {}

        def stream() -> None:
            with httpx.stream("POST", url(s, "/v1/completions"), json=body, timeout=30) as r:
                out["lines"] = [line for line in r.iter_lines() if line]

        def queued() -> None:
            out["queued"] = httpx.post(url(s, "/v1/completions"), json={"prompt": "x", "max_tokens": 2}, timeout=30)

        t1 = threading.Thread(target=stream)
        t1.start()
        _wait(lambda: s.state.scheduler.running is not None)
        t2 = threading.Thread(target=queued)
        t2.start()
        _wait(lambda: s.state.scheduler.depth == 1)
        s.stop()  # what SIGTERM does
        t1.join(30)
        t2.join(30)
    assert out["lines"][-1] == "data: [DONE]"
    assert "".join(json.loads(line[6:])["choices"][0]["text"] for line in out["lines"][:-1]) == want
    assert out["queued"].status_code == 503 and out["queued"].json()["error"]["code"] == "shutting_down"


def test_sigterm_cancels_past_the_grace_and_exits_cleanly(gguf):
    """A real `edge-sdk serve` process: SIGTERM during a long stream, --grace 0.5."""
    with subprocess_server(gguf, "--backend", "numpy", "--grace", "0.5") as (proc, port):
        wait_ready(port)
        body = {"prompt": LONG_PROMPT, "max_tokens": 1500, "stream": True}
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()
            first = next(lines)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line]
        assert first.startswith("data: {")
        last = json.loads(rest[-1][6:])
        assert last["error"]["code"] == "shutting_down" and "cut short" in last["error"]["message"]
        assert time.monotonic() - t0 < 3
        assert proc.wait(15) == 0
        err = proc.stderr.read()
        assert "Traceback" not in err and "Error" not in err, err
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
