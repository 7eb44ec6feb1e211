"""Backends next to llama.cpp at several thread counts, and the ONNX decode step against the cache size.

Runs `edge_sdk.bench.backends.run_bench` once per thread count (each backend in its own
process, llama.cpp's llama-bench on the Q8_0 copy when --peer is given) and
prints one Markdown table. `--ctx-sweep` adds the ONNX backend's decode step
time at the same positions for several context lengths: with the cache
updated in place it must not grow with ctx.

Example::

    python -m edge_sdk.bench.sweep -m model.gguf --backend onnx,native --threads 1,2 \\
        --peer /path/to/llama.cpp/build/bin/llama-bench --ctx-sweep 256,2048,8192
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np


def ctx_sweep(package: str, ctxs: list[int], threads: int, start: int = 64, steps: int = 32,
              rounds: int = 5) -> dict[int, float]:
    """Median ONNX decode step (ms) at positions start..start+steps-1 for each context length.

    The backends run in turns, round after round, so that a busy machine slows them alike.
    """
    from edge_sdk.backends.onnx_backend import OnnxBackend

    backends = {ctx: OnnxBackend(package, ctx=ctx, threads=threads) for ctx in ctxs}
    times: dict[int, list[float]] = {ctx: [] for ctx in ctxs}
    for be in backends.values():
        be.forward(np.arange(100, 100 + start), 0, last_only=True)
    per_round = max(steps // rounds, 1)
    for r in range(rounds):
        for ctx, be in backends.items():
            for i in range(per_round):
                t = time.perf_counter()
                be.forward(np.array([7]), start + r * per_round + i, last_only=True)
                times[ctx].append(time.perf_counter() - t)
    for be in backends.values():
        be.close()
    return {ctx: statistics.median(t) * 1e3 for ctx, t in times.items()}


def main() -> int:
    from edge_sdk.export.describe import describe
    from edge_sdk.bench.backends import prepare_package, run_bench

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", default=None)
    p.add_argument("--backend", default="onnx,native")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--gen-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peer", default=None)
    p.add_argument("--ctx-sweep", default="", help="comma-separated context lengths for the ONNX decode-step sweep")
    p.add_argument("--json", default=None, help="also write all reports to this file")
    a = p.parse_args()
    backends = a.backend.split(",")
    reports = []
    print("| threads | backend | prefill tok/s | decode tok/s | roofline | peak RSS MiB | vs llama.cpp (prefill, decode) |")
    print("|---|---|---|---|---|---|---|")
    for threads in (int(t) for t in a.threads.split(",")):
        r = run_bench(a.model, backends, threads, a.prompt_tokens, a.gen_tokens, a.repeats, a.peer)
        reports.append(r)
        for x in r["results"]:
            vs = f"{x['vs_peer']['prefill']:.2f}x, {x['vs_peer']['decode']:.2f}x" if "vs_peer" in x else "-"
            roof = f"{x['roofline_fraction'] * 100:.0f}%" if x.get("roofline_fraction") else "-"
            print(f"| {threads} | {x['backend']} | {x['prefill_tok_s']:.1f} | {x['decode_tok_s']:.1f} | {roof} | "
                  f"{x['peak_rss_bytes'] / 2**20:.0f} | {vs} |")
        if "peer" in r:
            print(f"| {threads} | llama.cpp Q8_0 | {r['peer']['prefill_tok_s']:.1f} | {r['peer']['decode_tok_s']:.1f} "
                  f"| | | |")
        print(f"read bandwidth at {threads} threads: {r['bandwidth_gbps']:.1f} GB/s", file=sys.stderr)
    if a.ctx_sweep:
        package = str(prepare_package(a.model, describe(a.model)))
        sweep = ctx_sweep(package, [int(c) for c in a.ctx_sweep.split(",")], threads=1)
        print("\nONNX decode step at positions 64..95 (1 thread, backends in turns): " +
              ", ".join(f"ctx {c}: {ms:.2f} ms" for c, ms in sweep.items()))
        reports.append({"ctx_sweep_ms": sweep})
    if a.json:
        with open(a.json, "w") as f:
            json.dump(reports, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
