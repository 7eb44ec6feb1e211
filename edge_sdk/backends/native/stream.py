"""The native core with its weights read from the package file graph by graph: for plans that stream them.

When a model's weights do not fit a board's memory budget, its plan (`plan/budget.py`, weights "streamed")
splits the layers into graphs of `layers_per_graph` that fit next to everything else, and counts as resident
only the largest graph (a layer range, or the head, which for tied embeddings is the whole embedding table)
plus the embedding rows. This backend holds exactly that: one buffer the size of the largest graph, into
which each forward call reads every graph's weights in turn (pread from weights.bin) before running it, and
the embedding rows of its tokens. Decode re-reads every weight from storage per token, as the plan says.

The weights are never mapped from the file: a read error (EIO from a failing SD card) or a file that ends
early (truncated under the loaded model) is a PackageChangedError from `forward` naming the file and saying
to reload; the generator's cache stays consistent (it records a position only after its forward returned).
`check_files`, before each request, catches a file replaced or rewritten since it was hashed at load; bytes
rewritten in place during a request are read as they are until that check (they are read, not hashed, per
token). The int8 range of the weights ([-127, 127], which the products need) is checked on the first read of
each graph, at load.

The results are those of `NativeBackend` bit for bit: the same core runs the embedding lookup, the layer
ranges and the head (`NativeCore.embed`, `run_layers`, `head`) on the same bytes.

Example::

    pkg = load_package("pkg/", weights="file")
    be = StreamedNativeBackend(pkg, ctx=512, layers_per_graph=4)
    logits = be.forward(np.array([1, 2, 3]), pos=0, last_only=True)   # (1, vocab)
    be.close()
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import BackendError, InvalidArgumentError, PackageChangedError
from ...export.package import ALIGN, QMAT_FIELDS, WEIGHTS, Package, anonymous_bytes, file_stamp, tensor_nbytes
from ...model.quantize import QMat
from ...plan.budget import DEFAULT_PREFILL_CHUNK
from ..base import check_files, check_forward_tokens
from ..kv_state import KVSnapshots
from .core import NativeCore, PreparedLayers
from .threads import prefer_threads

RUN_GAP = 4096  # tensors less than this apart in the file are read with one pread (the gap too)


@dataclass
class _Graph:
    """One graph's tensors: where they are in the file and where they go in the shared buffer."""

    what: str  # for messages: "layers 0..3", "the head"
    names: list[str]
    runs: list[tuple[int, int, int]] = field(default_factory=list)  # (file offset, bytes, buffer offset)
    local: dict[str, int] = field(default_factory=dict)  # tensor name -> buffer offset
    nbytes: int = 0
    first_layer: int = 0
    end_layer: int = 0
    prepared: PreparedLayers | None = None
    views: dict[str, np.ndarray] = field(default_factory=dict)


