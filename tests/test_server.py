"""The HTTP server against the official `openai` client and raw HTTP, on a real uvicorn server on 127.0.0.1.

Every generated text is pinned to what the same model gives through the Python API (greedy, or seeded
sampling with the same parameters), so the field mapping and the streaming are checked token for token.
"""

from __future__ import annotations

import json
import re
import threading

import httpx
import jsonschema
import pytest

openai = pytest.importorskip("openai")

from server_harness import load_tiny, running, url, write_long_tiny_gguf  # noqa: E402

ROBOT = {"type": "object", "properties": {"action": {"enum": ["forward", "back", "stop"]},
                                          "speed": {"type": "integer", "minimum": 0, "maximum": 9}},
         "required": ["action", "speed"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "move", "description": "Drive", "parameters": {
    "type": "object", "properties": {"cm": {"type": "integer", "minimum": 1, "maximum": 99}}, "required": ["cm"],
    "additionalProperties": False}}}]
HI = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = write_long_tiny_gguf(str(tmp_path_factory.mktemp("server") / "tiny-long.gguf"))
    with load_tiny(path) as m:
        yield m


@pytest.fixture(scope="module")
def server(model):
    with running(model) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=url(server, "/v1"), api_key="unused", max_retries=0, timeout=30)


def test_completion_is_the_models_greedy_text(model, client):
    want = model.generate("The cat", max_tokens=12, temperature=0)
    r = client.completions.create(model="tiny-long", prompt="The cat", max_tokens=12, temperature=0)
    assert r.object == "text_completion" and re.fullmatch(r"cmpl-[0-9a-f]{24}", r.id)
    assert r.model == "tiny-long" and r.choices[0].text == want and r.choices[0].finish_reason == "length"
    n_prompt = len(model.tokenize("The cat"))
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (n_prompt, 12, n_prompt + 12)
    ids = model.tokenize("The cat")  # a prompt of token ids gives the same text
    r = client.completions.create(model="tiny-long", prompt=ids, max_tokens=12, temperature=0)
    assert r.choices[0].text == want


def test_chat_is_the_models_greedy_reply(model, client):
    want = model.chat(HI, max_tokens=10)
    n_prompt = model.last_stats["prompt_tokens"]
    r = client.chat.completions.create(model="tiny-long", messages=HI, max_tokens=10)
    assert r.object == "chat.completion" and re.fullmatch(r"chatcmpl-[0-9a-f]{24}", r.id)
    msg = r.choices[0].message
    assert (msg.role, msg.content, msg.tool_calls) == ("assistant", want, None)
    assert r.choices[0].finish_reason == "length"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (n_prompt, 10)
    # the same conversation again: its prompt, all but the last token, comes from the KV cache
    r = client.chat.completions.create(model="tiny-long", messages=HI, max_completion_tokens=10)
    assert r.choices[0].message.content == want
    assert r.usage.prompt_tokens_details.cached_tokens == n_prompt - 1


def test_sampling_fields_reach_the_sampler(model, client):
    kw = dict(temperature=0.9, top_p=0.9, seed=7)
    extra = dict(top_k=40, min_p=0.05, repetition_penalty=1.3)
    want = model.generate("Once", max_tokens=16, **kw, **extra)
    r = client.completions.create(model="tiny-long", prompt="Once", max_tokens=16, extra_body=extra, **kw)
    assert r.choices[0].text == want
    greedy = model.generate("Once", max_tokens=16)
    stop = greedy[3:5]
    want = model.generate("Once", max_tokens=16, stop=[stop])
    r = client.completions.create(model="tiny-long", prompt="Once", max_tokens=16, stop=[stop])
    assert r.choices[0].text == want == greedy[: greedy.index(stop)] and r.choices[0].finish_reason == "stop"


