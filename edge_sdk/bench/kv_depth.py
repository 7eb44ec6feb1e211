"""Decode speed of the native core after a long context, per KV cache dtype, side by side.

    python -m edge_sdk.bench.kv_depth /path/to/SmolLM2-135M-Instruct.Q4_1.gguf
        [--kv f32 int8] [--depth 1500] [--shallow 64] [--tokens 32] [--rounds 7] [--threads 1] [--json]

One native core per KV dtype, each holding the same `depth`-token context (random token ids, prefilled
once). Each round times `tokens` greedy decode steps at positions depth.. on every core in turn (the order
rotates from round to round, so drift in the machine's load falls on every dtype alike), and the same at
`shallow` positions; a round's steps overwrite the positions the previous round wrote, so every round
decodes after the same context. Printed: the median tokens/s per dtype and depth over the rounds, their
ratios to the first dtype, and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from ..backends.native.core import NativeCore
from ..importers.gguf_import import import_gguf
from ..model.config import QuantConfig
from ..model.quantize import quantize_weights


def decode_rate(core: NativeCore, pos: int, tokens: int, first: int) -> float:
    """Greedy decode tokens/s of `tokens` steps from position `pos`."""
    tok = first
    t = time.perf_counter()
    for i in range(tokens):
        tok = int(core.forward(np.array([tok]), pos + i, last_only=True).argmax())
    return tokens / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--kv", nargs="+", default=["f32", "int8"])
    ap.add_argument("--depth", type=int, default=1500)
    ap.add_argument("--shallow", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--isa", default="auto")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cfg, fw, _ = import_gguf(args.gguf)
    qw = quantize_weights(cfg, fw, QuantConfig())
    del fw
    ctx = args.depth + args.tokens
    context = np.random.default_rng(0).integers(0, cfg.vocab_size, args.depth)
    cores = {}
    for kv in args.kv:
        core = NativeCore(cfg, n_threads=args.threads, kv_dtype=kv, ctx=ctx, max_tokens=64, isa=args.isa)
        core.load_weights(qw)
        core.forward(context, 0, last_only=True)
        cores[kv] = core
    load_before = os.getloadavg()
    rates: dict[str, dict[int, list[float]]] = {kv: {args.depth: [], args.shallow: []} for kv in args.kv}
    for r in range(args.rounds):
        order = args.kv[r % len(args.kv):] + args.kv[: r % len(args.kv)]
        for kv in order:
            for pos in (args.shallow, args.depth):
                rates[kv][pos].append(decode_rate(cores[kv], pos, args.tokens, int(context[pos - 1])))
    load_after = os.getloadavg()
    med = {kv: {pos: statistics.median(v) for pos, v in d.items()} for kv, d in rates.items()}
    base = args.kv[0]
    isa = next(iter(cores.values())).isa
    for core in cores.values():
        core.close()
    if args.json:
        print(json.dumps({"isa": isa, "threads": args.threads, "rounds": args.rounds, "tokens": args.tokens,
                          "median_tok_s": {kv: {str(p): v for p, v in d.items()} for kv, d in med.items()},
                          "runs_tok_s": {kv: {str(p): v for p, v in d.items()} for kv, d in rates.items()},
                          "loadavg_before": load_before, "loadavg_after": load_after}))
        return
    print(f"isa {isa}, {args.threads} thread(s), {args.rounds} interleaved rounds of {args.tokens} decode steps; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    for kv in args.kv:
        d, s = med[kv][args.depth], med[kv][args.shallow]
        print(f"  KV {kv:>4}: after {args.shallow:>5} tokens {s:7.2f} tok/s, after {args.depth} {d:7.2f} tok/s "
              f"({d / s:.3f} of shallow); vs {base}: {s / med[base][args.shallow]:.3f}x shallow, "
              f"{d / med[base][args.depth]:.3f}x deep")


if __name__ == "__main__":
    main()
