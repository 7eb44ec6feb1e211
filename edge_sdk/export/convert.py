"""Conversion: a model file -> a quantized edge package (import, quantize, split, write).

The package holds `weights.bin`, the tokenizer, the graph records of the
split model (manifest `graphs`, see `graphs/spec.py`) and one ONNX file per
graph whose initializers point into `weights.bin` (no weight is stored
twice).

Example::

    convert("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-pkg/", QuantConfig(group_size=64),
            SplitPolicy(layers_per_graph=10))

Registered models are converted once into the user cache (`cached_package`);
other model files are converted once per file into the cache when a backend
needs a package (`package_for`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .tflite import DEFAULT_LINEAR
from ..model.config import QuantConfig
from ..errors import PackageError, UnsupportedModelError
from ..graphs.build import build_graphs
from ..graphs.spec import GraphSpec
from ..graphs.split import SplitPolicy
from ..importers import import_model
from .package import MANIFEST, add_package_files, is_package, read_manifest, write_package
from ..model.quantize import quantize_weights


def _check_table(out: str, specs: list[GraphSpec]) -> None:
    """The graph records' byte ranges must be those the package writer used."""
    tensors = read_manifest(out)["tensors"]
    for spec in specs:
        for t in spec.tensors:
            e = tensors.get(t.name)
            if e is None or int(e["offset"]) != t.offset or tuple(e["shape"]) != t.shape:
                raise PackageError(f"{os.path.join(out, MANIFEST)}: tensor {t.name} of graph {spec.name} is not where "
                                   f"the graph records expect it (offset {t.offset}, shape {t.shape}); "
                                   f"manifest has {e}")


def convert(model: str | os.PathLike, out: str | os.PathLike, qcfg: QuantConfig = QuantConfig(),
            policy: SplitPolicy = SplitPolicy(), quiet: bool = True, onnx_graphs: bool | None = None,
            tflite_graphs: bool = False, tflite_linear: str = DEFAULT_LINEAR,
            sign: str | os.PathLike | None = None,
            finish: Callable[[str], list[str]] | None = None) -> dict[str, Any]:
    """Write the package for `model` to `out`; returns timings and sizes.

    `onnx_graphs`: write the ONNX files (None: whenever the quantization allows it).
    `tflite_graphs`: also write `graphs/*.tflite` for the tflite backend (each
    holds a copy of its weights: the package grows by about `weights_bytes`);
    `tflite_linear` picks their int8 product (`backends/tflite_export.py`).
    `sign`: a private key file (`edge-sdk keygen`): the package is signed with it
    (`manifest.sig`, see `signing.py`) before it is moved into place.
    `finish(dir)`: more files made from the written package (a precomputed system-prompt cache) before it is
    signed and moved into place; returns their paths relative to `dir`, which the manifest then lists.
    """
    from .onnx import check_exportable, write_onnx_graphs

    key = None
    if sign is not None:
        from .signing import load_secret_key

        key = load_secret_key(sign)  # a bad key file or a missing PyNaCl fails before any work
    t0 = time.perf_counter()
    imported = import_model(model, quiet=quiet)
    t_import = time.perf_counter() - t0
    cfg = imported.config
    specs = build_graphs(cfg, qcfg, policy)
    if onnx_graphs is None:
        try:
            check_exportable(qcfg)
            onnx_graphs = True
        except UnsupportedModelError as e:
            onnx_graphs = False
            if not quiet:
                print(f"not writing ONNX graphs: {e}", file=sys.stderr)
    qweights = quantize_weights(cfg, imported.weights, qcfg, quiet=quiet)
    t_quant = time.perf_counter() - t0 - t_import
    timings = {"onnx_s": 0.0, "tflite_s": 0.0}

    def extra_files(d: str) -> list[str]:
        files: list[str] = []
        if onnx_graphs:
            t = time.perf_counter()
            files += [s.file for s in write_onnx_graphs(d, specs, cfg, qcfg)]
            timings["onnx_s"] = time.perf_counter() - t
        if tflite_graphs:
            from .tflite import write_tflite_graphs
            from .package import flatten_weights

            t = time.perf_counter()
            files += list(write_tflite_graphs(d, specs, cfg, qcfg, flatten_weights(qweights), tflite_linear).values())
            timings["tflite_s"] = time.perf_counter() - t
        return files

    if onnx_graphs:
        from .onnx import graph_file_name

        specs = [dataclasses.replace(s, file=graph_file_name(s)) for s in specs]
    out = os.fspath(out)
    runtimes = {"tflite": {"linear": tflite_linear}} if tflite_graphs else None

    def write(d: str) -> None:
        write_package(d, cfg, qcfg, qweights, imported.tokenizer, graphs=[s.to_dict() for s in specs],
                      extra_files=extra_files, source=os.path.basename(os.fspath(model)), runtimes=runtimes,
                      generation=imported.generation)
        _check_table(d, specs)
        if finish is not None:
            add_package_files(d, finish(d))
        if key is not None:
            from .signing import sign_package

            sign_package(d, key)

    _write_in_place_of(out, write)
    total = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    return {"import_s": t_import, "quantize_s": t_quant, "onnx_s": timings["onnx_s"], "tflite_s": timings["tflite_s"],
            "total_s": total,
            "package_bytes": size, "weights_bytes": qweights.nbytes, "graphs": len(specs),
            "onnx_files": [s.file for s in specs if s.file],
            **({"signed_by": key.public.key_id} if key is not None else {})}


