#!/usr/bin/env python3
"""Benchmark the HTTP server: time to first token and tokens/s with and without the prompt cache, and the
resident memory the server adds over a bare loaded model.

Time to first token (TTFT): two `edge-sdk serve` processes of the same model, one with prompt-cache slots
(`--slots 2` unless `--cache-args` says otherwise) and one without (`--slots 0`). Both get the same requests
in the same order: a kiosk question behind the shared system prompt of `--system-tokens` tokens, then an
unrelated request (another system prompt), which takes over the live KV cache. So the next kiosk question can
reuse the system prompt only from a slot: with slots it is a hit, without it the whole prompt is computed
again. Each server first gets one kiosk request to warm up, then `--requests` rounds, interleaved between the
two servers so both see the same minutes of a shared machine. TTFT is the time from sending a streamed chat
request to its first piece of content; tok/s is (completion tokens - 1) / (time of the last piece - time of
the first); both are measured on the kiosk requests. p50 and p95 are nearest-rank percentiles.

Memory (`--rss`): one process loads the model (without prompt-cache slots) and generates once (its VmRSS:
the bare model), then imports the server, serves `--requests` requests (streamed and whole) from a client in
another process, and reports its VmRSS again (`/metrics`).

Usage::

    python tools/bench_server.py                       # smollm2-135m, 300-token system prompt, 20 requests
    python tools/bench_server.py -m model.gguf --threads 2 --requests 20 --json
    python tools/bench_server.py --rss
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from typing import Any

import httpx

SERVING_LINE = re.compile(r"\[serving \S+ on http://127\.0\.0\.1:(\d+) ")
SYSTEM_TEXT = ("You are the guide of the city museum, standing at its entrance on a touch screen. Visitors ask "
               "about the halls, the opening hours, tickets, the cafe, the garden and the exhibitions. The museum "
               "opens at nine and closes at six, on Mondays it is closed. The first hall shows old clocks, the "
               "second hall shows maps of the sea, the third hall holds paintings of the harbour. The cafe is on "
               "the ground floor next to the shop. Tickets cost eight euros, children enter free. Answer in one "
               "or two short sentences, kindly, and never invent rooms that do not exist. ")
QUESTIONS = ["When do you open?", "Where is the cafe?", "How much is a ticket?", "What is in the first hall?",
             "Are you open on Monday?", "Do children pay?", "Where are the maps?", "Is there a garden?",
             "What time do you close?", "Where is the shop?", "What is in the third hall?", "Can I buy a ticket here?",
             "Which hall has clocks?", "Is the cafe open?", "What can I see today?", "Where are the paintings?",
             "How long should a visit take?", "Is there a toilet?", "Can I take photos?", "Where do I start?"]


# -- servers ------------------------------------------------------------------------------------------------
def start_server(args: argparse.Namespace, extra: list[str]) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "edge_sdk", "serve", "-m", args.model, "--port", "0", "--log-level", "warning",
           "--queue", "2", *extra]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.backend:
        cmd += ["--backend", args.backend]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.stderr is not None
    for line in proc.stderr:
        m = SERVING_LINE.search(line)
        if m:
            base = f"http://127.0.0.1:{m.group(1)}"
            break
    else:
        raise SystemExit(f"the server did not start: {' '.join(cmd)}")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=5).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not get ready within 300 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def system_prompt(base: str, tokens: int) -> str:
    """SYSTEM_TEXT repeated and cut to `tokens` tokens (counted by the server's own tokenizer)."""
    text = SYSTEM_TEXT * (tokens // 60 + 2)
    ids = httpx.post(base + "/tokenize", json={"content": text}).json()["tokens"][:tokens]
    return httpx.post(base + "/detokenize", json={"tokens": ids}).json()["content"]


# -- one streamed request -----------------------------------------------------------------------------------
def timed_chat(client: httpx.Client, base: str, system: str, question: str, max_tokens: int) -> dict[str, Any]:
    body = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    first = last = None
    usage: dict[str, Any] = {}
    with client.stream("POST", base + "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise SystemExit(f"the server failed: {chunk['error']}")
            if chunk.get("usage"):
                usage = chunk["usage"]
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                now = time.perf_counter()
                first = now if first is None else first
                last = now
    if first is None:
        raise SystemExit("a reply had no content")
    n = usage.get("completion_tokens", 0)
    return {"ttft_s": first - t0, "tok_s": (n - 1) / (last - first) if n > 1 and last > first else float("nan"),
            "completion_tokens": n, "prompt_tokens": usage.get("prompt_tokens", 0),
            "cached_tokens": usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)}


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    v = sorted(x for x in values if not math.isnan(x))
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)] if v else float("nan")


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ttft = [r["ttft_s"] for r in rows]
    tok_s = [r["tok_s"] for r in rows]
    return {"ttft_p50_s": pct(ttft, 50), "ttft_p95_s": pct(ttft, 95), "tok_s_p50": pct(tok_s, 50),
            "tok_s_p95": pct(tok_s, 95), "prompt_tokens_mean": sum(r["prompt_tokens"] for r in rows) / len(rows),
            "cached_tokens_mean": sum(r["cached_tokens"] for r in rows) / len(rows), "requests": len(rows)}


