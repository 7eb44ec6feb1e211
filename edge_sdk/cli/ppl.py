"""`edge-sdk ppl`: perplexity over a text file, and int8-vs-float top-1 agreement.

The float model is the file's weights as float32. For a quantized GGUF file (SmolLM2's is Q4_1) that is
its quantized values dequantized, and the int8 model re-quantizes those values: the figures measure what
int8 costs against that file, not against the original float checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..importers.registry import DEFAULT_MODEL


def cmd(a: argparse.Namespace) -> int:
    from ..model.accuracy import evaluate, numpy_int8
    from ..model.config import QuantConfig
    from ..errors import ModelFileError
    from ..importers import import_model
    from ..export.describe import describe
    from ..importers.registry import resolve
    from ..export.package import is_package

    path = resolve(a.model)
    if is_package(path):
        raise ModelFileError(f"{path}: perplexity compares against the float model, so it needs the original .gguf or Hugging Face model")
    try:
        with open(a.file, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ModelFileError(f"{a.file}: cannot read ({e.strerror})") from None
    backend = a.backend
    if backend == "auto":
        from ..api import auto_backend

        backend = auto_backend()
    from ..plan.budget import default_kv_dtype

    kv_dtype = default_kv_dtype(backend, a.kv_dtype)
    reference = describe(path).get("float_reference") or "the model's float weights"
    m = import_model(path, quiet=False)
    qcfg = QuantConfig(group_size=a.group_size)
    if backend == "native":
        from ..backends.native.backend import NativeBackend

        def int8(qweights, ctx):
            return NativeBackend(m.config, qcfg, qweights, ctx, kv_dtype)
    else:
        int8 = numpy_int8(m.config, kv_dtype)
    r = evaluate(m, text, qcfg, window=a.window, max_tokens=a.max_tokens, float_only=a.float, int8=int8,
                 backend=backend, kv_dtype=kv_dtype, quiet=False)
    if a.json:
        print(json.dumps({"perplexity": r.perplexity, "tokens": r.tokens, "top1_agreement": r.top1_agreement,
                          "float_perplexity": r.float_perplexity, "window": r.window, "quant": r.quant,
                          "backend": None if a.float else r.backend, "kv_dtype": None if a.float else r.kv_dtype,
                          "float_reference": reference}))
    else:
        what = "float" if a.float else (f"int8 ({'per row' if a.group_size == 0 else f'groups of {a.group_size}'}, "
                                        f"{r.backend} backend, KV {r.kv_dtype})")
        print(f"{what} perplexity {r.perplexity:.4f} over {r.tokens} tokens (windows of {r.window})")
        if not a.float:
            print(f"float perplexity {r.float_perplexity:.4f} ({(r.perplexity / r.float_perplexity - 1) * 100:+.2f}%), "
                  f"top-1 agreement {r.top1_agreement * 100:.2f}%")
        print(f"float reference: {reference}")
    sys.stdout.flush()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ppl", help="perplexity of a text file; int8 vs float agreement",
                       description=__doc__.split("\n\n", 1)[1].strip())
    p.add_argument("-m", "--model", default=DEFAULT_MODEL)
    p.add_argument("file")
    p.add_argument("--float", action="store_true", help="measure the float model only")
    p.add_argument("--group-size", type=int, default=32, help="int8 weight scale per group of G inputs (0: per row)")
    p.add_argument("--backend", default="auto", choices=("auto", "native", "numpy"),
                   help="where the int8 model runs (default: the native core when built, else numpy)")
    p.add_argument("--kv", "--kv-dtype", dest="kv_dtype", default="auto", choices=("auto", "f32", "f16", "int8"),
                   help="the int8 model's KV cache dtype (default auto, as `run`: f16 on native and numpy); the "
                        "float model keeps f32")
    p.add_argument("--window", type=int, default=512, help="tokens per evaluation window")
    p.add_argument("--max-tokens", type=int, default=None, help="evaluate only the first N tokens")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd)
