"""The ONNX Runtime backend: runs a package's ONNX graphs (embed, layer ranges, head).

The package's graphs (`graphs/spec.py`, exported by `onnx_export.py`) are
merged at load into one ONNX model (`onnx_export.merge_graphs`: embed, layer
ranges and head back to back) run by one `InferenceSession`, so one intra-op
thread pool serves the whole model and its threads may spin between ops.
Separate sessions per graph (`merged=False`) each own a pool; pools that
spin then take the cores from each other, so those run with spinning off.
Measured on SmolLM2-135M, 2 threads on 2 cores, decode tok/s: one merged
session 72-81, three sessions without spinning 50-63, three sessions with
spinning 33-37. The K/V cache is one pair of preallocated
buffers per layer, (1, n_kv_heads, ctx, head_dim) float32, bound with I/O
binding as both the `past_*` input and the `present_*` output of its layer
range: GroupQueryAttention writes the new positions in place, so a decode
step costs the same whatever `ctx` is (beyond attention over the filled
positions). RoPE tables (`rope.py`) are inputs bound once.

Memory (SmolLM2-135M, 144 MiB of int8 weights, ctx 512, measured): the
process holds 92 MiB with the package open (the tokenizer: the package is
opened with `weights="file"`, which keeps no weights) and 274 MiB with the
session built (ONNX Runtime's packed copy of the weights: its kernels need
their own layout). The peak while building is 451 MiB, from the folded
int8 -> uint8 temporaries; per-graph sessions (`merged=False`) build one graph
at a time and peak at 388 MiB.

ONNX Runtime keeps mappings of weights.bin for the initializers it does not
fold (38.7 MiB for SmolLM2-135M, the embedding table among them); truncating
the file under the model killed the process with SIGBUS. They are replaced at
load by anonymous copies at the same addresses (`file_pages.detach`): 303 MiB
after loading instead of 274, the peak unchanged. `check_files`, before each
request, says when the package on disk changed.

Loading checks before it builds anything: each graph file's inputs and
outputs against its manifest record, and the merged model's against the
config's interface (`onnx_export.model_io`), so a damaged file whose checksum
was re-signed (an empty one parses as a model with no graph) fails at load
naming it. ONNX Runtime's errors, at build or at run, become BackendError
naming the file or merged model.

Execution providers are a preference list (the caller's, else the board's
`onnxruntime_providers`) with CPU as the fallback; providers missing from
this ONNX Runtime build are reported in a warning, not an error.

Example::

    be = OnnxBackend("smollm2-pkg/", ctx=512, threads=2)
    logits = be.forward(np.array([1, 2, 3]), pos=0, last_only=True)   # (1, vocab)
    be.close()
"""

from __future__ import annotations

import ctypes
import mmap
import os
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import BackendError, InvalidArgumentError
from ..graphs.spec import GraphSpec, specs_from_manifest
from ..model.rope import rope_table
from ..export.package import WEIGHTS
from .base import check_files, check_forward_tokens
from .kv_state import KVSnapshots
from .file_pages import detach
from ..export.onnx import HEAD_FROM, io_mismatch, io_of, merge_graphs, model_io

