"""`edge-sdk bench`: prefill/decode tokens/s, peak RSS, bandwidth roofline, and llama.cpp as a peer."""

from __future__ import annotations

import argparse
import json
import sys


def _roofline(r: dict) -> str:
    if not r.get("roofline_fraction"):
        return ""
    lo, hi = r["roofline_fraction_range"]
    if r.get("roofline_suspect"):
        return (f", decode roofline SUSPECT ({r['roofline_fraction'] * 100:.0f}%: the bandwidth read beside it was "
                "lower than decode achieved; the machine was busy)")
    return f", {r['roofline_fraction'] * 100:.0f}% of the decode roofline ({lo * 100:.0f}-{hi * 100:.0f}% by round)"


def _fmt(r: dict) -> str:
    roof = _roofline(r)
    peer = f"; ours/llama.cpp: prefill {r['vs_peer']['prefill']:.2f}x, decode {r['vs_peer']['decode']:.2f}x" \
        if "vs_peer" in r else ""
    return (f"{r['backend']:>7}: prefill {r['prefill_tok_s']:8.1f} tok/s, decode {r['decode_tok_s']:7.1f} tok/s{roof}, "
            f"peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB, load {r['load_s']:.1f} s{peer}")


def cmd(a: argparse.Namespace) -> int:
    from ..bench.backends import run_bench

    backends = [b for item in (a.backend or ["auto"]) for b in item.split(",") if b]
    schema = None
    if a.json_schema:
        from .common import read_json_file

        schema = read_json_file(a.json_schema, "--json-schema")
    report = run_bench(a.model, backends, a.threads, a.prompt_tokens, a.gen_tokens, a.repeats, a.peer, a.peer_quantize,
                       interleave=False if a.sequential else None, schema=schema)
    if a.json:
        print(json.dumps(report, indent=1))
    out = sys.stderr if a.json else sys.stdout
    print(f"{report['model']}: {report['threads']} threads, prompt {report['prompt_tokens']}, "
          f"generate {report['gen_tokens']}, median of {report['repeats']} {report['schedule']} rounds; "
          f"read bandwidth {report['bandwidth_gbps']:.1f} GB/s (rounds: {report['bandwidth_range_gbps'][0]:.1f}-"
          f"{report['bandwidth_range_gbps'][1]:.1f})", file=out)
    if report.get("schedule_note"):
        print(report["schedule_note"], file=out)
    for r in report["results"]:
        print(_fmt(r), file=out)
        c = r.get("constrained")
        if c:
            print(f"{'':>9}constrained by {a.json_schema}: decode {c['decode_tok_s']:7.1f} tok/s vs {c['unconstrained_decode_tok_s']:.1f} "
                  f"unconstrained through the generator ({c['ratio']:.2f}x, median of per-round ratios), "
                  f"{c['forced_tokens']} of {c['tokens']} tokens forced, "
                  f"{'complete' if c['satisfied'] else 'INCOMPLETE'}; schema compile {r['compile_ms']:.1f} ms "
                  f"(first use, with the tokenizer: {r['first_constraint_s']:.2f} s)", file=out)
    first = report["results"][0]["backend"]
    for r in report["results"][1:]:
        print(f"{r['backend']:>7} / {first}: prefill {r['vs_first']['prefill']:.2f}x, decode {r['vs_first']['decode']:.2f}x",
              file=out)
    if "peer" in report:
        p = report["peer"]
        print(f"  llama.cpp Q8_0: prefill {p['prefill_tok_s']:8.1f} tok/s, decode {p['decode_tok_s']:7.1f} tok/s", file=out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure prefill/decode speed and peak memory of backends (each in its own process)")
    p.add_argument("-m", "--model", default=None, help="registered name (default smollm2-135m), .gguf file, Hugging Face directory or package")
    p.add_argument("--backend", action="append", default=None,
                   help="backend to measure (repeatable or comma-separated: auto, native, numpy, onnx, ...; default auto)")
    p.add_argument("--threads", type=int, default=None, help="threads for the backends and llama.cpp (default: all cores)")
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--gen-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up; medians are reported")
    p.add_argument("--peer", default=None, help="llama.cpp's llama-bench binary: measure the same model as Q8_0 alongside")
    p.add_argument("--peer-quantize", default=None, help="llama-quantize binary (default: next to llama-bench)")
    p.add_argument("--sequential", action="store_true",
                   help="load and measure one backend at a time (less memory; by default all are loaded and their "
                        "rounds interleaved, so that ratios see the same machine, when their memory fits)")
    p.add_argument("--json-schema", metavar="FILE", default=None,
                   help="also decode greedily under this JSON Schema and, beside it, unconstrained: tokens/s of both")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.set_defaults(func=cmd)