def bench_ttft(args: argparse.Namespace) -> dict[str, Any]:
    a, base_a = start_server(args, list(args.cache_args) or ["--slots", "2"])
    b, base_b = start_server(args, list(args.nocache_args) or ["--slots", "0"])
    try:
        system = system_prompt(base_a, args.system_tokens)
        rows: dict[str, list[dict[str, Any]]] = {"with cache": [], "without cache": []}
        with httpx.Client(timeout=600) as c:
            for base in (base_a, base_b):
                timed_chat(c, base, system, "Hello!", args.max_tokens)  # warm-up
            for i in range(args.requests):
                q = QUESTIONS[i % len(QUESTIONS)]
                for mode, base in (("with cache", base_a), ("without cache", base_b)):
                    rows[mode].append(timed_chat(c, base, system, q, args.max_tokens))
                    timed_chat(c, base, f"You are calculator number {i}. Answer with a number.", "2+2?", 4)
    finally:
        stop_server(a)
        stop_server(b)
    out: dict[str, Any] = {mode: summary(r) for mode, r in rows.items()}
    out["ttft_p50_ratio"] = out["with cache"]["ttft_p50_s"] / out["without cache"]["ttft_p50_s"]
    out["ttft_p95_ratio"] = out["with cache"]["ttft_p95_s"] / out["without cache"]["ttft_p95_s"]
    return out


# -- memory -------------------------------------------------------------------------------------------------
RSS_WORKER = r"""
import json, sys, threading
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
import edge_sdk
kw = json.loads(sys.argv[2])
model = edge_sdk.load(sys.argv[1], **kw)
model.generate("Hello", max_tokens=16)
bare = rss()
from edge_sdk.server.run import make_server
imported = rss()
server = make_server(model, port=0, log_level="warning")
threading.Thread(target=server.run, daemon=True).start()
server.wait_started()
print(json.dumps({"bare_bytes": bare, "imported_bytes": imported, "port": server.port}), flush=True)
sys.stdin.readline()
"""


def bench_rss(args: argparse.Namespace) -> dict[str, Any]:
    # no prompt-cache slots: their rows become resident as requests fill them, which is the cache's memory
    # (edge-sdk plan --slots counts it), not the server's
    kw = {"slots": 0, **{k: v for k, v in (("threads", args.threads), ("backend", args.backend)) if v}}
    proc = subprocess.Popen([sys.executable, "-c", RSS_WORKER, args.model, json.dumps(kw)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        info = json.loads(proc.stdout.readline())
        base = f"http://127.0.0.1:{info['port']}"
        with httpx.Client(timeout=300) as c:
            for i in range(args.requests):
                body = {"messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                        "max_tokens": args.max_tokens, "stream": i % 2 == 0}
                r = c.post(base + "/v1/chat/completions", json=body)
                r.raise_for_status()
            text = c.get(base + "/metrics").text
        served = int(float(re.search(r"^edge_sdk_resident_memory_bytes (\S+)$", text, re.M).group(1)))
        proc.stdin.write("\n")
        proc.stdin.flush()
    finally:
        proc.wait(30)
    mib = 1 << 20
    return {"bare_model_mib": info["bare_bytes"] / mib, "after_import_mib": info["imported_bytes"] / mib,
            "serving_mib": served / mib, "added_mib": (served - info["bare_bytes"]) / mib,
            "requests": args.requests}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", default="smollm2-135m")
    p.add_argument("--backend", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--system-tokens", type=int, default=300, help="tokens of the shared system prompt (default 300)")
    p.add_argument("--max-tokens", type=int, default=16, help="tokens generated per request (default 16)")
    p.add_argument("--cache-args", nargs="*", default=[],
                   help="`edge-sdk serve` flags of the server with the cache (default: --slots 2)")
    p.add_argument("--nocache-args", nargs="*", default=[],
                   help="`edge-sdk serve` flags of the server without it (default: --slots 0)")
    p.add_argument("--rss", action="store_true", help="measure the memory the server adds instead")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.rss:
        out = bench_rss(args)
        if not args.json:
            print(f"bare model {out['bare_model_mib']:.1f} MiB, after importing the server "
                  f"{out['after_import_mib']:.1f} MiB, serving after {out['requests']} requests "
                  f"{out['serving_mib']:.1f} MiB: the server adds {out['added_mib']:.1f} MiB")
    else:
        out = bench_ttft(args)
        if not args.json:
            print(f"{args.model}, {args.system_tokens}-token system prompt, {args.requests} streamed kiosk requests "
                  f"per server ({args.max_tokens} tokens each), each followed by an unrelated request")
            print("| server | TTFT p50 ms | TTFT p95 ms | tok/s p50 | tok/s p95 | prompt tokens | cached tokens |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for mode in ("with cache", "without cache"):
                s = out[mode]
                print(f"| {mode} | {s['ttft_p50_s'] * 1e3:.1f} | {s['ttft_p95_s'] * 1e3:.1f} | {s['tok_s_p50']:.1f} | "
                      f"{s['tok_s_p95']:.1f} | {s['prompt_tokens_mean']:.0f} | {s['cached_tokens_mean']:.0f} |")
            print(f"TTFT with / without: p50 {out['ttft_p50_ratio']:.3f}, p95 {out['ttft_p95_ratio']:.3f}")
    if args.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
