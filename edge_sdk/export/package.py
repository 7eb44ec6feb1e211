"""The edge package: a converted model directory that a device loads without the original.

Layout::

    manifest.json     format name and version, model and quantization config,
                      tokenizer fields, graph list, tensor table, sha256 of every file,
                      and `manifest_sha256`, the sha256 of the manifest's own canonical JSON
    manifest.sig      optional: Ed25519 signatures of `manifest_sha256` (`signing.py`)
    weights.bin       int8 weights and float32 scales/norms, each tensor 64-byte aligned
    tokenizer.json    the tokenizer (Hugging Face `tokenizers` format)
    graph_*.onnx      one ONNX file per graph; their initializers are external data in weights.bin

Loading reads every file once and checks its sha256 on the way. With
`weights="memory"` (the native and numpy backends) the bytes of `weights.bin`
are kept, in anonymous memory, as they are hashed: the model runs on exactly the
bytes that were checked (and signed), and nothing done to the file afterwards
(truncated, replaced, an SD card read error) can reach it; a model whose weights
were only mapped from the file died of SIGBUS when the file was truncated under
it. With `weights="file"` (ONNX Runtime and LiteRT, which keep their own copies,
and the streamed native backend, which reads each graph's weights with pread)
nothing is kept: opening the package leaves the weights out of resident memory.

Each file's device, inode, size, mtime and ctime are recorded as it is read
(`PackageFiles`); a loaded model compares them with the files before each
request, not each token (one stat per file: 40-50 us for SmolLM2's 6 files on a
shared 2-core x86 VM, against ~0.5 s for a request of 32 tokens), and raises
`PackageChangedError`, naming the file and saying to reload, when the package
on disk is no longer the one it loaded.

Loading trusts nothing in the manifest: it must carry `manifest_sha256`, the
model config must be valid, the tensor table must hold exactly the tensors that
config needs (names, dtypes, shapes, aligned non-overlapping offsets inside
`weights.bin`), and the float32 scales and norms must be finite. Where trusted
keys are configured (`trusted_keys=`, `$EDGE_SDK_TRUSTED_KEYS`), the manifest's
digest must also carry a valid signature by one of them.

Example::

    write_package("out/", cfg, qcfg, qweights, tokenizer)
    pkg = load_package("out/")
    pkg.weights.layers[0].wq.q.shape
    pkg.check_files()      # PackageChangedError once a file of out/ changed
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import mmap
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..model.config import ModelConfig, QuantConfig, RopeScaling
from ..errors import EdgeSDKError, PackageChangedError, PackageError
from ..graphs.layout import ALIGN, QMAT_FIELDS, WEIGHTS, flatten_weights, unflatten_weights
from ..model.quantize import QWeights
from ..model.weights import expected_shapes

FORMAT_NAME = "edge-sdk-package"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
MANIFEST_DIGEST = "manifest_sha256"
TOKENIZER_FIELDS = ("bos_id", "eos_id", "eos_ids", "add_bos", "add_eos", "chat_template")  # Tokenizer.meta()
Q_DTYPE = np.dtype(np.int8)
F_DTYPE = np.dtype("<f4")
WEIGHT_MODES = ("memory", "file")
READ_CHUNK = 4 << 20  # bytes per read while hashing: large enough that the syscalls cost nothing
HUGE_PAGE_MIN = 4 << 20  # buffers from this size on ask for transparent huge pages (a 2 MiB page holds no less)


def is_package(path: str | os.PathLike) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, MANIFEST))


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


def weights_digest(tensors: dict[str, np.ndarray]) -> str:
    """The sha256 `write_weights_bin(path, tensors)` would give the file, computed without writing it: a model
    quantized in memory and the package converted from it have the same digest (`manifest["files"]`)."""
    h = hashlib.sha256()
    offset = 0
    for arr in tensors.values():
        arr = np.ascontiguousarray(arr)
        pad = (-offset) % ALIGN
        h.update(b"\0" * pad)
        h.update(arr.data if arr.size else b"")
        offset += pad + arr.nbytes
    return h.hexdigest()


def file_stamp(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What identifies a file's content without reading it: (device, inode, size, mtime ns, ctime ns).

    A write changes the mtime and the ctime (which `utime` cannot set back); a file replaced by another
    (a new conversion moved into place, a copy) has a new inode."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _what_changed(old: tuple[int, ...], new: tuple[int, ...]) -> str:
    if old[:2] != new[:2]:
        return "replaced by another file"
    if old[2] != new[2]:
        return f"size {old[2]} -> {new[2]} bytes"
    return "modified"


class PackageFiles:
    """The package's files as they were when they were read and checked, and a cheap check that they still are.

    `stamps`: relative path -> `file_stamp` taken on the descriptor the file was read through. `check()` costs
    one stat per file; a loaded model makes it before each request.

    Example::

        files = load_package("pkg/").files
        files.check()            # PackageChangedError naming the first file that changed
        files.read("graphs/head.tflite")   # its bytes, as they were checked
    """

    def __init__(self, path: str, stamps: dict[str, tuple[int, int, int, int, int]]) -> None:
        self.path = path
        self.stamps = dict(stamps)

    def full(self, rel: str) -> str:
        return os.path.join(self.path, rel)

    def _compare(self, rel: str, st: os.stat_result) -> None:
        now = file_stamp(st)
        if now != self.stamps[rel]:
            raise PackageChangedError(f"{self.full(rel)}: {_what_changed(self.stamps[rel], now)} since the model was "
                                      "loaded from it; reload the model to use the package as it is now")

    def check(self) -> None:
        """Raise PackageChangedError if a file is gone or is not the one that was checked at load."""
        for rel in self.stamps:
            try:
                st = os.stat(self.full(rel))
            except OSError as e:
                raise PackageChangedError(f"{self.full(rel)}: {e.strerror or e} since the model was loaded from it; "
                                          "reload the model") from None
            self._compare(rel, st)

    def read(self, rel: str) -> bytes:
        """The bytes of a checked file, read again: refused (PackageChangedError) unless it is still the file that
        was hashed, so its sha256 need not be computed twice."""
        full = self.full(rel)
        try:
            with open(full, "rb") as f:
                self._compare(rel, os.fstat(f.fileno()))
                data = f.read()
                self._compare(rel, os.fstat(f.fileno()))
        except OSError as e:
            raise PackageChangedError(f"{full}: unreadable since the model was loaded from it ({e.strerror or e}); "
                                      "reload the model") from None
        if len(data) != self.stamps[rel][2]:
            raise PackageChangedError(f"{full}: read {len(data)} of its {self.stamps[rel][2]} bytes; reload the model")
        return data


@dataclass
class Package:
    path: str
    config: ModelConfig
    quant: QuantConfig
    weights: QWeights | None  # None when opened with weights="file"
    tokenizer: Any
    manifest: dict[str, Any]
    graphs: list[dict[str, Any]] = field(default_factory=list)
    generation: dict[str, Any] = field(default_factory=dict)  # the model's own sampling defaults
    files: PackageFiles | None = None
    table: dict[str, tuple[int, np.dtype, tuple[int, ...]]] = field(default_factory=dict)  # name -> (offset, dtype, shape)

    def file(self, rel: str) -> str:
        return os.path.join(self.path, rel)

    def check_files(self) -> None:
        """PackageChangedError if a file of the package changed since it was loaded (see `PackageFiles`)."""
        if self.files is not None:
            self.files.check()


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
    generation: dict[str, Any] | None = None,
) -> str:
    """Write the package directory; `extra_files(dir)` may add files (ONNX graphs) and returns their relative paths.

    `runtimes`: how runtime-specific files were written (e.g. {"tflite": {"linear": "segments"}}).
    `generation`: the model's own sampling defaults (`ImportedModel.generation`).
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
        "generation": dict(generation or {}),
        "graphs": graphs or [],
        **({"runtimes": runtimes} if runtimes else {}),
        "tensors": {name: {**entry, "file": WEIGHTS} for name, entry in table.items()},
        "files": {rel: sha256_of(os.path.join(out, rel)) for rel in rels},
    }
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    tmp = os.path.join(out, MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(out, MANIFEST))
    return out


