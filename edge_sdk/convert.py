"""Conversion: a model file -> a quantized edge package (import, quantize, split, write).

Example::

    convert("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-pkg/", QuantConfig(group_size=64))

Registered models are converted once into the user cache (`cached_package`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from .config import QuantConfig
from .graphs.split import SplitPolicy, split_layers
from .importers import import_model
from .package import is_package, write_package
from .progress import Progress
from .quantize import quantize_weights


def convert(model: str | os.PathLike, out: str | os.PathLike, qcfg: QuantConfig = QuantConfig(),
            policy: SplitPolicy = SplitPolicy(), quiet: bool = True) -> dict:
    """Write the package for `model` to `out`; returns timings and sizes."""
    t0 = time.perf_counter()
    imported = import_model(model)
    t_import = time.perf_counter() - t0
    cfg = imported.config
    ranges = split_layers(cfg, qcfg, policy)
    with Progress("quantizing", 1, enabled=False if quiet else None) as p:
        qweights = quantize_weights(cfg, imported.weights, qcfg)
        p.update(1)
    t_quant = time.perf_counter() - t0 - t_import
    graphs = [{"name": "embed", "kind": "embed"}]
    graphs += [{"name": f"layers_{a}_{b}", "kind": "layers", "first_layer": a, "end_layer": b} for a, b in ranges]
    graphs.append({"name": "head", "kind": "head"})
    write_package(out, cfg, qcfg, qweights, imported.tokenizer, graphs=graphs, source=os.path.basename(os.fspath(model)))
    total = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    return {"import_s": t_import, "quantize_s": t_quant, "total_s": total, "package_bytes": size,
            "weights_bytes": qweights.nbytes, "graphs": len(graphs)}


def cached_package(name: str, qcfg: QuantConfig, quiet: bool = True) -> Path:
    """The converted package of a registered model, converting it into the cache on first use."""
    from .models import cache_dir, pull

    dest = cache_dir() / "packages" / f"{name}-g{qcfg.group_size}"
    if is_package(dest):
        return dest
    src = pull(name, quiet=quiet)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=dest.name + ".tmp"))
    try:
        if not quiet:
            print(f"converting {name} to int8 (once; cached in {dest}) ...", file=__import__("sys").stderr)
        convert(src, tmp, qcfg, quiet=quiet)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
