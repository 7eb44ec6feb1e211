"""Check the memory planner's predictions against real runs on this machine.

Three measurements:

* `--bandwidth`: read bandwidth with 1..N threads, each summing products over
  its own 256 MiB float64 array (a STREAM-like read; numpy's dot releases the
  GIL, so threads run in parallel), best of 9 passes as STREAM reports. This
  is what the generic-x86_64 profile records.
* `--storage FILE`: sequential read of FILE with O_DIRECT (page cache bypassed).
* default: for each context, run `edge_sdk.load(model, backend, ctx, threads)`
  and `model.generate(prompt, max_tokens)` in child processes (`--repeat`
  times; best decode speed, highest VmHWM), and print them next to
  `plan_device`'s predicted peak and decode tok/s for the same settings.
  With `--fresh-bandwidth` the best of 9 read passes right before the runs
  gives a second prediction: on a shared machine the profile's figure may not
  hold at the moment of the run.

Usage::

    python -m edge_sdk.bench.plan --bandwidth
    python -m edge_sdk.bench.plan --storage model.gguf
    python -m edge_sdk.bench.plan -m smollm2-135m --board generic-x86_64 --ctx 512 2048 --tokens 64 --fresh-bandwidth
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import statistics
import subprocess
import sys
import threading
import time

ARRAY_BYTES = 256 << 20
RSS_TARGET = 0.10  # predicted peak RSS within 10% of measured
DECODE_TARGET = 0.30  # predicted decode tok/s within 30% of measured


# ---------------------------------------------------------------------------
# Bandwidth and storage
# ---------------------------------------------------------------------------


def read_bandwidth_gbps(threads: int, reps: int = 9, best: bool = False) -> float:
    """Read bandwidth (1e9 bytes/s) of `threads` threads reading their own 256 MiB array:
    the median of `reps` passes, or the best one (STREAM's convention) with `best`."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import numpy as np

    n = ARRAY_BYTES // 8
    arrays = [np.ones(n) for _ in range(threads)]
    rates = []
    for _ in range(reps):
        start = threading.Barrier(threads + 1)

        def work(a: "np.ndarray") -> None:
            start.wait()
            a.dot(a)

        pool = [threading.Thread(target=work, args=(a,)) for a in arrays]
        for t in pool:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in pool:
            t.join()
        rates.append(threads * ARRAY_BYTES / (time.perf_counter() - t0) / 1e9)
    return max(rates) if best else statistics.median(rates)


def storage_read_mbps(path: str, block: int = 4 << 20) -> float:
    """Sequential O_DIRECT read speed of `path`, 1e6 bytes/s."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECT", 0))
    buf = mmap.mmap(-1, block)  # page-aligned, as O_DIRECT requires
    total = 0
    t0 = time.perf_counter()
    try:
        while True:
            n = os.readv(fd, [buf])
            total += n
            if n < block:
                break
    finally:
        os.close(fd)
    return total / (time.perf_counter() - t0) / 1e6


# ---------------------------------------------------------------------------
# A real run in a child process
# ---------------------------------------------------------------------------

CHILD = r"""
import json, re, sys, time
import edge_sdk
args = json.loads(sys.argv[1])
model = edge_sdk.load(args["model"], backend=args["backend"], ctx=args["ctx"], threads=args["threads"],
                      kv_dtype=args["kv"])
model.generate(args["prompt"], max_tokens=4)  # warm-up
model.generate(args["prompt"], max_tokens=args["tokens"], temperature=0.0)
stats = model.last_stats
status = open("/proc/self/status").read()
kib = lambda key: int(re.search(key + r":\s+(\d+)", status).group(1)) * 1024
print(json.dumps({"hwm_bytes": kib("VmHWM"), "rss_bytes": kib("VmRSS"), "decode_tok_s": stats["decode_tok_s"],
                  "generated_tokens": stats["generated_tokens"]}))
"""


def measure_run(model: str, backend: str, ctx: int, threads: int, tokens: int, prompt: str, kv: str) -> dict:
    args = json.dumps({"model": model, "backend": backend, "ctx": ctx, "threads": threads, "tokens": tokens,
                       "prompt": prompt, "kv": kv})
    proc = subprocess.run([sys.executable, "-c", CHILD, args], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"child run failed (ctx {ctx}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def with_bandwidth(board, threads: int, gbps: float):
    """A copy of `board` whose read bandwidth at `threads` threads is `gbps`."""
    from edge_sdk.plan.boards import board_from_dict

    d = board.to_dict()
    table = dict(d.get("mem_bandwidth_by_threads_gbps", {}))
    table[str(threads)] = round(gbps, 2)
    d["mem_bandwidth_by_threads_gbps"] = table
    return board_from_dict(d)


def compare(args: argparse.Namespace) -> int:
    from edge_sdk.plan.boards import load_board
    from edge_sdk.export.describe import model_config
    from edge_sdk.plan.budget import plan_device

    board = load_board(args.board)
    cfg, qcfg = model_config(args.model)
    position = 8 + args.tokens // 2  # a short prompt, then the middle of the generated tokens
    print(f"board {board.id}, model {args.model}, backend {args.backend}, {args.threads} thread(s), {args.tokens} tokens")
    print("| ctx | predicted peak MiB | measured VmHWM MiB | error | predicted decode tok/s | measured tok/s | error |"
          + (" read GB/s now | predicted with it | error |" if args.fresh_bandwidth else ""))
    print("|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if args.fresh_bandwidth else ""))
    ok = True
    for ctx in args.ctx:
        plan = plan_device(cfg, qcfg, board, ctx=ctx, kv_dtype=args.kv, backend=args.backend, threads=args.threads,
                           decode_position=position)
        now = read_bandwidth_gbps(args.threads, reps=9, best=True) if args.fresh_bandwidth else 0.0
        runs = [measure_run(args.model, args.backend, ctx, args.threads, args.tokens, args.prompt, args.kv)
                for _ in range(args.repeat)]
        run = {"hwm_bytes": max(r["hwm_bytes"] for r in runs), "decode_tok_s": max(r["decode_tok_s"] for r in runs)}
        rss_err = plan.peak_bytes / run["hwm_bytes"] - 1
        dec_err = plan.decode_tok_s_est / run["decode_tok_s"] - 1
        row = (f"| {ctx} | {plan.peak_bytes / 2**20:.1f} | {run['hwm_bytes'] / 2**20:.1f} | {rss_err:+.1%} "
               f"| {plan.decode_tok_s_est:.1f} | {run['decode_tok_s']:.1f} | {dec_err:+.1%} |")
        if args.fresh_bandwidth:
            fresh = plan_device(cfg, qcfg, with_bandwidth(board, args.threads, now), ctx=ctx, kv_dtype=args.kv,
                                backend=args.backend, threads=args.threads, decode_position=position)
            fresh_err = fresh.decode_tok_s_est / run["decode_tok_s"] - 1
            row += f" {now:.1f} | {fresh.decode_tok_s_est:.1f} | {fresh_err:+.1%} |"
            dec_err = fresh_err
        ok &= abs(rss_err) <= RSS_TARGET and abs(dec_err) <= DECODE_TARGET
        print(row)
    print(f"targets: RSS within {RSS_TARGET:.0%}, decode within {DECODE_TARGET:.0%}: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bandwidth", action="store_true", help="measure read bandwidth with 1..N threads and exit")
    p.add_argument("--max-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--storage", metavar="FILE", help="measure O_DIRECT sequential read of FILE and exit")
    p.add_argument("-m", "--model", default="smollm2-135m")
    p.add_argument("--board", default="generic-x86_64")
    p.add_argument("--backend", default="native")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--kv", default="f16", choices=["f32", "f16", "int8"])
    p.add_argument("--ctx", type=int, nargs="+", default=[512, 2048])
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--prompt", default="The capital of France is")
    p.add_argument("--repeat", type=int, default=3, help="runs per context; the best decode speed and highest VmHWM count")
    p.add_argument("--fresh-bandwidth", action="store_true",
                   help="also measure read bandwidth right before each run and predict decode with it "
                        "(on a shared machine the profile's figure may not hold at the moment of the run)")
    args = p.parse_args(argv)
    if args.bandwidth:
        best = {str(n): round(read_bandwidth_gbps(n, best=True), 1) for n in range(1, args.max_threads + 1)}
        median = {str(n): round(read_bandwidth_gbps(n), 1) for n in range(1, args.max_threads + 1)}
        print(json.dumps({"mem_bandwidth_by_threads_gbps": best, "median_of_9": median}))
        return 0
    if args.storage:
        print(json.dumps({"storage_read_mbps": round(storage_read_mbps(args.storage), 1)}))
        return 0
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
