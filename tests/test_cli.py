"""The `edge-sdk` command line on a tiny model: stdout carries only the product."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import edge_sdk
from edge_sdk.errors import ContextOverflowError
from test_generate import GREEDY_IDS

TINY_PPL_TOKENS = 129  # 130 tokens of "The cat sat on the mat. " x 12, in windows of 64
TINY_FLOAT_PPL = 414.2311  # a random model: close to the vocabulary size (306) and above it


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run the CLI; output is decoded as UTF-8 without newline translation (completions may hold '\r')."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    r = subprocess.run([sys.executable, "-m", "edge_sdk", *args], capture_output=True, env=env, timeout=300,
                       input=None if stdin is None else stdin.encode())
    r.stdout, r.stderr = r.stdout.decode("utf-8"), r.stderr.decode("utf-8")
    return r


def test_run_streams_only_the_completion(tiny_gguf):
    r = cli("run", "-m", tiny_gguf, "--backend", "numpy", "--max-tokens", "10", "--stats", "--raw", "The cat")
    assert r.returncode == 0, r.stderr
    with edge_sdk.load(tiny_gguf, backend="numpy") as m:
        expected = m.detokenize(GREEDY_IDS)
    assert r.stdout == expected + "\n"
    assert "generated 10 at" in r.stderr and "peak RSS" in r.stderr


def test_run_errors_are_clear(tmp_path, tiny_gguf):
    r = cli("run", "-m", str(tmp_path / "nope.gguf"), "hi")
    assert r.returncode == 1 and r.stdout == ""
    assert "no such file or directory, and not a registered model name" in r.stderr
    r = cli("run", "-m", tiny_gguf, "--backend", "numpy", "--ctx", "4", "--raw", "Once upon a time")
    assert r.returncode == 1
    assert "the prompt has 13 tokens but the context holds 4" in r.stderr


def test_info_json(tiny_gguf):
    r = cli("info", tiny_gguf, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["kind"] == "gguf" and d["config"]["n_layers"] == 2 and d["config"]["vocab_size"] == 306
    assert d["tensor_types"] == {"F32": 21}
    assert d["tokenizer_pre"] == "smollm"


def test_ppl_json(tmp_path, tiny_gguf):
    text = tmp_path / "t.txt"
    text.write_text("The cat sat on the mat. " * 12)
    r = cli("ppl", "-m", tiny_gguf, str(text), "--json", "--window", "64")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) >= {"perplexity", "tokens", "top1_agreement"}
    assert d["tokens"] == TINY_PPL_TOKENS
    assert abs(d["float_perplexity"] - TINY_FLOAT_PPL) < 1e-3 * TINY_FLOAT_PPL
    assert 0.5 < d["top1_agreement"] <= 1.0
    r = cli("ppl", "-m", tiny_gguf, str(text), "--json", "--float", "--window", "64")
    assert json.loads(r.stdout)["top1_agreement"] is None


def test_chat_reads_turns_from_stdin(tiny_gguf):
    r = cli("chat", "-m", tiny_gguf, "--backend", "numpy", "--max-tokens", "4", stdin="hi\nagain\n/exit\n")
    assert r.returncode == 0, r.stderr
    with edge_sdk.load(tiny_gguf, backend="numpy") as m:
        first = m.chat([{"role": "user", "content": "hi"}], max_tokens=4)
        second = m.chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": first},
                         {"role": "user", "content": "again"}], max_tokens=4)
    assert r.stdout == f"> {first}\n> {second}\n> "


def test_bad_arguments_are_errors_not_tracebacks(tiny_gguf):
    for args, message in ((["run", "-m", tiny_gguf, "--backend", "numpy", ""], "the prompt is empty"),
                          (["run", "-m", tiny_gguf, "--backend", "numpy", "--ctx", "0", "hi"], "ctx must be an int >= 1"),
                          (["run", "-m", tiny_gguf, "--backend", "numpy", "--threads", "0", "hi"], "threads must be an int >= 1"),
                          (["run", "-m", tiny_gguf, "--backend", "numpy", "--group-size", "7", "hi"], "group_size")):
        r = cli(*args)
        assert r.returncode == 1 and r.stdout == "", args
        assert r.stderr.startswith("edge-sdk: error: ") and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_chat_forgets_the_oldest_turns_when_the_context_is_full(tiny_gguf):
    """ctx 100 holds the default system prompt and one short exchange: each new turn pushes the last one out."""
    r = cli("chat", "-m", tiny_gguf, "--backend", "numpy", "--ctx", "100", "--max-tokens", "4",
            stdin="hi\nagain\nthird one\n/exit\n")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("the oldest turn was forgotten") == 2
    with edge_sdk.load(tiny_gguf, backend="numpy", ctx=100) as m:
        replies = [m.chat([{"role": "user", "content": turn}], max_tokens=4) for turn in ("hi", "again", "third one")]
        with pytest.raises(ContextOverflowError):
            m.chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": replies[0]},
                    {"role": "user", "content": "again"}], max_tokens=4)
    assert r.stdout == "".join(f"> {reply}\n" for reply in replies) + "> "
