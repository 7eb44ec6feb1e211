"""`edge-sdk bench`: prefill/decode tokens/s, peak RSS, bandwidth roofline, and llama.cpp as a peer."""

from __future__ import annotations

import argparse
import json
import sys


def _load(r: dict) -> str:
    lo, hi = r.get("loadavg_range") or (0.0, 0.0)
    return f"load {lo:.1f}-{hi:.1f}"


def _roofline(r: dict) -> str:
    if not r.get("roofline_fraction"):
        return ""
    lo, hi = r["roofline_fraction_range"]
    return f", {r['roofline_fraction'] * 100:.0f}% of the decode roofline ({lo * 100:.0f}-{hi * 100:.0f}% by round)"


def _fmt(r: dict) -> str:
    roof = _roofline(r)
    peer = f"; ours/llama.cpp: prefill {r['vs_peer']['prefill']:.2f}x, decode {r['vs_peer']['decode']:.2f}x" \
        if "vs_peer" in r else ""
    return (f"{r['backend']:>7}: prefill {r['prefill_tok_s']:8.1f} tok/s, decode {r['decode_tok_s']:7.1f} tok/s{roof}, "
            f"peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB, load {r['load_s']:.1f} s, {_load(r)}{peer}")


def _bandwidth(report: dict) -> str:
    lo, hi = report["bandwidth_range_gbps"]
    if report["bandwidth_source"] == "decode":
        return (f"read bandwidth {report['bandwidth_gbps']:.1f} GB/s, a decode's own read (the probe, {lo:.1f}-{hi:.1f} "
                f"GB/s at {report['bandwidth_threads']} threads, was slower: the machine was busy)")
    return (f"read bandwidth {report['bandwidth_gbps']:.1f} GB/s (the best probe pass at {report['bandwidth_threads']} "
            f"threads; rounds {lo:.1f}-{hi:.1f})")


def _print_extras(report: dict, out) -> None:
    p = report.get("peer")
    if report.get("depth"):
        for r in report["results"] + ([dict(p, backend="llama.cpp")] if p else []):
            d = r["depth"]
            vs = f"; ours/llama.cpp {d['vs_peer']:.2f}x at {d['depth']} ({d['base_vs_peer']:.2f}x at {d['base_depth']})" \
                if "vs_peer" in d else ""
            read = f" (read {d['prompt_tokens_read']} / {d['base_prompt_tokens_read']} tokens)" \
                if "prompt_tokens_read" in d else ""
            print(f"{r['backend']:>9} depth: decode {d['decode_tok_s']:7.1f} tok/s after {d['depth']} tokens, "
                  f"{d['base_decode_tok_s']:7.1f} after {d['base_depth']}{read}: {d['vs_base']:.2f}x, "
                  f"{_load(d)}{vs}", file=out)
    if report.get("sweep"):
        names = [r["backend"] for r in report["results"]] + (["llama.cpp"] if p else [])
        print("  prefill tok/s by prompt length: " + " | ".join(names) +
              (" | " + " | ".join(f"{n}/llama.cpp" for n in names[:-1]) if p else ""), file=out)
        rows = [r["sweep"] for r in report["results"]] + ([p["sweep"]] if p else [])
        for i, n in enumerate(report["sweep"]):
            cells = [f"{s[i]['prefill_tok_s']:.1f}" for s in rows]
            ratios = [f"{s[i]['vs_peer']:.2f}x" for s in rows[:-1]] if p else []
            print(f"  {n:>6}: " + " | ".join(cells + ratios) + f"  ({_load(rows[0][i])})", file=out)


