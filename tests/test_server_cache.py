"""The server with prompt-cache slots: cached tokens in usage and /metrics, the system prompt computed at
start, greedy output with a hit equal to a cold model's, and slots kept across a restart (--prompt-cache)."""

from __future__ import annotations

import json
import re
import signal

import httpx
import pytest

openai = pytest.importorskip("openai")

import edge_sdk  # noqa: E402
from edge_sdk.generate.prompt_cache import common_prefix  # noqa: E402
from server_harness import running, subprocess_server, url, wait_ready, write_long_tiny_gguf  # noqa: E402

KIOSK = "You are the guide of the museum. Answer briefly."


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return write_long_tiny_gguf(str(tmp_path_factory.mktemp("cache") / "tiny-long.gguf"))


@pytest.fixture(scope="module")
def cold(gguf):
    """The same model without slots: what every answer must equal."""
    with edge_sdk.load(gguf, ctx=2048, kv_dtype="f32", slots=0) as m:
        yield m


def _chat(system: str, question: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def _ids(model, messages) -> list[int]:
    return model.tokenize(model.chat_prompt(messages), special=True)


def _metric(server, name: str) -> int:
    return int(float(re.search(rf"^edge_sdk_{name} (\S+)$", httpx.get(url(server, "/metrics")).text, re.M).group(1)))


def test_a_slot_serves_a_prompt_after_another_one(gguf, cold):
    with edge_sdk.load(gguf, ctx=2048, kv_dtype="f32", slots=2) as model, running(model) as s:
        c = openai.OpenAI(base_url=url(s, "/v1"), api_key="x", max_retries=0)
        first, other, again = _chat(KIOSK, "When do you open?"), _chat("You add numbers.", "1+2"), \
            _chat(KIOSK, "Where is the cafe?")
        for msgs in (first, other):
            c.chat.completions.create(model="tiny-long", messages=msgs, max_tokens=6)
        restored = _metric(s, "prompt_tokens_restored_total")
        r = c.chat.completions.create(model="tiny-long", messages=again, max_tokens=6)
        # the live cache holds the other prompt; a slot still holds the kiosk's: its shared prefix is restored
        shared = common_prefix(_ids(model, first), _ids(model, again))
        assert r.usage.prompt_tokens_details.cached_tokens == shared and shared > 20
        live = common_prefix(_ids(model, other), _ids(model, again))  # kept from the live cache, the rest restored
        assert model.last_stats["restored_tokens"] == shared - live and live < 20
        assert _metric(s, "prompt_tokens_restored_total") - restored == shared - live
        assert r.choices[0].message.content == cold.chat(again, max_tokens=6)
        meta = c.models.list().data[0].model_extra["meta"]
        assert meta["prompt_cache"]["slots"] == 2


def test_the_system_prompt_is_computed_before_the_first_request(gguf, cold):
    with edge_sdk.load(gguf, ctx=2048, kv_dtype="f32", slots=2) as model, running(model, system_prompt=KIOSK) as s:
        c = openai.OpenAI(base_url=url(s, "/v1"), api_key="x", max_retries=0)
        q = [{"role": "user", "content": "Where are the maps?"}]
        r = c.chat.completions.create(model="tiny-long", messages=q, max_tokens=6)
        system_ids = model.tokenize(model.chat_prompt([{"role": "system", "content": KIOSK}],
                                                      add_generation_prompt=False), special=True)
        # the warm-up's rows: the system turn, plus the one token it generated if that token starts the user turn
        assert r.usage.prompt_tokens_details.cached_tokens in (len(system_ids), len(system_ids) + 1)
        assert r.choices[0].message.content == cold.chat(_chat(KIOSK, "Where are the maps?"), max_tokens=6)


@pytest.mark.slow
def test_slots_survive_a_restart(gguf, tmp_path):
    cache = tmp_path / "slots"
    body = {"messages": _chat(KIOSK, "Is there a garden?"), "max_tokens": 8}
    answers = []
    for run in range(2):
        with subprocess_server(gguf, "--prompt-cache", str(cache), "--slots", "2") as (proc, port):
            wait_ready(port)
            r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=30).json()
            answers.append((r["choices"][0]["message"]["content"], r["usage"]))
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        files = sorted(p.name for p in cache.iterdir())
        assert files and all(re.fullmatch(r"slot-\d+\.kvc", f) for f in files), files
    (text0, usage0), (text1, usage1) = answers
    assert usage0["prompt_tokens_details"]["cached_tokens"] == 0
    # the second process read the slot the first one wrote: all of the prompt but its last token
    assert usage1["prompt_tokens_details"]["cached_tokens"] == usage1["prompt_tokens"] - 1
    assert text1 == text0 and json.dumps(usage0["prompt_tokens"]) == json.dumps(usage1["prompt_tokens"])