def add_package_files(path: str | os.PathLike, rels: Sequence[str]) -> None:
    """List more files of the package at `path` in its manifest, with their sha256 (the manifest's own digest
    recomputed, the manifest replaced atomically). A signature must be made afterwards."""
    path = os.fspath(path)
    manifest = read_manifest(path)
    for rel in rels:
        if os.path.normpath(rel).startswith("..") or os.path.isabs(rel):
            raise PackageError(f"{os.path.join(path, rel)}: file path escapes the package")
        manifest["files"][rel] = sha256_of(os.path.join(path, rel))
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    tmp = os.path.join(path, MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(path, MANIFEST))


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys, no spaces), without its own digest field."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_manifest(path: str) -> dict[str, Any]:
    """The manifest of the package at `path`: format, version and its own checksum checked."""
    return _read_manifest(path)[0]


def _read_manifest(path: str) -> tuple[dict[str, Any], tuple[int, int, int, int, int]]:
    """The checked manifest and the `file_stamp` of the file it was read from."""
    mpath = os.path.join(path, MANIFEST)
    try:
        with open(mpath, "rb") as f:
            st = os.fstat(f.fileno())
            manifest = json.loads(f.read().decode("utf-8"))
            if file_stamp(os.fstat(f.fileno())) != file_stamp(st):
                raise PackageError(f"{mpath}: changed while it was being read; try again")
    except FileNotFoundError:
        raise PackageError(f"{mpath}: missing; not an edge package") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PackageError(f"{mpath}: not valid JSON ({e})") from e
    except RecursionError:
        raise PackageError(f"{mpath}: JSON nested too deeply for a manifest") from None
    except OSError as e:
        raise PackageError(f"{mpath}: unreadable ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise PackageError(f"{mpath}: not an edge package manifest (format is not {FORMAT_NAME!r})")
    version = manifest.get("format_version")
    if type(version) is not int or version < 1:
        raise PackageError(f"{mpath}: malformed format_version {version!r} (expected an integer >= 1)")
    if version > FORMAT_VERSION:
        raise PackageError(
            f"{mpath}: format version {version} is newer than this edge_sdk reads ({FORMAT_VERSION}); upgrade edge_sdk"
        )
    # Every package this edge_sdk writes has the checksum; without it an edited config (rope_theta, say) or a file
    # whose sha256 was rewritten after its bits were flipped would load silently and generate different text.
    if MANIFEST_DIGEST not in manifest:
        raise PackageError(f"{mpath}: no {MANIFEST_DIGEST} (the manifest's own checksum); the package was edited "
                           "or not written by edge_sdk: convert the model again")
    try:
        digest = manifest_digest(manifest)
    except RecursionError:  # json.load took it, json.dumps (deeper in the stack) does not
        raise PackageError(f"{mpath}: JSON nested too deeply for a manifest") from None
    if manifest[MANIFEST_DIGEST] != digest:
        raise PackageError(f"{mpath}: {MANIFEST_DIGEST} does not match the manifest's content "
                           "(the manifest was edited or corrupted); convert the model again")
    return manifest, file_stamp(st)


def package_config(path: str, manifest: dict[str, Any]) -> tuple[ModelConfig, QuantConfig]:
    """The manifest's model and quantization config, every field checked (PackageError naming the field)."""
    mpath = os.path.join(path, MANIFEST)
    for section in ("model", "quant"):
        if not isinstance(manifest.get(section), dict):
            raise PackageError(f"{mpath}: the {section!r} section is missing or not an object")
    # the writer lists every field: one left out would load as its default (rope_theta=10000.0 for a
    # model trained with another), silently
    rope = manifest["model"].get("rope_scaling")
    for section, fields, have in (("model", ModelConfig, manifest["model"]), ("quant", QuantConfig, manifest["quant"]),
                                  ("model.rope_scaling", RopeScaling, rope if isinstance(rope, dict) else None)):
        missing = [f.name for f in dataclasses.fields(fields) if have is not None and f.name not in have]
        if missing:
            raise PackageError(f"{mpath}: {section}: missing {', '.join(missing)} (a package lists every field)")
    try:
        cfg = ModelConfig.from_dict(manifest["model"])
    except (TypeError, ValueError, EdgeSDKError) as e:
        raise PackageError(f"{mpath}: model: {e}") from None
    quant = manifest["quant"]
    bad = [k for k, v in quant.items() if type(v) is not int]
    try:
        if bad:
            raise TypeError(f"{bad[0]}={quant[bad[0]]!r} must be an integer")
        qcfg = QuantConfig.from_dict(quant)
    except (TypeError, ValueError, EdgeSDKError) as e:
        raise PackageError(f"{mpath}: quant: {e}") from None
    return cfg, qcfg


def package_graphs(path: str, manifest: dict[str, Any], table: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The manifest's graph records, each checked to be one (PackageError naming the graph); given the
    (checked) tensor table, each graph's tensors must also be those of the table: same offset and shape."""
    from ..graphs.spec import specs_from_manifest

    mpath = os.path.join(path, MANIFEST)
    graphs = manifest.get("graphs", [])
    if not isinstance(graphs, list) or not all(isinstance(g, dict) for g in graphs):
        raise PackageError(f"{mpath}: 'graphs' should be a list of graph records")
    try:
        specs = specs_from_manifest(graphs)
    except PackageError as e:
        raise PackageError(f"{mpath}: {e}") from None
    files = manifest.get("files")
    for spec in specs:
        if spec.file and isinstance(files, dict) and spec.file not in files:
            raise PackageError(f"{mpath}: graph {spec.name} names the file {spec.file!r}, which 'files' does not list")
        if table is None:
            continue
        for t in spec.tensors:
            e = table.get(t.name)
            if e is None or e["offset"] != t.offset or tuple(e["shape"]) != tuple(t.shape):
                raise PackageError(f"{mpath}: graph {spec.name} expects tensor {t.name} at offset "
                                   f"{t.offset} with shape {list(t.shape)}; the tensor table has {e}")
    return graphs


def expected_tensors(cfg: ModelConfig, q: QuantConfig) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Name -> (dtype, shape) of every tensor a package of this config holds, in file order."""
    def qmat(prefix: str, rows: int, cols: int) -> None:
        groups = cols // q.group_size if q.group_size else 1
        out[f"{prefix}.q"] = (Q_DTYPE, (rows, cols))
        out[f"{prefix}.scale"] = (F_DTYPE, (rows, groups))

    out: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
    qmat("tok_embd", cfg.vocab_size, cfg.dim)
    shapes = expected_shapes(cfg)
    for i in range(cfg.n_layers):
        out[f"layers.{i}.attn_norm"] = (F_DTYPE, shapes["attn_norm"])
        out[f"layers.{i}.ffn_norm"] = (F_DTYPE, shapes["ffn_norm"])
        for name in QMAT_FIELDS:
            qmat(f"layers.{i}.{name}", *shapes[name])
    out["out_norm"] = (F_DTYPE, (cfg.dim,))
    if not cfg.tied_embeddings:
        qmat("output", cfg.vocab_size, cfg.dim)
    return out


# ---- reading the files: each once, hashed as it is read --------------------------------------------------


def listed_files(path: str, manifest: dict[str, Any]) -> dict[str, str]:
    """The manifest's file list (relative path -> sha256), checked: weights.bin and tokenizer.json are in it, no
    path leaves the package, every file exists."""
    files = manifest.get("files")
    if not isinstance(files, dict) or WEIGHTS not in files:
        raise PackageError(f"{os.path.join(path, MANIFEST)}: no file checksums")
    if TOKENIZER not in files:
        raise PackageError(f"{os.path.join(path, MANIFEST)}: 'files' does not list {TOKENIZER} (every package file has a checksum)")
    for rel in files:
        full = os.path.join(path, rel)
        if os.path.normpath(rel).startswith("..") or os.path.isabs(rel):
            raise PackageError(f"{full}: file path escapes the package")
        if not os.path.isfile(full):
            raise PackageError(f"{full}: listed in the manifest but missing")
    return files


def anonymous_bytes(nbytes: int) -> np.ndarray:
    """A writable uint8 array of `nbytes` on fresh anonymous pages: page-aligned, this process's own memory (no
    file behind it) and given back to the system when its last view goes.

    Large ones ask for transparent huge pages (`MADV_HUGEPAGE`, where the kernel offers them): decode reads
    every weight per token, and with 2 MiB pages instead of 4 KiB ones the TLB covers them. SmolLM2-135M on the
    native core, one thread, 10 interleaved rounds of 32 tokens: 110 tok/s median against 83 (4 KiB anonymous
    pages) and 85 (weights.bin mapped, as the weights were before)."""
    if not hasattr(mmap, "MAP_PRIVATE"):  # not a POSIX system
        return np.empty(nbytes, dtype=np.uint8)
    pages = mmap.mmap(-1, max(nbytes, 1), flags=mmap.MAP_PRIVATE)  # fileno -1: anonymous
    if nbytes >= HUGE_PAGE_MIN and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            pages.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # a kernel without transparent huge pages
            pass
    return np.frombuffer(pages, dtype=np.uint8, count=nbytes)


def read_checked(full: str, digest: str | None, keep: bool) -> tuple[np.ndarray | None, tuple[int, int, int, int, int]]:
    """Read a file once through one descriptor: (its bytes in anonymous memory when `keep`, else None; its
    `file_stamp`). Its sha256 must equal `digest` (None: not computed).

    A read error (EIO from a failing SD card), a file that ends early or one that changes while it is read is a
    PackageError naming it."""
    try:
        fd = os.open(full, os.O_RDONLY)
    except OSError as e:
        raise PackageError(f"{full}: unreadable ({type(e).__name__}: {e.strerror or e})") from None
    off = 0
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PackageError(f"{full}: not a regular file")
        size = st.st_size
        if digest is None and not keep:
            return None, file_stamp(st)
        buf = anonymous_bytes(size) if keep else None
        scratch = None if keep else memoryview(bytearray(min(READ_CHUNK, size)))
        h = hashlib.sha256() if digest is not None else None
        while off < size:
            n = min(READ_CHUNK, size - off)
            view = memoryview(buf)[off : off + n] if buf is not None else scratch[:n]  # type: ignore[index]
            got = os.readv(fd, [view])
            if got == 0:
                raise PackageError(f"{full}: ended at byte {off} of {size} while it was being read; try again")
            if h is not None:
                h.update(view[:got])
            off += got
        if file_stamp(os.fstat(fd)) != file_stamp(st):
            raise PackageError(f"{full}: changed while it was being read; try again")
    except OSError as e:
        raise PackageError(f"{full}: read error at byte {off} ({e.strerror or e}); the storage may be failing") from None
    finally:
        os.close(fd)
    if h is not None and h.hexdigest() != digest:
        raise PackageError(f"{full}: sha256 does not match the manifest (the file was modified or corrupted)")
    if buf is not None:
        buf.flags.writeable = False
    return buf, file_stamp(st)


# ---- the tensor table ------------------------------------------------------------------------------------


def check_table(path: str, manifest: dict[str, Any], cfg: ModelConfig, q: QuantConfig,
                size: int) -> dict[str, tuple[int, np.dtype, tuple[int, ...]]]:
    """The tensor table checked against the config and the size of weights.bin: exactly the expected names, each
    with its dtype and shape, at aligned offsets that do not overlap. Returns name -> (offset, dtype, shape)."""
    wpath = os.path.join(path, WEIGHTS)
    mpath = os.path.join(path, MANIFEST)
    table = manifest.get("tensors")
    if not isinstance(table, dict):
        raise PackageError(f"{mpath}: 'tensors' should be an object (tensor name -> entry)")
    if q.group_size and cfg.dim % q.group_size or q.group_size and cfg.ffn_dim % q.group_size:
        raise PackageError(f"{mpath}: quant group_size={q.group_size} does not divide dim={cfg.dim} and ffn_dim={cfg.ffn_dim}")
    want = expected_tensors(cfg, q)
    missing = [n for n in want if n not in table]
    extra = [n for n in table if n not in want]
    if missing or extra:
        raise PackageError(
            f"{mpath}: the tensor table does not match the model config ({cfg.n_layers} layers, "
            f"{'tied' if cfg.tied_embeddings else 'separate'} output head): "
            + "; ".join(part for part in (
                f"missing {len(missing)} tensors ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})" if missing else "",
                f"{len(extra)} unexpected ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})" if extra else "") if part))
    spans = []
    out: dict[str, tuple[int, np.dtype, tuple[int, ...]]] = {}
    for name, (dtype, shape) in want.items():
        e = table[name]
        if not isinstance(e, dict):
            raise PackageError(f"{mpath}: tensor {name}: entry should be an object, got {e!r}")
        off, got_shape, got_dtype = e.get("offset"), e.get("shape"), e.get("dtype")
        if e.get("file", WEIGHTS) != WEIGHTS:
            raise PackageError(f"{mpath}: tensor {name}: file {e.get('file')!r}, expected {WEIGHTS!r}")
        if type(off) is not int:
            raise PackageError(f"{mpath}: tensor {name}: offset {off!r} is not an integer")
        try:
            dtype_ok = isinstance(got_dtype, str) and np.dtype(got_dtype) == dtype
        except TypeError:
            dtype_ok = False
        if not dtype_ok:
            raise PackageError(f"{mpath}: tensor {name}: dtype {got_dtype!r}, expected {dtype.str!r}")
        if not isinstance(got_shape, list) or tuple(got_shape) != shape or not all(type(d) is int for d in got_shape):
            raise PackageError(f"{mpath}: tensor {name}: shape {got_shape!r}, expected {list(shape)} from the model config")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if off % ALIGN or off < 0 or off + nbytes > size:
            raise PackageError(f"{wpath}: tensor {name} at offset {off} (+{nbytes} bytes) is misaligned or outside the file")
        spans.append((off, off + nbytes, name))
        out[name] = (off, dtype, shape)
    spans.sort()
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        if start < end:
            raise PackageError(f"{mpath}: tensors {a} and {b} overlap in {WEIGHTS}")
    return out


def tensor_nbytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def tensor_views(buf: np.ndarray, table: dict[str, tuple[int, np.dtype, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    """Each tensor of the (checked) table as a view of `buf`, the bytes of weights.bin."""
    out = {}
    for name, (off, dtype, shape) in table.items():
        nbytes = tensor_nbytes(dtype, shape)
        out[name] = buf[off : off + nbytes].view(dtype).reshape(shape) if nbytes else np.zeros(shape, dtype)
    return out


def check_finite(path: str, table: dict[str, tuple[int, np.dtype, tuple[int, ...]]], buf: np.ndarray | None = None) -> None:
    """Scales must be finite and >= 0, norms finite (a few MB of float32: cheap next to the int8 weights).

    `table` is the checked tensor table, `buf` the bytes of weights.bin when they are in memory. Without them the
    values are read with pread, not through a mapping of the file: touching mapped scales, which lie between the
    int8 matrices, made the kernel map most of the file (SmolLM2: +117 MiB resident after loading)."""
    wpath = os.path.join(path, WEIGHTS)
    fd = os.open(wpath, os.O_RDONLY) if buf is None else -1
    try:
        for name, (off, dtype, shape) in table.items():
            if dtype != F_DTYPE:
                continue
            nbytes = tensor_nbytes(dtype, shape)
            if buf is not None:
                arr = buf[off : off + nbytes].view(F_DTYPE)
            else:
                data = os.pread(fd, nbytes, off)
                if len(data) != nbytes:
                    raise PackageError(f"{wpath}: ended before tensor {name} while it was being read; try again")
                arr = np.frombuffer(data, dtype=F_DTYPE)
            ok = np.all(arr >= 0) if name.endswith(".scale") else True
            if not ok or not np.all(np.isfinite(arr)):
                what = "finite and >= 0" if name.endswith(".scale") else "finite"
                raise PackageError(f"{wpath}: tensor {name} holds values that are not {what} (NaN or inf)")
    except OSError as e:
        raise PackageError(f"{wpath}: read error ({e.strerror or e}); the storage may be failing") from None
    finally:
        if fd >= 0:
            os.close(fd)


# ---- opening a package -------------------------------------------------------------------------------------


def load_package(path: str | os.PathLike, verify: bool = True, weights: str = "memory",
                 trusted_keys: Sequence[str | os.PathLike] | None = None) -> Package:
    """Open a package: check its manifest (and signature), read and check its files, build the tokenizer.

    `verify`: compare each file's sha256 with the manifest (False: only read what is needed).
    `weights`: "memory" keeps the bytes of weights.bin, read as they are hashed, and gives `Package.weights`
    (views of them); "file" keeps none (`Package.weights` is None) for backends that read the weights themselves.
    `trusted_keys`: public key files (`edge-sdk keygen`); None takes them from $EDGE_SDK_TRUSTED_KEYS. When there
    are any, the package must carry a signature by one of them (SignatureError otherwise; see `signing.py`).

    Example::

        pkg = load_package("pkg/", trusted_keys=["fleet.key.pub"])
        pkg.weights.tok_embd.q.shape, pkg.files.stamps.keys()
    """
    from ..errors import InvalidArgumentError
    from .signing import check_signature
    from ..text.tokenizer import Tokenizer

    if weights not in WEIGHT_MODES:
        raise InvalidArgumentError(f"weights must be one of {', '.join(WEIGHT_MODES)}, got {weights!r}")
    path = os.fspath(path)
    manifest, mstamp = _read_manifest(path)
    stamps = {MANIFEST: mstamp}
    stamps.update(check_signature(path, manifest, trusted_keys))
    targets: dict[str, str | None] = dict(listed_files(path, manifest)) if verify else {WEIGHTS: None, TOKENIZER: None}
    buf = tok_bytes = None
    for rel, digest in targets.items():
        keep = rel == TOKENIZER or (rel == WEIGHTS and weights == "memory")
        data, stamps[rel] = read_checked(os.path.join(path, rel), digest if verify else None, keep)
        if rel == WEIGHTS:
            buf = data
        elif rel == TOKENIZER:
            tok_bytes = data
    cfg, qcfg = package_config(path, manifest)
    table = check_table(path, manifest, cfg, qcfg, stamps[WEIGHTS][2])
    graphs = package_graphs(path, manifest, manifest["tensors"])
    check_finite(path, table, buf)
    qweights = unflatten_weights(tensor_views(buf, table), cfg, qcfg) if buf is not None else None
    tpath = os.path.join(path, TOKENIZER)
    meta = manifest.get("tokenizer")
    if not isinstance(meta, dict):
        raise PackageError(f"{os.path.join(path, MANIFEST)}: the 'tokenizer' section is missing or not an object")
    missing = [k for k in TOKENIZER_FIELDS if k not in meta]
    if missing:  # each would load as its default, silently (add_eos=False, no chat template...)
        raise PackageError(f"{os.path.join(path, MANIFEST)}: tokenizer: missing {', '.join(missing)} "
                           "(a package lists every field)")
    for flag in ("add_bos", "add_eos"):  # the tokenizer takes any value's truth: "no" would add the token
        if type(meta[flag]) is not bool:
            raise PackageError(f"{os.path.join(path, MANIFEST)}: tokenizer {flag}={meta[flag]!r} should be true or false")
    try:
        text = tok_bytes.tobytes().decode("utf-8")  # type: ignore[union-attr]
    except UnicodeDecodeError as e:
        raise PackageError(f"{tpath}: unreadable ({type(e).__name__}: {e})") from e
    try:
        tok = Tokenizer.from_json(text, **meta)
    except (TypeError, ValueError) as e:
        raise PackageError(f"{os.path.join(path, MANIFEST)}: malformed 'tokenizer' section ({e})") from e
    except EdgeSDKError as e:
        raise PackageError(f"{tpath}: {e} (with the manifest's 'tokenizer' fields)") from e
    if tok.vocab_size > cfg.vocab_size:
        raise PackageError(f"{tpath}: the tokenizer has {tok.vocab_size} tokens but the model only {cfg.vocab_size} embeddings")
    return Package(path=path, config=cfg, quant=qcfg, weights=qweights, tokenizer=tok, manifest=manifest, graphs=graphs,
                   generation=package_generation(path, manifest),
                   files=PackageFiles(os.path.abspath(path), stamps), table=table)  # absolute: cwd may change


def package_generation(path: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's sampling defaults, checked."""
    from ..model.sampling_params import checked_generation_defaults

    mpath = os.path.join(path, MANIFEST)
    if "generation" not in manifest:  # written by every conversion, empty when the model file had none
        raise PackageError(f"{mpath}: no 'generation' section (the model's sampling defaults; a package lists every "
                           "field): convert the model again")
    gen = manifest["generation"]
    if not isinstance(gen, dict):
        raise PackageError(f"{mpath}: 'generation' should be an object of sampling defaults")
    try:
        return checked_generation_defaults(gen, f"{mpath}: generation")
    except EdgeSDKError as e:
        raise PackageError(str(e)) from None
