"""Soak benchmark: thousands of generations in one process, watching its memory.

A board runs the model for days; a leak of a few kilobytes per request ends
that. This loads a model once, warms it up, then runs `--iterations`
generations with a mix of request kinds (plain completions, chat turns,
requests cancelled midway with an Event, requests cut by a `timeout=`, streams
abandoned after their first piece), sampling the process's resident memory
(VmRSS) every `--every` iterations.

It writes one CSV row per sample (iteration, elapsed_s, rss_bytes,
generated_tokens) and prints RSS at the start (after warm-up), at the end,
the maximum, and the least-squares slope of RSS over iterations in bytes per
1000 generations. The exit status is 1 when the fitted growth over the run
(slope x iterations) exceeds `--max-growth-mb`.

Usage::

    python -m edge_sdk.bench.soak                                # default model, 2000 iterations
    python -m edge_sdk.bench.soak -m tiny.gguf --backend numpy --iterations 2000 --csv soak.csv
    python -m edge_sdk.bench.soak --backend native --minutes 5      # as many as fit in 5 minutes
"""

from __future__ import annotations

import argparse
import csv
import gc
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

PROMPTS = (
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "Write a haiku about a robot vacuum.",
    "List three uses of a Raspberry Pi:",
    "def fibonacci(n):",
    "The weather today is",
    "Explain in one sentence why the sky is blue.",
    "A good name for a cat is",
    "Translate to French: good morning",
    "1, 2, 3, 4,",
    "The robot turned left because",
    "Question: what is 12 times 7? Answer:",
)
KINDS = ("generate", "generate", "generate", "generate", "chat", "chat", "cancel", "timeout", "abandon", "generate")


# ---------------------------------------------------------------------------
# Memory samples
# ---------------------------------------------------------------------------


