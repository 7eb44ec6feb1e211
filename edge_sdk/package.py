"""The edge package: a converted model directory that a device loads without the original.

Layout::

    manifest.json     format name and version, model and quantization config,
                      tokenizer fields, graph list, tensor table, sha256 of every file
    weights.bin       int8 weights and float32 scales/norms, each tensor 64-byte aligned
    tokenizer.json    the tokenizer (Hugging Face `tokenizers` format)
    graph_*.onnx      one ONNX file per graph; their initializers are external data in weights.bin

Tensors are memory-mapped from `weights.bin`: loading copies nothing into the
Python heap, and resident memory grows only with the pages a backend touches.

Example::

    write_package("out/", cfg, qcfg, qweights, tokenizer)
    pkg = load_package("out/")
    pkg.weights.layers[0].wq.q.shape
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .config import ModelConfig, QuantConfig
from .errors import PackageError
from .quantize import QLayer, QMat, QWeights

FORMAT_NAME = "edge-sdk-package"
FORMAT_VERSION = 1
ALIGN = 64
MANIFEST = "manifest.json"
WEIGHTS = "weights.bin"
TOKENIZER = "tokenizer.json"
QMAT_FIELDS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


def is_package(path: str | os.PathLike) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, MANIFEST))


def flatten_weights(w: QWeights) -> dict[str, np.ndarray]:
    """Tensor name -> array, in file order (embedding, layers, norm, head)."""
    out: dict[str, np.ndarray] = {"tok_embd.q": w.tok_embd.q, "tok_embd.scale": w.tok_embd.scale}
    for i, layer in enumerate(w.layers):
        out[f"layers.{i}.attn_norm"] = layer.attn_norm
        out[f"layers.{i}.ffn_norm"] = layer.ffn_norm
        for name in QMAT_FIELDS:
            m = getattr(layer, name)
            out[f"layers.{i}.{name}.q"] = m.q
            out[f"layers.{i}.{name}.scale"] = m.scale
    out["out_norm"] = w.out_norm
    if w.output is not None:
        out["output.q"], out["output.scale"] = w.output.q, w.output.scale
    return out


def unflatten_weights(t: dict[str, np.ndarray], cfg: ModelConfig, q: QuantConfig) -> QWeights:
    def qm(prefix: str) -> QMat:
        return QMat(q=t[f"{prefix}.q"], scale=t[f"{prefix}.scale"], group_size=q.group_size)

    layers = [
        QLayer(attn_norm=t[f"layers.{i}.attn_norm"], ffn_norm=t[f"layers.{i}.ffn_norm"],
               **{n: qm(f"layers.{i}.{n}") for n in QMAT_FIELDS})
        for i in range(cfg.n_layers)
    ]
    output = qm("output") if "output.q" in t else None
    return QWeights(tok_embd=qm("tok_embd"), layers=layers, out_norm=t["out_norm"], output=output)


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_weights_bin(path: str, tensors: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Write tensors back to back, each starting at a multiple of ALIGN; return the tensor table."""
    table: dict[str, dict[str, Any]] = {}
    offset = 0
    with open(path, "wb") as f:
        for name, arr in tensors.items():
            arr = np.ascontiguousarray(arr)
            pad = (-offset) % ALIGN
            f.write(b"\0" * pad)
            offset += pad
            f.write(arr.tobytes())
            table[name] = {"offset": offset, "dtype": arr.dtype.str, "shape": list(arr.shape)}
            offset += arr.nbytes
    return table


@dataclass
class Package:
    path: str
    config: ModelConfig
    quant: QuantConfig
    weights: QWeights
    tokenizer: Any
    manifest: dict[str, Any]
    graphs: list[dict[str, Any]] = field(default_factory=list)

    def file(self, rel: str) -> str:
        return os.path.join(self.path, rel)