CPU = "CPUExecutionProvider"
OPT_LEVELS = ("disable", "basic", "extended", "all")
MIN_ORT = (1, 22)  # first release with MatMulNBits' 8-bit CPU kernels (x86; ARM64 from 1.23)


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - onnxruntime is a dependency
        raise BackendError(f"the ONNX backend needs onnxruntime ({e})") from e
    version = tuple(int(p) for p in onnxruntime.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_ORT:
        raise BackendError(f"the ONNX backend needs onnxruntime >= {'.'.join(map(str, MIN_ORT))} "
                           f"(8-bit MatMulNBits kernels); this is {onnxruntime.__version__}")
    return onnxruntime


def resolve_providers(preferred: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(providers to use, in order, CPU last; preferred ones this build lacks)."""
    available = set(_ort().get_available_providers())
    wanted = [p for p in (preferred or ()) if p != CPU]
    used = [p for p in wanted if p in available] + [CPU]
    missing = [p for p in wanted if p not in available]
    return used, missing


def session_options(threads: int | None, optimization: str = "all", config: Mapping[str, str] | None = None,
                    spinning: bool = False) -> Any:
    """SessionOptions: intra-op threads (None: ONNX Runtime's default), optimization level by name, config entries.

    `spinning`: whether the intra-op pool's threads spin while waiting for work (fast when one session has the
    cores to itself; costly when several sessions run back to back, see the module notes).
    """
    ort = _ort()
    if optimization not in OPT_LEVELS:
        raise InvalidArgumentError(f"graph optimization must be one of {', '.join(OPT_LEVELS)}, got {optimization!r}")
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads is not None:
        so.intra_op_num_threads = threads
    entries = {"session.intra_op.allow_spinning": "1" if spinning else "0", **{k: str(v) for k, v in (config or {}).items()}}
    for key, value in entries.items():
        so.add_session_config_entry(key, value)
    return so


def release_freed_heap() -> None:
    """Give freed heap pages back to the system (glibc only; elsewhere nothing happens).

    Building a session folds the int8 -> uint8 weight conversion and packs the
    result; the temporaries are freed, but glibc keeps such blocks in its heap
    after its mmap threshold has grown, so without a trim the resident size
    after loading SmolLM2-135M is ~2x the weights instead of ~1x.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def lazy_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 array of zeros on fresh anonymous pages, which become resident only when written.

    `np.zeros` may take memory the heap already holds and clear it (glibc serves
    calloc from the heap once its mmap threshold has grown, as it does after the
    sessions' large temporaries), which makes the whole K/V cache resident at load:
    90 MiB at ctx 2048 for SmolLM2-135M.
    """
    count = int(np.prod(shape))
    if not hasattr(mmap, "MAP_PRIVATE"):  # not a POSIX system
        return np.zeros(shape, dtype=np.float32)
    pages = mmap.mmap(-1, max(count * 4, 1), flags=mmap.MAP_PRIVATE)  # private: counted as the process's own
    return np.frombuffer(pages, dtype=np.float32, count=count).reshape(shape)


class OnnxBackend(KVSnapshots):
    """A package's ONNX graphs on ONNX Runtime; one sequence at a time."""

    name = "onnx"

    def __init__(self, package: Any, ctx: int, threads: int | None = None, providers: Sequence[str] | None = None,
                 optimization: str = "all", session_config: Mapping[str, str] | None = None,
                 kv_dtype: str = "f32", merged: bool = True) -> None:
        """`merged`: one session for the whole model (default), else one session per graph of the package."""
        from ..export.package import Package, load_package

        pkg = package if isinstance(package, Package) else load_package(package, weights="file")
        if kv_dtype != "f32":
            raise BackendError(f"the ONNX backend keeps its K/V cache in float32; kv_dtype {kv_dtype!r} is not supported")
        self.config = cfg = pkg.config
        if ctx < 1 or ctx > cfg.max_ctx:
            raise InvalidArgumentError(f"ctx must be in [1, {cfg.max_ctx}] for this model, got {ctx}")
        self.ctx = ctx
        self.kv_dtype = kv_dtype
        self.specs: list[GraphSpec] = specs_from_manifest(pkg.graphs)
        if not self.specs or any(not s.file for s in self.specs):
            raise BackendError(f"{pkg.path}: the package has no ONNX graphs; convert the model again with `edge-sdk convert`")
        ort = _ort()
        self.providers, missing = resolve_providers(providers)
        if missing:
            warnings.warn(f"ONNX Runtime providers not available in this build: {', '.join(missing)}; "
                          f"using {', '.join(self.providers)}", RuntimeWarning, stacklevel=2)
        self.merged = merged
        so = session_options(threads, optimization, session_config, spinning=merged)
        # every graph file is read (without its weights) and its interface checked before any session is built:
        # a damaged file whose checksum was re-signed fails here, naming it, not at the first forward
        models = [self._read(pkg.path, spec) for spec in self.specs]
        what = f"{pkg.path}: merged graphs {' + '.join(s.file for s in self.specs)}"
        try:
            merged_model = merge_graphs(models, self.specs)
        except ValueError as e:
            raise BackendError(f"{what}: {e}") from e
        wrong = io_mismatch(io_of(merged_model), model_io(cfg))
        if wrong:  # the graphs together do not make this config's model (a layer range missing, for one)
            raise BackendError(f"{what}: {wrong} (a {cfg.n_layers}-layer model); convert the model again")
        self.sessions, self._what = [], []  # the sessions and, for errors, what each runs
        if merged:
            # the merged model is built in memory; its external data (weights.bin) is found in the package folder
            so.add_session_config_entry("session.model_external_initializers_file_folder_path", str(pkg.path))
            self.sessions.append(self._session(ort, merged_model.SerializeToString(), so, what))
            self._what.append(what)
        else:
            for spec in self.specs:
                path = os.path.join(pkg.path, spec.file)
                self.sessions.append(self._session(ort, path, so, path))
                self._what.append(path)
        self._bind_caches(ort)
        # ONNX Runtime keeps mappings of weights.bin for the initializers it does not fold into its own buffers:
        # detached from the file (file_pages.py), nothing done to the file can reach the model any more. The
        # files must still be those that were hashed, as they were read again since (the graphs, the weights).
        self.package_files = pkg.files
        check_files(self.package_files)
        detach([pkg.file(WEIGHTS)])
        check_files(self.package_files)

    @staticmethod
    def _read(folder: str, spec: GraphSpec) -> Any:
        """The graph's ONNX model without its weights, its inputs and outputs checked against its spec."""
        import onnx

        path = os.path.join(folder, spec.file)
        try:
            model = onnx.load(path, load_external_data=False)
        except Exception as e:  # onnx raises DecodeError and others for a damaged file
            raise BackendError(f"{path}: not a readable ONNX model ({e})") from e
        wrong = io_mismatch(io_of(model), (spec.inputs, spec.outputs))
        if wrong:  # an empty file, for one, parses as a model with no graph
            raise BackendError(f"{path}: {wrong} (graph {spec.name} of the manifest); convert the model again")
        return model

    def _session(self, ort: Any, model: str | bytes, so: Any, what: str) -> Any:
        try:
            session = ort.InferenceSession(model, so, providers=self.providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise BackendError(f"{what}: ONNX Runtime {ort.__version__} cannot load this graph ({e})") from e
        release_freed_heap()
        return session

    # ---- cache and static inputs -----------------------------------------------------------------
    def _bind_caches(self, ort: Any) -> None:
        # The caches stay in host memory whatever the providers. Placing them on a GPU would pay only if the
        # attention node runs there too (else they are copied every step); no board profile uses its GPU yet.
        cfg = self.config
        shape = (1, cfg.n_kv_heads, self.ctx, cfg.head_dim)
        cos, sin = rope_table(cfg, self.ctx)
        self._arrays: dict[str, np.ndarray] = {}  # "key.{i}"/"value.{i}" -> (1, n_kv_heads, ctx, head_dim) float32
        self._values: dict[str, Any] = {}  # OrtValues of the caches and RoPE tables
        for name, arr in (("cos", cos), ("sin", sin)):  # (ctx, head_dim/2) float32
            self._values[name] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr))
        for i in range(cfg.n_layers):
            for kind in ("key", "value"):
                self._arrays[f"{kind}.{i}"] = arr = lazy_zeros(shape)
                self._values[f"{kind}.{i}"] = ort.OrtValue.ortvalue_from_numpy(arr)
        self._io: dict[int, Any] = {}  # session index -> its I/O binding (sessions that run layers)
        for g, sess in enumerate(self.sessions):
            layers = [s for s in (self.specs if self.merged else [self.specs[g]]) if s.kind == "layers"]
            if not layers:
                continue
            try:
                io = sess.io_binding()
                io.bind_ortvalue_input("cos", self._values["cos"])
                io.bind_ortvalue_input("sin", self._values["sin"])
                for i in (i for spec in layers for i in range(spec.first_layer, spec.end_layer)):
                    io.bind_ortvalue_input(f"past_key.{i}", self._values[f"key.{i}"])
                    io.bind_ortvalue_input(f"past_value.{i}", self._values[f"value.{i}"])
                    io.bind_ortvalue_output(f"present_key.{i}", self._values[f"key.{i}"])  # bound once; a call
                    io.bind_ortvalue_output(f"present_value.{i}", self._values[f"value.{i}"])  # rebinds its output only
            except Exception as e:  # onnxruntime's own exception types
                raise BackendError(f"{self._what[g]}: ONNX Runtime cannot bind the K/V cache ({e})") from e
            self._io[g] = io

    def kv_cache(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """The K and V buffers of `layer` (1, n_kv_heads, ctx, head_dim), shared with ONNX Runtime."""
        if f"key.{layer}" not in self._arrays:
            raise BackendError(f"no cache for layer {layer} (the model has {self.config.n_layers} layers)")
        return self._arrays[f"key.{layer}"], self._arrays[f"value.{layer}"]

    def kv_arrays(self) -> dict[str, tuple[np.ndarray, int]]:
        """Every layer's K and V buffer ("key.{i}", "value.{i}"), positions on axis 2; ONNX Runtime reads and
        writes them in place (bound once), so rows restored into them are what the next call attends to."""
        return {name: (a, 2) for name, a in self._arrays.items()}

    # ---- running ---------------------------------------------------------------------------------
    def _run_bound(self, g: int, inputs: Mapping[str, np.ndarray], output: str, shape: tuple[int, ...]) -> np.ndarray:
        """Run session g (caches bound once, in place); `output` is written into a new array of ours."""
        io = self._io[g]
        for name, value in inputs.items():
            io.bind_cpu_input(name, value)
        out = np.empty(shape, dtype=np.float32)
        io.bind_output(output, "cpu", 0, np.float32, list(shape), out.ctypes.data)
        try:
            self.sessions[g].run_with_iobinding(io)
        except Exception as e:  # onnxruntime's own exception types
            raise BackendError(f"{self._what[g]}: ONNX Runtime failed to run this graph ({e})") from e
        return out

    def _run(self, g: int, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Run session g (a graph without caches) on `inputs`; its first output."""
        try:
            return self.sessions[g].run(None, inputs)[0]
        except Exception as e:  # onnxruntime's own exception types
            raise BackendError(f"{self._what[g]}: ONNX Runtime failed to run this graph ({e})") from e

    def forward(self, tokens: np.ndarray, pos: int, last_only: bool = False) -> np.ndarray:
        """Logits (T, vocab) float32 for tokens at positions pos..pos+T-1, or (1, vocab) with last_only."""
        tokens = check_forward_tokens(tokens, pos, self.ctx, self.config.vocab_size)
        if not self.sessions:
            raise BackendError("the ONNX backend is closed")
        pos_in = np.array([pos], dtype=np.int32)
        n, cfg = tokens.shape[1], self.config
        if self.merged:
            rows = 1 if last_only else n
            inputs = {"tokens": tokens, "pos": pos_in, HEAD_FROM: np.array([n - rows], dtype=np.int64)}
            return self._run_bound(0, inputs, "logits", (1, rows, cfg.vocab_size))[0]
        x: np.ndarray = tokens
        for g, spec in enumerate(self.specs):
            if spec.kind == "embed":
                x = self._run(g, {"tokens": x})
            elif spec.kind == "layers":
                x = self._run_bound(g, {"x": x, "pos": pos_in}, "x_out", (1, n, cfg.dim))
            else:
                if last_only:
                    x = np.ascontiguousarray(x[:, -1:])
                x = self._run(g, {"x": x})
        return x[0]

    def check_files(self) -> None:
        check_files(self.package_files)

    def close(self) -> None:
        self._io = {}
        self._values = {}
        self._arrays = {}
        self.sessions = []