def _lay_out(g: _Graph, table: dict[str, tuple[int, np.dtype, tuple[int, ...]]]) -> None:
    """Group the graph's tensors into runs of nearby bytes of the file, each run 64-byte aligned in the buffer
    (file offsets are 64-byte aligned, so every tensor stays aligned)."""
    pos = 0
    run_file = run_end = run_buf = -1
    for off, name in sorted((table[n][0], n) for n in g.names):
        end = off + tensor_nbytes(table[name][1], table[name][2])
        if run_file < 0 or off - run_end >= RUN_GAP:
            if run_file >= 0:
                g.runs.append((run_file, run_end - run_file, run_buf))
                pos = run_buf + run_end - run_file
            run_buf = -(-pos // ALIGN) * ALIGN
            run_file, run_end = off, end
        else:
            run_end = max(run_end, end)
        g.local[name] = run_buf + off - run_file
    if run_file >= 0:
        g.runs.append((run_file, run_end - run_file, run_buf))
        g.nbytes = run_buf + run_end - run_file


class StreamedNativeBackend(KVSnapshots):
    """A package on the native core, its weights read from weights.bin for every forward call."""

    name = "native"

    def __init__(self, package: Package, ctx: int, kv_dtype: str = "f32", threads: int | None = None,
                 layers_per_graph: int = 1, prefill_chunk: int = DEFAULT_PREFILL_CHUNK) -> None:
        cfg, q = package.config, package.quant
        if isinstance(layers_per_graph, bool) or not isinstance(layers_per_graph, int) or layers_per_graph < 1:
            raise InvalidArgumentError(f"layers_per_graph must be an int >= 1, got {layers_per_graph!r}")
        if not package.table or package.files is None:
            raise BackendError(f"{package.path}: the streamed backend needs a package opened by load_package")
        self.config, self.ctx, self.quant, self.kv_dtype = cfg, ctx, q, kv_dtype
        self.layers_per_graph = min(layers_per_graph, cfg.n_layers)
        self.package_files = package.files
        self.path = package.file(WEIGHTS)
        self.table = package.table
        self.threads = prefer_threads() if threads is None else threads
        self.core = NativeCore(cfg, n_threads=self.threads, kv_dtype=kv_dtype, ctx=ctx, act_block=q.act_block,
                               max_tokens=prefill_chunk)
        self.isa = self.core.isa
        self._fd = -1
        try:
            self._open(package)
        except BaseException:
            self.close()
            raise

    def _open(self, package: Package) -> None:
        """Open weights.bin (it must be the file that was hashed), lay the graphs out, read each once."""
        cfg = self.config
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
            st = os.fstat(self._fd)
        except OSError as e:
            raise PackageChangedError(f"{self.path}: unreadable since the package was loaded ({e.strerror or e}); "
                                      "reload the model") from None
        if file_stamp(st) != package.files.stamps.get(WEIGHTS):  # type: ignore[union-attr]
            raise PackageChangedError(f"{self.path}: changed since the package was loaded; reload the model")
        self.layer_graphs: list[_Graph] = []
        for a in range(0, cfg.n_layers, self.layers_per_graph):
            b = min(a + self.layers_per_graph, cfg.n_layers)
            names = [f"layers.{i}.{t}" for i in range(a, b) for t in (
                "attn_norm", "ffn_norm", *(f"{f}.{p}" for f in QMAT_FIELDS for p in ("q", "scale")))]
            self.layer_graphs.append(_Graph(f"layers {a}..{b - 1}", names, first_layer=a, end_layer=b))
        self._head_name = "tok_embd" if cfg.tied_embeddings else "output"
        self.head_graph = _Graph("the head", ["out_norm", f"{self._head_name}.q", f"{self._head_name}.scale"])
        graphs = [*self.layer_graphs, self.head_graph]
        for g in graphs:
            _lay_out(g, self.table)
        self.buffer_bytes = max(g.nbytes for g in graphs)
        self._buf = anonymous_bytes(self.buffer_bytes)  # (buffer_bytes,) uint8, shared by all graphs in turn
        for g in graphs:
            g.views = {n: self._view(g, n) for n in g.names}
        for g in self.layer_graphs:
            layers = [{f: g.views[f"layers.{i}.{f}"] for f in ("attn_norm", "ffn_norm")}
                      | {f: self._qmat(g, f"layers.{i}.{f}") for f in QMAT_FIELDS}
                      for i in range(g.first_layer, g.end_layer)]
            g.prepared = self.core.prepare_layers(layers, check_range=False)  # checked below, once read
        for g in graphs:  # every graph read once now: a file that cannot be read fails at load, not at a token
            self._read(g)
            for name, arr in g.views.items():
                if name.endswith(".q") and arr.size and int(arr.min()) < -127:
                    raise BackendError(f"{self.path}: tensor {name}: int8 weights must lie in [-127, 127] (found -128)")
        e_off, _, _ = self.table["tok_embd.q"]
        s_off, _, (_, groups) = self.table["tok_embd.scale"]
        self._embed_at = (e_off, s_off, groups)

    # ---- reading ---------------------------------------------------------------------------------------------
    def _view(self, g: _Graph, name: str) -> np.ndarray:
        _, dtype, shape = self.table[name]
        at = g.local[name]
        return self._buf[at : at + tensor_nbytes(dtype, shape)].view(dtype).reshape(shape)

    def _qmat(self, g: _Graph, prefix: str) -> QMat:
        return QMat(q=g.views[f"{prefix}.q"], scale=g.views[f"{prefix}.scale"], group_size=self.quant.group_size)

    def _pread(self, dst: memoryview, offset: int, what: str) -> None:
        done = 0
        while done < len(dst):
            try:
                n = os.preadv(self._fd, [dst[done:]], offset + done)
            except OSError as e:
                raise PackageChangedError(f"{self.path}: read error at byte {offset + done} while reading the weights "
                                          f"of {what} ({e.strerror or e}); the storage may be failing: reload the "
                                          "model") from None
            if n == 0:
                raise PackageChangedError(f"{self.path}: ends at byte {offset + done}, inside the weights of {what} "
                                          "(truncated since the model was loaded); reload the model")
            done += n

    def _read(self, g: _Graph) -> None:
        if self._fd < 0:
            raise BackendError("this backend is closed")
        buf = memoryview(self._buf)
        for file_off, nbytes, at in g.runs:
            self._pread(buf[at : at + nbytes], file_off, g.what)

    def _embed_rows(self, ids: np.ndarray) -> np.ndarray:
        """x (T, dim): the embedding rows of `ids`, read from the file (one pread per distinct id and part)."""
        e_off, s_off, groups = self._embed_at
        dim = self.config.dim
        uniq, index = np.unique(ids, return_inverse=True)
        q = np.empty((uniq.size, dim), np.int8)
        s = np.empty((uniq.size, groups), np.float32)
        for r, t in enumerate(uniq.tolist()):
            self._pread(memoryview(q[r]).cast("B"), e_off + t * dim, "the embedding")
            self._pread(memoryview(s[r]).cast("B"), s_off + t * groups * 4, "the embedding")
        return self.core.embed(QMat(q=q, scale=s, group_size=self.quant.group_size), index.astype(np.int32))

    # ---- the Backend interface ---------------------------------------------------------------------------------
    def forward(self, tokens: np.ndarray, pos: int, last_only: bool = False) -> np.ndarray:
        """Logits (T, vocab) float32 for tokens at positions pos..pos+T-1, or (1, vocab) with last_only."""
        ids = check_forward_tokens(tokens, pos, self.ctx, self.config.vocab_size)[0]
        x = self._embed_rows(ids)
        for g in self.layer_graphs:
            self._read(g)
            x = self.core.run_layers(g.prepared, g.first_layer, x, int(pos))  # type: ignore[arg-type]
        self._read(self.head_graph)
        head = self.head_graph
        return self.core.head(x[-1:] if last_only else x, head.views["out_norm"], self._qmat(head, self._head_name))

    def kv_arrays(self) -> dict[str, tuple[np.ndarray, int]]:
        return self.core.kv_arrays()

    def check_files(self) -> None:
        check_files(self.package_files)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.core.close()

    def info(self) -> dict[str, Any]:
        return {"weights": "streamed", "layers_per_graph": self.layers_per_graph, "buffer_bytes": self.buffer_bytes}