def test_streamed_chat_is_the_whole_reply_in_pieces(model, client):
    want = model.chat(HI, max_tokens=12)
    chunks = list(client.chat.completions.create(model="tiny-long", messages=HI, max_tokens=12, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == want and len(chunks) >= 4
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["length"]
    assert all(c.usage is None for c in chunks) and len({c.id for c in chunks}) == 1


def test_stream_usage_comes_last_when_asked(model, client):
    want = model.generate("The dog", max_tokens=9)
    chunks = list(client.completions.create(model="tiny-long", prompt="The dog", max_tokens=9, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == want
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 9
    assert chunks[-1].usage.prompt_tokens == len(model.tokenize("The dog"))
    assert all(c.usage is None for c in chunks[:-1])


def test_raw_sse_as_curl_sees_it(model, server):
    want = model.generate("The cat", max_tokens=6)
    body = {"prompt": "The cat", "max_tokens": 6, "stream": True}
    with httpx.stream("POST", url(server, "/v1/completions"), json=body, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == want
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_json_schema_output_validates(model, client):
    rf = {"type": "json_schema", "json_schema": {"name": "robot", "schema": ROBOT}}
    want = model.chat([{"role": "user", "content": "Go"}], response_format=rf, max_tokens=60)
    r = client.chat.completions.create(model="tiny-long", messages=[{"role": "user", "content": "Go"}],
                                       response_format=rf, max_tokens=60)
    assert r.choices[0].message.content == want and r.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(want), ROBOT)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_in_openai_shape(model, client, stream):
    msgs = [{"role": "user", "content": "Drive on"}]
    want = model.chat(msgs, tools=TOOLS, tool_choice="required", max_tokens=60)["tool_calls"][0]["function"]
    r = client.chat.completions.create(model="tiny-long", messages=msgs, tools=TOOLS, tool_choice="required",
                                       max_tokens=60, stream=stream)
    if stream:
        chunks = list(r)
        calls = [c for ch in chunks for c in (ch.choices[0].delta.tool_calls or []) if ch.choices]
        finish = chunks[-1].choices[0].finish_reason
    else:
        calls, finish = r.choices[0].message.tool_calls, r.choices[0].finish_reason
        assert r.choices[0].message.content is None
    assert finish == "tool_calls" and len(calls) == 1
    call = calls[0]
    assert call.type == "function" and re.fullmatch(r"call_[0-9a-f]{24}", call.id)
    assert (call.function.name, call.function.arguments) == (want["name"], want["arguments"])
    jsonschema.validate(json.loads(call.function.arguments), TOOLS[0]["function"]["parameters"])


def test_models_health_tokenize_detokenize(model, server, client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny-long"]
    assert client.models.retrieve("tiny-long").id == "tiny-long"
    assert httpx.get(url(server, "/health")).json() == {"status": "ready", "model": "tiny-long"}
    r = httpx.post(url(server, "/tokenize"), json={"content": "The cat"})
    assert r.json() == {"tokens": model.tokenize("The cat")}
    r = httpx.post(url(server, "/tokenize"), json={"content": "<|im_start|>user", "parse_special": True})
    assert r.json()["tokens"][0] == 1
    r = httpx.post(url(server, "/detokenize"), json={"tokens": model.tokenize("The cat sat")})
    assert r.json() == {"content": "The cat sat"}


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^edge_sdk_{name} (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


def test_metrics_count_requests_and_tokens(model, server, client):
    before = httpx.get(url(server, "/metrics")).text
    client.completions.create(model="tiny-long", prompt="The cat", max_tokens=5)
    client.completions.create(model="tiny-long", prompt="The cat", max_tokens=7)
    after = httpx.get(url(server, "/metrics"))
    assert after.headers["content-type"].startswith("text/plain; version=0.0.4")
    n = len(model.tokenize("The cat"))
    assert _metric(after.text, "completion_tokens_total") - _metric(before, "completion_tokens_total") == 12
    assert _metric(after.text, "prompt_tokens_total") - _metric(before, "prompt_tokens_total") == 2 * n
    assert _metric(after.text, "prompt_tokens_cached_total") - _metric(before, "prompt_tokens_cached_total") >= n - 1
    assert _metric(after.text, "queue_depth") == 0 and _metric(after.text, "requests_running") == 0
    assert _metric(after.text, "decode_tokens_per_second") > 0
    assert 10 << 20 < _metric(after.text, "resident_memory_bytes") < 4 << 30
    count = re.compile(r'^edge_sdk_requests_total\{route="/v1/completions",code="200"\} (\d+)$', re.M)
    assert int(count.search(after.text).group(1)) - int(count.search(before).group(1)) == 2


# -- errors -------------------------------------------------------------------------------------------------
def _error(r: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in r.text
    assert err["type"] == {401: "authentication_error", 503: "server_error"}.get(status, "invalid_request_error")
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    return err["message"]


@pytest.mark.parametrize("body, status, param, says", [
    (b"{not json", 400, None, "not valid JSON"),
    (b"[1, 2]", 400, None, "must be a JSON object"),
    (b"\xff\xfe", 400, None, "not UTF-8"),
    (b'{"messages": "hi"}', 400, "messages", "must be an array"),
    (b'{"messages": []}', 400, "messages", "non-empty"),
    (b'{"messages": [{"role": "robot", "content": "x"}]}', 400, "messages[0].role", "must be one of"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400, "temperature", "a number"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2.5}', 400, "max_tokens", "an integer"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400, "stream", "a boolean"),
    (b'{"messages": [{"role": "user", "content": "x"}], "n": 2}', 400, "n", "one choice"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": -1}', 422, None, "temperature must be"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', 422, None, "max_tokens must be"),
    (b'{"messages": [{"role": "user", "content": "x"}], "top_p": 1.5}', 422, None, "top_p must be"),
    (b'{"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}', 422, "tool_choice", "needs tools"),
    (b'{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", '
     b'"json_schema": {"name": "x", "schema": {"type": "nonsense"}}}}', 422, None, "schema"),
    (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}', 404, "model", "not served here"),
])
def test_bad_chat_requests_get_openai_errors(server, body, status, param, says):
    r = httpx.post(url(server, "/v1/chat/completions"), content=body, headers={"content-type": "application/json"})
    assert says in _error(r, status, param=param)


def test_bad_completion_requests(model, server):
    post = lambda body: httpx.post(url(server, "/v1/completions"), json=body)  # noqa: E731
    _error(post({"prompt": ["a", "b"]}), 400, param="prompt")
    _error(post({"prompt": 3}), 400, param="prompt")
    assert "must be in [0, 306)" in _error(post({"prompt": [5, 99999]}), 422, param="prompt")
    long = "ab " * 3000
    assert "context holds 2048" in _error(post({"prompt": long}), 422, code="context_length_exceeded")
    _error(post({"prompt": "x", "echo": True}), 400, param="echo")
    _error(httpx.get(url(server, "/v1/nothing")), 404, code="not_found")
    _error(httpx.get(url(server, "/v1/completions")), 405)
    _error(httpx.get(url(server, "/v1/models/other")), 404, code="model_not_found")
    _error(httpx.post(url(server, "/detokenize"), json={"tokens": [1, -4]}), 422, param="tokens")
    _error(httpx.post(url(server, "/tokenize"), json={"text": "x"}), 400, param="content")
    assert model.generate("The cat", max_tokens=3)  # the model still answers


def test_the_openai_client_raises_its_own_errors(server, client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny-long", messages=HI, n=3)
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="tiny-long", messages=HI, temperature=-0.5)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=HI)


def test_body_size_limit(model):
    with running(model, max_body_bytes=2000) as s:
        big = {"prompt": "x" * 3000, "max_tokens": 1}
        assert "limit is 2000" in _error(httpx.post(url(s, "/v1/completions"), json=big), 413, code="too_large")

        def chunks():  # no Content-Length: counted while read
            yield b'{"prompt": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}'

        r = httpx.post(url(s, "/v1/completions"), content=chunks())
        assert "larger than the limit" in _error(r, 413, code="too_large")
        assert httpx.post(url(s, "/v1/completions"), json={"prompt": "The", "max_tokens": 2}).status_code == 200


def test_api_key_and_cors(model):
    with running(model, api_key="s3cret", cors="https://kiosk.example") as s:
        c = openai.OpenAI(base_url=url(s, "/v1"), api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            c.models.list()
        _error(httpx.get(url(s, "/v1/models")), 401, code="invalid_api_key")
        _error(httpx.get(url(s, "/metrics")), 401)
        assert httpx.get(url(s, "/health")).status_code == 200  # a supervisor needs no key
        ok = openai.OpenAI(base_url=url(s, "/v1"), api_key="s3cret", max_retries=0)
        assert ok.completions.create(model="tiny-long", prompt="The cat", max_tokens=4).choices[0].text == \
            model.generate("The cat", max_tokens=4)
        pre = httpx.options(url(s, "/v1/chat/completions"), headers={
            "Origin": "https://kiosk.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://kiosk.example"
        r = httpx.get(url(s, "/health"), headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in r.headers


def test_no_cors_headers_by_default(server):
    r = httpx.get(url(server, "/health"), headers={"Origin": "https://kiosk.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = httpx.options(url(server, "/v1/chat/completions"), headers={
        "Origin": "https://kiosk.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers


def test_a_full_queue_answers_503_with_retry_after(model, monkeypatch):
    gate, started = threading.Event(), threading.Event()
    forward = model.backend.forward

    def held(*a, **kw):  # the first generation waits at its first forward call until the test opens the gate
        started.set()
        gate.wait(10)
        return forward(*a, **kw)

    with running(model, queue=0) as s:
        monkeypatch.setattr(model.backend, "forward", held)
        first = {}
        t = threading.Thread(target=lambda: first.update(r=httpx.post(url(s, "/v1/completions"), timeout=30,
                                                                     json={"prompt": "The cat", "max_tokens": 3})))
        t.start()
        assert started.wait(10)
        r = httpx.post(url(s, "/v1/completions"), json={"prompt": "The cat", "max_tokens": 3})
        assert "queue holds 0" in _error(r, 503, code="queue_full")
        assert 1 <= int(r.headers["retry-after"]) <= 60
        c = openai.OpenAI(base_url=url(s, "/v1"), api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            c.completions.create(model="tiny-long", prompt="The cat", max_tokens=3)
        monkeypatch.setattr(model.backend, "forward", forward)
        gate.set()
        t.join(30)
        assert first["r"].status_code == 200
        assert first["r"].json()["choices"][0]["text"] == model.generate("The cat", max_tokens=3)


def test_health_says_loading_until_the_model_is_there(model, tmp_path):
    from edge_sdk.server.run import make_server

    gate = threading.Event()
    server = make_server("tiny-long", host="127.0.0.1", port=0, log_level="error")
    server.loader = lambda: (gate.wait(10), model)[1]
    server.owns_model = False
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    try:
        server.wait_started()
        r = httpx.get(url(server, "/health"))
        assert (r.status_code, r.json()["status"], r.headers["retry-after"]) == (503, "loading", "5")
        r = httpx.post(url(server, "/v1/completions"), json={"prompt": "The cat", "max_tokens": 2})
        _error(r, 503, code="loading")
        gate.set()
        for _ in range(100):
            if httpx.get(url(server, "/health")).status_code == 200:
                break
            threading.Event().wait(0.05)
        r = httpx.post(url(server, "/v1/completions"), json={"prompt": "The cat", "max_tokens": 2})
        assert r.json()["choices"][0]["text"] == model.generate("The cat", max_tokens=2)
    finally:
        server.stop()
        t.join(30)


def test_system_prompt_and_the_kiosk_page(model, tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><title>kiosk</title>")
    (tmp_path / "app.js").write_text("console.log(1)")
    with running(model, system_prompt="Be brief.", static_dir=str(tmp_path)) as s:
        page = httpx.get(url(s, "/"))
        assert page.status_code == 200 and page.text == "<!doctype html><title>kiosk</title>"
        assert page.headers["content-type"].startswith("text/html")
        assert httpx.get(url(s, "/app.js")).text == "console.log(1)"
        _error(httpx.get(url(s, "/missing.css")), 404)
        c = openai.OpenAI(base_url=url(s, "/v1"), api_key="x", max_retries=0)
        r = c.chat.completions.create(model="tiny-long", messages=HI, max_tokens=8)
        with_system = [{"role": "system", "content": "Be brief."}, *HI]
        assert r.choices[0].message.content == model.chat(with_system, max_tokens=8)
        assert r.usage.prompt_tokens == len(model.tokenize(model.chat_prompt(with_system), special=True)) != \
            len(model.tokenize(model.chat_prompt(HI), special=True))
        own = [{"role": "system", "content": "Be long."}, *HI]  # a request's own system message wins
        r = c.chat.completions.create(model="tiny-long", messages=own, max_tokens=8)
        assert r.choices[0].message.content == model.chat(own, max_tokens=8)


def test_serve_is_exported():
    import edge_sdk
    from edge_sdk.server.run import serve

    assert edge_sdk.serve is serve and "serve" in edge_sdk.__all__


def test_exposed_host_without_a_key_is_warned_about(capsys):
    from edge_sdk.server.run import exposure_warning, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert "without an API key" in exposure_warning("0.0.0.0", 8080, None)
    assert exposure_warning("0.0.0.0", 8080, "k") is None and exposure_warning("127.0.0.1", 8080, None) is None


def test_the_command_line_has_the_flags():
    from edge_sdk.cli import build_parser

    p = build_parser()
    a = p.parse_args(["serve", "-m", "m.gguf", "--host", "0.0.0.0", "--port", "9000", "--api-key", "k", "--queue", "3",
                      "--cors", "*", "--board", "rpi5-8gb", "--backend", "numpy"])
    assert (a.model, a.host, a.port, a.api_key, a.queue, a.cors, a.board, a.backend) == \
        ("m.gguf", "0.0.0.0", 9000, "k", 3, "*", "rpi5-8gb", "numpy")
    d = p.parse_args(["serve"])
    assert (d.host, d.port, d.api_key, d.cors) == ("127.0.0.1", 8080, None, None)
