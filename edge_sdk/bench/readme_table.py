"""The README's performance tables, measured in one sitting: speed at 1 and 2 threads (prompt sweep, decode,
decode after a long context, roofline), speed beside busy processes, and peak RSS, each next to llama.cpp.

    python -m edge_sdk.bench.readme_table --peer /path/to/llama.cpp/build/bin/llama-bench \\
        [--backend native,onnx,tflite] [--threads 1,2] [--repeats 5] [--busy 2] [--json out.json]
    python -m edge_sdk.bench.readme_table --from-json out.json      # print the tables again

Every run is `edge-sdk bench` (`backends.run_bench`, `rss.run_rss`) with interleaved rounds; the tables
give medians, ratios as medians of per-round ratios, and the 1-minute load average over each run.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

SWEEP = (16, 256, 512, 1500)
DEPTH = 1500


def _load(r: dict[str, Any]) -> str:
    lo, hi = r["loadavg_range"]
    return f"{lo:.1f}-{hi:.1f}"


def _sweep(row: dict[str, Any], n: int, key: str = "prefill_tok_s") -> Any:
    if n == row.get("prompt_tokens_run"):
        return row[key]
    return next(s[key] for s in row["sweep"] if s["prompt_tokens"] == n)


def speed_table(reports: list[dict[str, Any]]) -> str:
    lengths = sorted({reports[0]["prompt_tokens"], *reports[0]["sweep"]})
    head = ("| threads | | " + " | ".join(f"prefill {n}" for n in lengths) +
            f" | decode | decode after {reports[0]['depth']} (vs after 64) | roofline | load avg |")
    lines = [head, "|---:|---|" + "---:|" * len(lengths) + "---:|---:|---:|---|"]
    for rep in reports:
        peer = rep["peer"]
        for row in rep["results"] + [dict(peer, backend="llama.cpp Q8_0")]:
            row = dict(row, prompt_tokens_run=rep["prompt_tokens"])
            d = row["depth"]
            lines.append(f"| {rep['threads']} | {row['backend']} | " +
                         " | ".join(f"{_sweep(row, n):.0f}" for n in lengths) +
                         f" | {row['decode_tok_s']:.1f} | {d['decode_tok_s']:.1f} ({d['vs_base']:.2f}x) | "
                         f"{row['roofline_fraction'] * 100:.0f}% | {_load(row)} |")
        for row in rep["results"]:
            row = dict(row, prompt_tokens_run=rep["prompt_tokens"])
            vs = [row["vs_peer"]["prefill"] if n == rep["prompt_tokens"] else _sweep(row, n, "vs_peer") for n in lengths]
            lines.append(f"| {rep['threads']} | **{row['backend']} / llama.cpp** | " +
                         " | ".join(f"**{v:.2f}x**" for v in vs) +
                         f" | **{row['vs_peer']['decode']:.2f}x** | **{row['depth']['vs_peer']:.2f}x** | | |")
    return "\n".join(lines)


def bandwidth_note(reports: list[dict[str, Any]]) -> str:
    return "; ".join(f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}: {r['bandwidth_gbps']:.1f} GB/s "
                     f"(from the {r['bandwidth_source']})" for r in reports)


def busy_table(busy: list[dict[str, Any]], idle: list[dict[str, Any]]) -> str:
    by_threads = {r["threads"]: r for r in idle}
    lines = ["| threads | busy processes | | prefill 64 | decode | decode vs idle | load avg |",
             "|---:|---:|---|---:|---:|---:|---|"]
    for rep in busy:
        calm = by_threads.get(rep["threads"])
        pairs = [(r, next((c for c in calm["results"] if c["backend"] == r["backend"]), None) if calm else None)
                 for r in rep["results"]]
        pairs.append((dict(rep["peer"], backend="llama.cpp Q8_0"), dict(calm["peer"]) if calm else None))
        for row, base in pairs:
            kept = f"{row['decode_tok_s'] / base['decode_tok_s']:.2f}x" if base else ""
            lines.append(f"| {rep['threads']} | {rep['busy']} | {row['backend']} | {row['prefill_tok_s']:.0f} | "
                         f"{row['decode_tok_s']:.1f} | {kept} | {_load(row)} |")
        for row in rep["results"]:
            lines.append(f"| {rep['threads']} | {rep['busy']} | **{row['backend']} / llama.cpp** | "
                         f"**{row['vs_peer']['prefill']:.2f}x** | **{row['vs_peer']['decode']:.2f}x** | | |")
    return "\n".join(lines)


def rss_table(rss: dict[str, Any]) -> str:
    return ("| threads | `edge-sdk run` | `llama-cli` Q8_0 | ratio | load avg |\n|---:|---:|---:|---:|---|\n"
            f"| {rss['threads']} | {rss['ours']['peak_rss_bytes'] / 2**20:.0f} MiB | "
            f"{rss['peer']['peak_rss_bytes'] / 2**20:.0f} MiB | {rss['ratio']:.2f}x | {_load(rss)} |")


def render(data: dict[str, Any]) -> str:
    out = [speed_table(data["idle"]), "", "Read bandwidth (the roofline's): " + bandwidth_note(data["idle"])]
    if data.get("busy"):
        out += ["", busy_table(data["busy"], data["idle"])]
    if data.get("rss"):
        out += ["", rss_table(data["rss"])]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", default=None)
    p.add_argument("--peer", default=None, help="llama-bench (llama-cli and llama-quantize next to it)")
    p.add_argument("--backend", default="native")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--busy-threads", default="1,2")
    p.add_argument("--busy", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None, help="write the reports to this file")
    p.add_argument("--from-json", default=None, help="print the tables of reports written before")
    a = p.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            print(render(json.load(f)))
        return 0
    if not a.peer:
        p.error("--peer is required to measure")
    from .backends import run_bench
    from .rss import run_rss

    backends = a.backend.split(",")
    data: dict[str, Any] = {"idle": [], "busy": []}

    def save() -> None:
        if a.json:
            with open(a.json, "w") as f:
                json.dump(data, f, indent=1)

    for t in (int(x) for x in a.threads.split(",")):
        data["idle"].append(run_bench(a.model, backends, t, 64, 32, a.repeats, a.peer, depth=DEPTH, sweep=SWEEP))
        print(f"measured {t} thread(s) idle", file=sys.stderr, flush=True)
        save()
    if a.busy:
        for t in (int(x) for x in a.busy_threads.split(",")):
            data["busy"].append(run_bench(a.model, ["native"], t, 64, 32, a.repeats, a.peer, busy=a.busy))
            print(f"measured {t} thread(s) beside {a.busy} busy processes", file=sys.stderr, flush=True)
            save()
    data["rss"] = run_rss(a.model, a.peer, 1, repeats=3)
    save()
    print(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
