"""Peak resident memory of a whole generation: `edge-sdk run` beside `llama-cli` on the Q8_0 file.

Both are started the same way, as the child of a small launcher (`python -c LAUNCHER`) that waits for it and
reads `getrusage(RUSAGE_CHILDREN).ru_maxrss`, what `/usr/bin/time -v` prints as "Maximum resident set
size". The launcher matters: Linux keeps, in a process's peak, the peak of the address space it replaced at
exec, so a child started directly by a large process (this benchmark holds a 256 MiB bandwidth array)
would report at least that. The launcher is small; its own floor (the figure for `true`) is reported too.

Both generate `gen_tokens` tokens (64; the greedy story after "Once upon a time" does not end sooner) after
the same raw prompt, in a context of `ctx` (512), with the same threads, in rounds that alternate the two;
the figures are medians and the ratio is the median of the per-round ratios.

Example::

    report = run_rss("smollm2-135m.gguf", peer="/path/llama-bench")
    report["ours"]["peak_rss_bytes"], report["peer"]["peak_rss_bytes"], report["ratio"]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from typing import Any, Sequence

from ..errors import BackendError, InvalidArgumentError, ModelFileError
from .busy import load_range, measured

LAUNCHER = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
print(json.dumps({"rc": proc.returncode, "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "stderr": proc.stderr.decode(errors="replace")[-4000:]}))
"""

PROMPT = "Once upon a time"
_OURS_TOKENS = re.compile(r"generated (\d+) at")
_PEER_TOKENS = re.compile(r"(?<!prompt )eval time =\s*[\d.]+ ms /\s*(\d+) runs")


def child_peak_rss(cmd: Sequence[str], timeout_s: float = 600) -> dict[str, Any]:
    """Peak RSS (bytes) of `cmd` run to its end as the launcher's child; its stderr's tail is kept."""
    try:
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, *map(str, cmd)], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise BackendError(f"{cmd[0]} did not finish within {timeout_s:.0f} s") from e
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as e:
        raise BackendError(f"the memory launcher failed: {proc.stderr.strip()[-800:]}") from e
    if out["rc"] != 0:
        raise BackendError(f"{cmd[0]} failed ({out['rc']}): {out['stderr'].strip()[-800:]}")
    return {"peak_rss_bytes": out["maxrss_kib"] * 1024, "stderr": out["stderr"]}


def ours_command(package: str, threads: int, gen_tokens: int, ctx: int) -> list[str]:
    return [sys.executable, "-m", "edge_sdk", "run", "-m", package, "--raw", "--stats", "--temperature", "0",
            "--max-tokens", str(gen_tokens), "--ctx", str(ctx), "--threads", str(threads), PROMPT]


def peer_command(cli: str, q8: str, threads: int, gen_tokens: int, ctx: int) -> list[str]:
    return [cli, "-m", q8, "-t", str(threads), "-c", str(ctx), "-n", str(gen_tokens), "-p", PROMPT, "-no-cnv",
            "--temp", "0", "-s", "0"]


def _generated(pattern: re.Pattern, text: str) -> int | None:
    m = pattern.search(text)
    return int(m[1]) if m else None


def run_rss(model: str | None = None, peer: str | None = None, threads: int | None = None, repeats: int = 3,
            gen_tokens: int = 64, ctx: int = 512, peer_cli: str | None = None,
            peer_quantize: str | None = None) -> dict[str, Any]:
    """Peak RSS of `edge-sdk run` on the model's package and, with `peer` (llama-bench, for finding llama-cli
    and llama-quantize next to it), of `llama-cli` on its Q8_0 copy; `repeats` alternating rounds."""
    from ..export.describe import describe
    from ..settings import MAX_THREADS, check_count
    from .backends import prepare_package
    from .peer import find_cli, find_quantize, q8_0_copy

    threads = check_count("threads", threads, MAX_THREADS) or os.cpu_count() or 1
    if repeats < 1 or gen_tokens < 1 or ctx <= gen_tokens:
        raise InvalidArgumentError("repeats and gen_tokens must be >= 1 and ctx larger than gen_tokens")
    info = describe(model)
    cli = q8 = None
    if peer:
        if info["kind"] != "gguf":
            raise ModelFileError(f"the llama.cpp comparison needs a .gguf model, got a {info['kind']} ({info['path']})")
        if shutil.which(str(peer)) is None:
            raise BackendError(f"{peer}: llama-bench not found or not executable")
        cli = str(find_cli(peer, peer_cli))
        q8 = str(q8_0_copy(info["path"], find_quantize(peer, peer_quantize)))
    package = str(prepare_package(model, info))
    players = {"ours": ours_command(package, threads, gen_tokens, ctx)}
    if cli:
        players["peer"] = peer_command(cli, q8, threads, gen_tokens, ctx)
    floor = child_peak_rss(["true"])["peak_rss_bytes"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in players}
    names = list(players)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            out = measured(lambda: child_peak_rss(players[name]))
            # llama-cli's eval runs: every token but the first, which comes from the prompt's logits
            n = _generated(_OURS_TOKENS if name == "ours" else _PEER_TOKENS, out.pop("stderr"))
            out["generated_tokens"] = n + 1 if n is not None and name == "peer" else n
            runs[name].append(out)
    report: dict[str, Any] = {"model": str(info["path"]), "package": package, "threads": threads, "repeats": repeats,
                              "gen_tokens": gen_tokens, "ctx": ctx, "prompt": PROMPT, "launcher_floor_bytes": floor,
                              "loadavg_range": load_range([m for rs in runs.values() for m in rs])}
    for name, rs in runs.items():
        peaks = [m["peak_rss_bytes"] for m in rs]
        report[name] = {"command": " ".join(players[name]), "peak_rss_bytes": statistics.median(peaks),
                        "peak_rss_runs": peaks, "generated_tokens": rs[0]["generated_tokens"],
                        "loadavg_range": load_range(rs)}
    if "peer" in report:
        report["ratio"] = statistics.median(o / p for o, p in zip(report["ours"]["peak_rss_runs"],
                                                                  report["peer"]["peak_rss_runs"]))
    return report