def write_package(
    out: str | os.PathLike,
    cfg: ModelConfig,
    qcfg: QuantConfig,
    weights: QWeights,
    tokenizer: Any,
    graphs: list[dict[str, Any]] | None = None,
    extra_files: Callable[[str], list[str]] | None = None,
    source: str = "",
    runtimes: dict[str, Any] | None = None,
) -> str:
    """Write the package directory; `extra_files(dir)` may add files (ONNX graphs) and returns their relative paths.

    `runtimes`: how runtime-specific files were written (e.g. {"tflite": {"linear": "segments"}}).
    """
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    table = write_weights_bin(os.path.join(out, WEIGHTS), flatten_weights(weights))
    with open(os.path.join(out, TOKENIZER), "w", encoding="utf-8") as f:
        f.write(tokenizer.to_json())
    rels = [WEIGHTS, TOKENIZER] + (extra_files(out) if extra_files else [])
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "source": source,
        "model": cfg.to_dict(),
        "quant": qcfg.to_dict(),
        "tokenizer": tokenizer.meta(),
        "graphs": graphs or [],
        **({"runtimes": runtimes} if runtimes else {}),
        "tensors": {name: {**entry, "file": WEIGHTS} for name, entry in table.items()},
        "files": {rel: sha256_of(os.path.join(out, rel)) for rel in rels},
    }
    tmp = os.path.join(out, MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(out, MANIFEST))
    return out


def read_manifest(path: str) -> dict[str, Any]:
    mpath = os.path.join(path, MANIFEST)
    try:
        with open(mpath, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise PackageError(f"{mpath}: missing; not an edge package") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PackageError(f"{mpath}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise PackageError(f"{mpath}: not an edge package manifest (format is not {FORMAT_NAME!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise PackageError(
            f"{mpath}: format version {version} is newer than this edge_sdk reads ({FORMAT_VERSION}); upgrade edge_sdk"
        )
    return manifest


def verify_files(path: str, manifest: dict[str, Any]) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict) or WEIGHTS not in files:
        raise PackageError(f"{os.path.join(path, MANIFEST)}: no file checksums")
    for rel, digest in files.items():
        full = os.path.join(path, rel)
        if os.path.normpath(rel).startswith("..") or os.path.isabs(rel):
            raise PackageError(f"{full}: file path escapes the package")
        if not os.path.isfile(full):
            raise PackageError(f"{full}: listed in the manifest but missing")
        if sha256_of(full) != digest:
            raise PackageError(f"{full}: sha256 does not match the manifest (the file was modified or corrupted)")


def map_tensors(path: str, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    wpath = os.path.join(path, WEIGHTS)
    size = os.path.getsize(wpath)
    mm = np.memmap(wpath, dtype=np.uint8, mode="r")
    out = {}
    for name, e in manifest["tensors"].items():
        dtype = np.dtype(e["dtype"])
        shape = tuple(e["shape"])
        nbytes = int(np.prod(shape)) * dtype.itemsize
        off = int(e["offset"])
        if off % ALIGN or off < 0 or off + nbytes > size:
            raise PackageError(f"{wpath}: tensor {name} at offset {off} (+{nbytes} bytes) is misaligned or outside the file")
        out[name] = mm[off : off + nbytes].view(dtype).reshape(shape)
    return out


def load_package(path: str | os.PathLike, verify: bool = True) -> Package:
    """Open a package: check manifest and checksums, map the weights, build the tokenizer."""
    from .tokenizer import Tokenizer

    path = os.fspath(path)
    manifest = read_manifest(path)
    if verify:
        verify_files(path, manifest)
    try:
        cfg = ModelConfig.from_dict(manifest["model"])
        qcfg = QuantConfig.from_dict(manifest["quant"])
        tensors = map_tensors(path, manifest)
        weights = unflatten_weights(tensors, cfg, qcfg)
        with open(os.path.join(path, TOKENIZER), encoding="utf-8") as f:
            tok = Tokenizer.from_json(f.read(), **manifest["tokenizer"])
    except (KeyError, TypeError, ValueError) as e:
        raise PackageError(f"{os.path.join(path, MANIFEST)}: incomplete or inconsistent manifest ({type(e).__name__}: {e})") from e
    return Package(path=path, config=cfg, quant=qcfg, weights=weights, tokenizer=tok, manifest=manifest,
                   graphs=manifest.get("graphs", []))