def cmd(a: argparse.Namespace) -> int:
    if a.rss:
        return cmd_rss(a)
    from ..bench.backends import run_bench

    backends = [b for item in (a.backend or ["auto"]) for b in item.split(",") if b]
    schema = None
    if a.json_schema:
        from .common import read_json_file

        schema = read_json_file(a.json_schema, "--json-schema")
    report = run_bench(a.model, backends, a.threads, a.prompt_tokens, a.gen_tokens, a.repeats, a.peer, a.peer_quantize,
                       interleave=False if a.sequential else None, schema=schema, depth=a.depth, sweep=a.sweep,
                       busy=a.busy, peer_cli=a.peer_cli)
    if a.json:
        print(json.dumps(report, indent=1))
    out = sys.stderr if a.json else sys.stdout
    busy = f"; {report['busy']} CPU-bound processes beside it" if report["busy"] else ""
    threads = f"{report['threads']} thread{'s' if report['threads'] > 1 else ''}"
    print(f"{report['model']}: {threads}, prompt {report['prompt_tokens']}, "
          f"generate {report['gen_tokens']}, median of {report['repeats']} {report['schedule']} rounds{busy}; "
          f"load average {report['loadavg_idle']:.1f} before, {_load(report)} during; {_bandwidth(report)}", file=out)
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
        print(f"  llama.cpp Q8_0: prefill {p['prefill_tok_s']:8.1f} tok/s, decode {p['decode_tok_s']:7.1f} tok/s"
              f"{_roofline(p)}, {_load(p)}", file=out)
    _print_extras(report, out)
    return 0


def cmd_rss(a: argparse.Namespace) -> int:
    from ..bench.rss import run_rss

    report = run_rss(a.model, a.peer, a.threads, repeats=a.repeats, peer_cli=a.peer_cli, peer_quantize=a.peer_quantize)
    if a.json:
        print(json.dumps(report, indent=1))
    out = sys.stderr if a.json else sys.stdout
    o, p = report["ours"], report.get("peer")
    line = (f"peak RSS generating {report['gen_tokens']} tokens at ctx {report['ctx']}, median of {report['repeats']}: "
            f"edge-sdk run {o['peak_rss_bytes'] / 2**20:.1f} MiB")
    if p:
        line += f", llama-cli {p['peak_rss_bytes'] / 2**20:.1f} MiB: {report['ratio']:.2f}x"
    print(line + f" ({_load(report)})", file=out)
    return 0


def _lengths(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated token counts, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one token count")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure prefill/decode speed and peak memory of backends (each in its own process)")
    p.add_argument("-m", "--model", default=None, help="registered name (default smollm2-135m), .gguf file, Hugging Face directory or package")
    p.add_argument("--backend", action="append", default=None,
                   help="backend to measure (repeatable or comma-separated: auto, native, numpy, onnx, ...; default auto)")
    p.add_argument("--threads", type=int, default=None, help="threads for the backends and llama.cpp (default: all cores)")
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--gen-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up; medians are reported")
    p.add_argument("--depth", type=int, default=None, metavar="N",
                   help="also decode after an N-token context and after a 64-token one (ours, and llama.cpp via llama-cli)")
    p.add_argument("--sweep", type=_lengths, default=(), metavar="N1,N2,...",
                   help="also prefill each of these prompt lengths, e.g. 16,64,256,512,1500")
    p.add_argument("--busy", type=int, default=0, metavar="K",
                   help="run K CPU-bound processes beside the whole benchmark (ours and the peer alike)")
    p.add_argument("--rss", action="store_true",
                   help="instead: peak RSS of `edge-sdk run` (64 tokens, ctx 512) and, with --peer, of llama-cli on the "
                        "Q8_0 file, each a child measured by getrusage")
    p.add_argument("--peer", default=None, help="llama.cpp's llama-bench binary: measure the same model as Q8_0 alongside")
    p.add_argument("--peer-quantize", default=None, help="llama-quantize binary (default: next to llama-bench)")
    p.add_argument("--peer-cli", default=None, help="llama-cli binary, for --depth and --rss (default: next to llama-bench)")
    p.add_argument("--sequential", action="store_true",
                   help="load and measure one backend at a time (less memory; by default all are loaded and their "
                        "rounds interleaved, so that ratios see the same machine, when their memory fits)")
    p.add_argument("--json-schema", metavar="FILE", default=None,
                   help="also decode greedily under this JSON Schema and, beside it, unconstrained: tokens/s of both")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.set_defaults(func=cmd)
