"""`edge-sdk convert`: quantize a model into an edge package (weights.bin, graphs, ONNX files)."""

from __future__ import annotations

import argparse
import json
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
    src = resolve(a.model, quiet=False)
    info = convert(src, a.output, qcfg, policy, quiet=False, onnx_graphs=False if a.no_onnx else None,
                   tflite_graphs="tflite" in (a.backend or []), tflite_linear=a.tflite_linear, sign=a.sign)
    report = {"output": a.output, **{k: round(v, 3) if isinstance(v, float) else v for k, v in info.items()}}
    if a.json:
        print(json.dumps(report, indent=1))
    else:
        print(summary(report, qcfg))
    return 0


def summary(r: dict, qcfg) -> str:
    """The human summary of a conversion (what `--json` prints as fields)."""
    quant = "per row" if qcfg.group_size == 0 else f"groups of {qcfg.group_size}"
    files = [f"{len(r['onnx_files'])} ONNX" if r["onnx_files"] else "no ONNX"] + (["TFLite"] if r["tflite_s"] else [])
    steps = ", ".join(f"{name} {r[key]:.1f} s" for name, key in (("import", "import_s"), ("quantize", "quantize_s"),
                                                                    ("ONNX", "onnx_s"), ("TFLite", "tflite_s")) if r[key])
    return (f"wrote {r['output']}: {r['package_bytes'] / 1e6:.1f} MB on disk, {r['weights_bytes'] / 2**20:.1f} MiB of "
            f"int8 weights ({quant}), {r['graphs']} graph(s), {' + '.join(files)} graph files; "
            f"{r['total_s']:.1f} s ({steps})")


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
    p.set_defaults(func=cmd)