def _write_in_place_of(out: str, write: Callable[[str], None]) -> None:
    """Run `write(tmp)` on a new temporary sibling of `out`, then move it to `out`.

    Whatever fails (an exception, Ctrl-C) leaves `out` as it was. An existing `out` is replaced only
    when it is an edge package or an empty directory, never other files."""
    out = os.path.abspath(out)
    if os.path.lexists(out):
        if not os.path.isdir(out) or os.path.islink(out):
            raise PackageError(f"{out}: exists and is not a directory; choose another output path")
        if os.listdir(out) and not is_package(out):
            raise PackageError(f"{out}: a non-empty directory that is not an edge package; refusing to replace it "
                               "(choose a new or empty directory)")
    parent = os.path.dirname(out)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=parent, prefix=os.path.basename(out) + ".tmp")
    except OSError as e:
        raise PackageError(f"{out}: cannot create the package directory ({e.strerror or e})") from e
    old = None
    try:
        write(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a package directory is readable like one os.makedirs makes
        if os.path.isdir(out):
            old = tempfile.mkdtemp(dir=parent, prefix=os.path.basename(out) + ".old")
            os.replace(out, old)  # `old` was an empty directory: rename may replace it
        os.replace(tmp, out)
    except OSError as e:
        if old is not None and not os.path.exists(out):
            os.replace(old, out)
            old = None
        raise PackageError(f"{out}: cannot write the package ({e.strerror or e})") from e
    finally:
        for d in (tmp, old):
            if d is not None and os.path.exists(d):
                shutil.rmtree(d, ignore_errors=True)


def _manifest(path: str | os.PathLike) -> dict[str, Any] | None:
    try:
        return read_manifest(os.fspath(path))
    except PackageError:
        return None


# The three questions below are asked of a cached package before it is loaded (and checked in full):
# a manifest of the wrong shape answers "no", never raises.


def _lists_onnx(manifest: dict[str, Any]) -> bool:
    graphs = manifest.get("graphs", [])
    return isinstance(graphs, list) and bool(graphs) and all(
        isinstance(g, dict) and isinstance(g.get("file"), str) and g["file"] for g in graphs)


def _lists_tflite(manifest: dict[str, Any]) -> bool:
    from .tflite import graph_file_name
    from ..graphs.spec import specs_from_manifest

    graphs, files = manifest.get("graphs", []), manifest.get("files", {})
    if not isinstance(graphs, list) or not isinstance(files, dict):
        return False
    try:
        specs = specs_from_manifest(graphs)
    except PackageError:
        return False
    return bool(specs) and all(graph_file_name(s) in files for s in specs)


def _tflite_linear(manifest: dict[str, Any]) -> str | None:
    runtimes = manifest.get("runtimes")
    tflite = runtimes.get("tflite") if isinstance(runtimes, dict) else None
    linear = tflite.get("linear") if isinstance(tflite, dict) else None
    return linear if isinstance(linear, str) else None


def has_onnx_graphs(path: str | os.PathLike) -> bool:
    """Whether a package lists an ONNX file for every graph (packages from older conversions do not)."""
    manifest = _manifest(path)
    return manifest is not None and _lists_onnx(manifest)


def has_tflite_graphs(path: str | os.PathLike) -> bool:
    """Whether a package lists a .tflite file for every graph (written by `convert(..., tflite_graphs=True)`)."""
    manifest = _manifest(path)
    return manifest is not None and _lists_tflite(manifest)


def tflite_linear_of(path: str | os.PathLike) -> str | None:
    """The int8 product the package's .tflite graphs use (None: no record, packages converted before it was kept)."""
    manifest = _manifest(path)
    return None if manifest is None else _tflite_linear(manifest)


def _ready(dest: Path, tflite: bool) -> bool:
    """A cached package holds what is asked (.tflite graphs in the current default formulation when `tflite`).
    The manifest is read once."""
    manifest = _manifest(dest) if is_package(dest) else None
    return manifest is not None and _lists_onnx(manifest) and _has_current_fields(manifest) and (
        not tflite or (_lists_tflite(manifest) and _tflite_linear(manifest) == DEFAULT_LINEAR))


def _has_current_fields(manifest: dict[str, Any]) -> bool:
    """A cached package written before the manifest held every section this version reads is converted again."""
    from .package import TOKENIZER_FIELDS

    tok = manifest.get("tokenizer")
    return "generation" in manifest and isinstance(tok, dict) and all(k in tok for k in TOKENIZER_FIELDS)


def _convert_into(src: str | os.PathLike, dest: Path, qcfg: QuantConfig, quiet: bool, what: str,
                  tflite: bool = False) -> Path:
    """Convert into a temporary sibling of `dest`, then move it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=dest.name + ".tmp"))
    try:
        if not quiet:
            print(f"converting {what} to int8 (once; cached in {dest}) ...", file=sys.stderr)
        convert(src, tmp, qcfg, quiet=quiet, tflite_graphs=tflite)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _registered_dest(name: str, qcfg: QuantConfig) -> Path:
    from ..importers.registry import cache_dir

    return cache_dir() / "packages" / f"{name}-g{qcfg.group_size}"


def ready_package(name: str, qcfg: QuantConfig, tflite: bool = False) -> Path | None:
    """The converted package of a registered model when the cache already holds it, else None."""
    dest = _registered_dest(name, qcfg)
    return dest if _ready(dest, tflite) else None


def cached_package(name: str, qcfg: QuantConfig, quiet: bool = True, tflite: bool = False) -> Path:
    """The converted package of a registered model, converting it into the cache on first use.

    `tflite`: the package must also hold .tflite graphs (converted again when it does not).
    """
    from ..importers.registry import pull

    dest = ready_package(name, qcfg, tflite)
    if dest is not None:
        return dest
    return _convert_into(pull(name, quiet=quiet), _registered_dest(name, qcfg), qcfg, quiet, name, tflite)


def package_for(model: str | os.PathLike, qcfg: QuantConfig, quiet: bool = True, tflite: bool = False) -> Path:
    """A package for a .gguf file or Hugging Face directory, converted once into the cache.

    The cache entry is keyed by the absolute path, size and modification time of
    the model's files, so an edited model is converted again.
    """
    from ..importers.registry import cache_dir

    src = Path(model).resolve()
    if is_package(src):
        return src
    files = sorted(src.rglob("*")) if src.is_dir() else [src]
    key = hashlib.sha256(json.dumps([str(src), qcfg.to_dict()] + [
        (str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]).encode()).hexdigest()[:16]
    dest = cache_dir() / "packages" / "converted" / f"{src.stem}-g{qcfg.group_size}-{key}"
    if _ready(dest, tflite):
        return dest
    return _convert_into(src, dest, qcfg, quiet, str(model), tflite)
