"""Decode and prefill speed of the native core on SmolLM2-135M-Instruct (int8, act_block 32).

    python -m edge_sdk.bench.native_core /path/to/SmolLM2-135M-Instruct.Q4_1.gguf [--threads 1 2]
        [--spin-us 0 20]    # pool spin before blocking (EDGE_SDK_POOL_SPIN_US), one row per value

Decode: 64 single-token steps after an 8-token prompt (tokens/s, best of 3).
Prefill: one 64-token prompt (tokens/s, best of 3). Compare with llama.cpp's
llama-bench -p 64 -n 64 on the same machine (work/shared/notes/peers.md).
On a shared machine the wall-clock rate depends on what else runs; the
"per CPU-second" rate (process CPU time, meaningful for one thread) does not.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from ..backends.native.core import NativeCore
from ..importers.gguf_import import import_gguf
from ..model.config import QuantConfig
from ..model.quantize import quantize_weights


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--kv", default="f16")
    ap.add_argument("--isa", default="auto")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--spin-us", type=int, nargs="+", default=[None])
    args = ap.parse_args()
    cfg, fw, _ = import_gguf(args.gguf)
    qw = quantize_weights(cfg, fw, QuantConfig())
    del fw
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, cfg.vocab_size, 64)
    for spin, nt in [(s, t) for s in args.spin_us for t in args.threads]:
        if spin is not None:
            os.environ["EDGE_SDK_POOL_SPIN_US"] = str(spin)  # read when the context is created
        core = NativeCore(cfg, n_threads=nt, kv_dtype=args.kv, ctx=256, max_tokens=64, isa=args.isa)
        core.load_weights(qw)
        best_pp = best_tg = cpu_pp = cpu_tg = 0.0
        for _ in range(args.reps):
            t, c = time.perf_counter(), time.process_time()
            core.forward(prompt, 0, last_only=True)
            best_pp = max(best_pp, 64 / (time.perf_counter() - t))
            cpu_pp = max(cpu_pp, 64 / (time.process_time() - c))
            logits = core.forward(prompt[:8], 0, last_only=True)
            tok = int(logits.argmax())
            t, c = time.perf_counter(), time.process_time()
            for i in range(64):
                tok = int(core.forward(np.array([tok]), 8 + i, last_only=True).argmax())
            best_tg = max(best_tg, 64 / (time.perf_counter() - t))
            cpu_tg = max(cpu_tg, 64 / (time.process_time() - c))
        spun = "" if spin is None else f" spin {spin} us"
        print(f"threads {nt} isa {core.isa}{spun}: prefill pp64 {best_pp:7.1f} tok/s ({cpu_pp:.1f} per CPU-s)   "
              f"decode tg64 {best_tg:7.1f} tok/s ({cpu_tg:.1f} per CPU-s)")
        core.close()


if __name__ == "__main__":
    main()