def rss_bytes() -> int:
    """VmRSS of this process from /proc/self/status (Linux)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmRSS line in /proc/self/status")


@dataclass(frozen=True)
class Sample:
    iteration: int  # generations completed after warm-up
    elapsed_s: float
    rss_bytes: int
    generated_tokens: int  # total since warm-up


def slope_per_1000(samples: Sequence[Sample]) -> float:
    """Least-squares slope of RSS over iterations, in bytes per 1000 generations (0 with < 2 samples).

    Example::

        slope_per_1000([Sample(0, 0, 100, 0), Sample(1000, 1, 300, 0)])   # 200.0
    """
    if len(samples) < 2:
        return 0.0
    x = np.array([s.iteration for s in samples], dtype=np.float64)
    y = np.array([s.rss_bytes for s in samples], dtype=np.float64)
    if np.ptp(x) == 0:
        return 0.0
    return float(np.polyfit(x, y, 1)[0] * 1000.0)


# ---------------------------------------------------------------------------
# One request of each kind
# ---------------------------------------------------------------------------


def one_request(model: Any, i: int, rng: np.random.Generator, max_tokens: int, timeout_s: float) -> tuple[str, int]:
    """Run request number `i`; returns (its kind, how the generation ended)."""
    kind = KINDS[i % len(KINDS)]
    prompt = PROMPTS[int(rng.integers(len(PROMPTS)))] + " and" * int(rng.integers(0, 12))
    sampling = dict(max_tokens=int(rng.integers(1, max_tokens + 1)), temperature=float(rng.choice([0.0, 0.7, 1.0])),
                    top_k=int(rng.choice([0, 40])), top_p=float(rng.choice([1.0, 0.9])), seed=i)
    if kind == "generate":
        model.generate(prompt, **sampling)
    elif kind == "chat":
        model.chat([{"role": "user", "content": prompt}], **sampling)
    elif kind == "cancel":
        cancel = threading.Event()
        for n, _ in enumerate(model.stream(prompt, cancel=cancel, **sampling)):
            if n == 1:
                cancel.set()
    elif kind == "timeout":
        model.generate(prompt, timeout=float(rng.uniform(0.0, timeout_s)), **sampling)
    else:  # abandon: the consumer walks away after the first piece
        it = model.stream(prompt, **sampling)
        next(it, None)
        it.close()
    return kind, int(model.last_stats.get("generated_tokens", 0))


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Run many generations in one process and watch its memory.")
    p.add_argument("-m", "--model", default=None, help="registered name (default smollm2-135m), .gguf file, Hugging Face directory or package")
    p.add_argument("--backend", default="auto", choices=("auto", "native", "numpy", "float", "onnx", "tflite"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--group-size", type=int, default=32, help="int8 weight scale per group of G inputs (0: per row)")
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--minutes", type=float, default=None, help="stop after this long even if iterations remain")
    p.add_argument("--max-tokens", type=int, default=16, help="each request draws its max_tokens from 1..this")
    p.add_argument("--warmup", type=int, default=20, help="requests before the first memory sample")
    p.add_argument("--every", type=int, default=50, help="sample RSS every K iterations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", default="soak.csv", help="where to write the samples")
    p.add_argument("--max-growth-mb", type=float, default=5.0, help="fail when the fitted RSS growth over the run exceeds this")
    a = p.parse_args(argv)
    for name in ("iterations", "max_tokens", "every"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if a.warmup < 0:
        p.error("--warmup must be >= 0")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    import edge_sdk

    model = edge_sdk.load(a.model, backend=a.backend, threads=a.threads, group_size=a.group_size)
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    for i in range(a.warmup):
        one_request(model, i, rng, a.max_tokens, 0.05)
    warm_s = (time.perf_counter() - t0) / max(a.warmup, 1)
    timeout_s = max(warm_s, 0.001)  # timeouts drawn from 0..one typical request, so some cut it short
    deadline = None if a.minutes is None else time.perf_counter() + a.minutes * 60
    kinds: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    tokens = 0
    gc.collect()
    start = time.perf_counter()
    samples = [Sample(0, 0.0, rss_bytes(), 0)]
    done = 0
    for i in range(a.iterations):
        if deadline is not None and time.perf_counter() > deadline:
            break
        kind, n = one_request(model, a.warmup + i, rng, a.max_tokens, timeout_s)
        kinds[kind] += 1
        reasons[model.last_stats.get("stop_reason", "")] += 1
        tokens += n
        done = i + 1
        if done % a.every == 0:
            samples.append(Sample(done, time.perf_counter() - start, rss_bytes(), tokens))
    if samples[-1].iteration != done:
        samples.append(Sample(done, time.perf_counter() - start, rss_bytes(), tokens))
    elapsed = time.perf_counter() - start
    info = model.info()
    model.close()

    with open(a.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["iteration", "elapsed_s", "rss_bytes", "generated_tokens"])
        for s in samples:
            w.writerow([s.iteration, f"{s.elapsed_s:.3f}", s.rss_bytes, s.generated_tokens])

    mib = 2**20
    slope = slope_per_1000(samples)
    fitted = slope * done / 1000
    rss = [s.rss_bytes for s in samples]
    print(f"model {info['name']} on {info['backend']}, ctx {info['ctx']}; {done} generations in {elapsed:.1f} s "
          f"({done / elapsed:.1f}/s, {tokens} tokens, {tokens / elapsed:.1f} tok/s)")
    print("kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    print("stop reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
    print(f"RSS start {rss[0] / mib:.2f} MiB, end {rss[-1] / mib:.2f} MiB ({(rss[-1] - rss[0]) / 1024:+.0f} KiB), "
          f"max {max(rss) / mib:.2f} MiB")
    print(f"slope {slope:+.0f} bytes per 1000 generations; fitted growth over the run {fitted / mib:+.3f} MiB "
          f"(limit {a.max_growth_mb:g} MiB); {len(samples)} samples in {a.csv}")
    if fitted > a.max_growth_mb * mib:
        print(f"FAIL: memory grew by {fitted / mib:.2f} MiB over {done} generations", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
