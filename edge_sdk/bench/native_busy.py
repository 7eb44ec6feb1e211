"""Decode and prefill speed of native libraries on a machine with other busy processes.

    python -m edge_sdk.bench.native_busy MODEL.gguf --lib before=/path/old/libedge_sdk.so \\
        --lib after=native/build/host/libedge_sdk.so [--threads 1 2] [--hogs 0 1] [--rounds 2]

For each round, for each hog count, it starts that many CPU-bound
`python -c "while True: pass"` processes, runs `edge_sdk.bench.native_core` once per
library (EDGE_SDK_NATIVE_LIB selects it, so both run the same Python code),
then kills the hogs. Runs of the libraries alternate, so a change in the
machine's other load hits both alike. The table keeps the best decode and
prefill rate of each (library, threads, hogs) over the rounds and gives each
library's decode rate as a ratio to the first one.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

LINE = re.compile(r"threads (\d+) isa \S+(?: spin \d+ us)?: prefill pp64\s+([\d.]+) tok/s.*decode tg64\s+([\d.]+) tok/s")


def run_model(gguf: str, lib: Path, threads: list[int], reps: int) -> dict[int, tuple[float, float]]:
    """{threads: (prefill tok/s, decode tok/s)} from one native_core run on library `lib`."""
    env = dict(os.environ, EDGE_SDK_NATIVE_LIB=str(lib))
    cmd = [sys.executable, "-m", "edge_sdk.bench.native_core", gguf, "--reps", str(reps),
           "--threads", *map(str, threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"native_core failed with {lib}:\n{out.stderr}")
    rates = {int(m[1]): (float(m[2]), float(m[3])) for m in LINE.finditer(out.stdout)}
    if sorted(rates) != sorted(threads):
        raise SystemExit(f"unexpected native_core output:\n{out.stdout}")
    return rates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--lib", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--hogs", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    libs: dict[str, Path] = {}
    for spec in args.lib:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"--lib wants NAME=PATH to an existing library, got {spec!r}")
        libs[name] = Path(path).resolve()
    best: dict[tuple[str, int, int], list[float]] = {}
    for rnd in range(args.rounds):
        for hogs in args.hogs:
            procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
            try:
                for name, lib in libs.items():
                    for nt, (pp, tg) in run_model(args.gguf, lib, args.threads, args.reps).items():
                        b = best.setdefault((name, nt, hogs), [0.0, 0.0])
                        b[0], b[1] = max(b[0], pp), max(b[1], tg)
                        print(f"round {rnd} hogs {hogs} {name:>8} threads {nt}: pp64 {pp:7.1f}  tg64 {tg:6.1f} tok/s",
                              flush=True)
            finally:
                for p in procs:
                    p.kill()
                    p.wait()
    first = next(iter(libs))
    print(f"\n{'hogs':>4} {'threads':>7} {'library':>8} {'pp64 tok/s':>11} {'tg64 tok/s':>11} {'tg vs ' + first:>12}")
    for hogs in args.hogs:
        for nt in args.threads:
            for name in libs:
                pp, tg = best[(name, nt, hogs)]
                ratio = tg / best[(first, nt, hogs)][1]
                print(f"{hogs:>4} {nt:>7} {name:>8} {pp:>11.1f} {tg:>11.1f} {ratio:>11.2f}x")


if __name__ == "__main__":
    main()
