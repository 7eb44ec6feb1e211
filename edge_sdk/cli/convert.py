"""`edge-sdk convert`: quantize a model into an edge package (weights.bin, graphs, ONNX files).

Example::

    edge-sdk convert smollm2-135m -o kiosk-pkg --system-prompt kiosk.txt --system-prompt-backend native
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..export.tflite import DEFAULT_LINEAR, LINEAR_KINDS
from ..importers.registry import DEFAULT_MODEL


def cmd(a: argparse.Namespace) -> int:
    from ..model.config import QuantConfig
    from ..export.convert import convert
    from ..graphs.split import SplitPolicy
    from ..importers.registry import resolve

    try:
        qcfg = QuantConfig(group_size=a.group_size)
        policy = SplitPolicy(layers_per_graph=a.layers_per_graph, max_graph_bytes=a.max_graph_bytes)
    except ValueError as e:
        print(f"edge-sdk convert: {e}", file=sys.stderr)
        return 2
    finish, system = None, {}
    if a.system_prompt is not None:
        try:
            with open(a.system_prompt, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            print(f"edge-sdk convert: cannot read the system prompt {a.system_prompt}: {e}", file=sys.stderr)
            return 2
        backends = a.system_prompt_backend or [default_system_backend()]
        if "tflite" in backends and "tflite" not in (a.backend or []):
            print("edge-sdk convert: --system-prompt-backend tflite needs the TFLite graphs: add --backend tflite",
                  file=sys.stderr)
            return 2
        finish = lambda d: system_prompt_files(d, text, backends, system)  # noqa: E731
    elif a.system_prompt_backend:
        print("edge-sdk convert: --system-prompt-backend needs --system-prompt FILE", file=sys.stderr)
        return 2
    src = resolve(a.model, quiet=False)
    info = convert(src, a.output, qcfg, policy, quiet=False, onnx_graphs=False if a.no_onnx else None,
                   tflite_graphs="tflite" in (a.backend or []), tflite_linear=a.tflite_linear, sign=a.sign,
                   finish=finish)
    report = {"output": a.output, **{k: round(v, 3) if isinstance(v, float) else v for k, v in info.items()},
              **({"system_prompt": system} if system else {})}
    if a.json:
        print(json.dumps(report, indent=1))
    else:
        print(summary(report, qcfg))
    return 0


def default_system_backend() -> str:
    """The backend a system-prompt cache is made for by default: the one `load()` picks here."""
    from ..settings import resolve_backend

    return resolve_backend("auto")


def system_prompt_files(d: str, text: str, backends: list[str], report: dict) -> list[str]:
    """Prefill `text`, rendered as the system turn of the model's chat template, on each backend (its default
    KV dtype) and write its rows into the package at `d` (`generate/system_prompt.py`); returns the files."""
    import edge_sdk
    from ..export.package import read_manifest
    from ..generate.kv_file import identity_of
    from ..generate.system_prompt import system_file, system_prompt_ids, write_system_cache

    manifest = read_manifest(d)
    rels = []
    for name in dict.fromkeys(backends):
        with edge_sdk.load(d, backend=name, slots=0, trusted_keys=[]) as m:  # signed later, when asked
            ids = system_prompt_ids(m.chat_prompt, lambda t: m.tokenize(t, special=True), text)
            identity = identity_of(m.config, m.quant, m.tokenizer, manifest)
            layout = m.backend.kv_layout()
            rel = system_file(layout.backend, layout.kv_dtype)
            write_system_cache(m.backend, ids, identity, os.path.join(d, rel), chunk=m._gen.prefill_chunk)
        rels.append(rel)
        report[rel] = len(ids)
    return rels


def summary(r: dict, qcfg) -> str:
    """The human summary of a conversion (what `--json` prints as fields)."""
    quant = "per row" if qcfg.group_size == 0 else f"groups of {qcfg.group_size}"
    files = [f"{len(r['onnx_files'])} ONNX" if r["onnx_files"] else "no ONNX"] + (["TFLite"] if r["tflite_s"] else [])
    steps = ", ".join(f"{name} {r[key]:.1f} s" for name, key in (("import", "import_s"), ("quantize", "quantize_s"),
                                                                    ("ONNX", "onnx_s"), ("TFLite", "tflite_s")) if r[key])
    system = "".join(f"; system prompt: {n} tokens in {rel}" for rel, n in r.get("system_prompt", {}).items())
    return (f"wrote {r['output']}: {r['package_bytes'] / 1e6:.1f} MB on disk, {r['weights_bytes'] / 2**20:.1f} MiB of "
            f"int8 weights ({quant}), {r['graphs']} graph(s), {' + '.join(files)} graph files; "
            f"{r['total_s']:.1f} s ({steps}){system}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="quantize MODEL to int8 and write an edge package (with ONNX graphs) to -o DIR")
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL,
                   help=f"registered name (default {DEFAULT_MODEL}), .gguf file or Hugging Face directory")
    p.add_argument("-o", "--output", required=True, help="package directory to write")
    p.add_argument("--group-size", type=int, default=32, help="int8 weight scale per group of G inputs (0: per row; default 32)")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--layers-per-graph", type=int, default=0, help="K decoder layers per graph (default: all in one)")
    split.add_argument("--max-graph-bytes", type=int, default=0, help="as many layers per graph as fit in B weight bytes")
    p.add_argument("--no-onnx", action="store_true", help="do not write the ONNX files")
    p.add_argument("--backend", action="append", choices=("onnx", "tflite"), default=None,
                   help="graph files to write besides ONNX: tflite adds graphs/*.tflite (about the weights' size again)")
    p.add_argument("--tflite-linear", choices=LINEAR_KINDS, default=DEFAULT_LINEAR,
                   help="int8 products of the .tflite graphs: segments (default: per-segment activation scales over "
                        "192 values, weights re-quantized per segment), blocks (the int8 reference's per-block "
                        "scales: ~1.4x slower decode) or rows (one activation scale per token: least exact)")
    p.add_argument("--json", action="store_true", help="print the conversion's figures as JSON on stdout")
    p.add_argument("--sign", metavar="KEY", default=None,
                   help="sign the package with this private key (from `edge-sdk keygen`; needs edge-sdk[sign]): "
                        "writes manifest.sig, which loading checks where trusted keys are configured")
    p.add_argument("--system-prompt", metavar="FILE", default=None,
                   help="precompute the KV cache of FILE's text as the system turn of the model's chat template and "
                        "store it in the package: loading it on that backend reuses it for every chat that starts "
                        "with this system prompt")
    p.add_argument("--system-prompt-backend", action="append", choices=("native", "numpy", "onnx", "tflite"),
                   default=None, help="backend to precompute the system prompt for, with its default KV dtype "
                                      "(repeatable; default: the one `load` picks, the native core where built)")
    p.set_defaults(func=cmd)
