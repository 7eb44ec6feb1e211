"""The FFI to the native core: the only module that touches cffi.

The cdef is the marked region of `native/include/edge_sdk.h` (the header is
the ABI, so there is one source of truth); the library is loaded in ABI mode
(`ffi.dlopen`), so no compiler is needed at import time once the library
exists (built at install time, lazily on first use, or pointed at by
`EDGE_SDK_NATIVE_LIB`). Every numpy array is checked (dtype, shape,
C-contiguity, alignment where the C side requires it) before a call, every
non-zero status becomes `NativeError`, and no cffi object leaves this module.

Example::

    ok, why = available()
    if ok:
        core = NativeCore(cfg, n_threads=2, kv_dtype="f16", ctx=512)
        core.load_weights(qweights)              # edge_sdk.model.quantize.QWeights
        logits = core.forward(np.array([1, 2, 3]), pos=0, last_only=True)
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ...model.config import ModelConfig
from ...errors import BackendError, NativeError, PlanError, UnsupportedModelError
from ...plan.records import Buffer
from . import build as _native_build
from ...plan.arena import ArenaPlan
from ...plan.arena import plan as plan_arena
from ...plan.verify import verify as verify_arena
from ...plan.native_buffers import ALIGN, DEFAULT_ACT_BLOCK, arena_bytes, layer_buffers

ISA_NAMES = ("generic", "avx2", "avx512vnni", "neon", "dotprod", "i8mm", "neon32")
KERNEL_NAMES = (
    "quantize_row", "matvec_q8", "matmul_q8", "rmsnorm", "rope", "attention", "softmax",
    "swiglu", "add", "embed_row", "f32_to_f16", "f16_to_f32",
)
CPU_FEATURES = {
    "avx2": 1, "fma": 2, "f16c": 4, "avx512f": 8, "avx512bw": 16, "avx512vl": 32, "avx512vnni": 64,
    "neon": 256, "asimddp": 512, "i8mm": 1024, "fp16": 2048,
}
LAYER_FIELDS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")
QMAX = 127

# ---- loading ---------------------------------------------------------------


def cdef_text(header: str) -> str:
    """The declarations between ES_CDEF_BEGIN and ES_CDEF_END of the header."""
    m = re.search(r"/\* ES_CDEF_BEGIN \*/(.*)/\* ES_CDEF_END \*/", header, re.S)
    if not m:
        raise BackendError("edge_sdk.h has no ES_CDEF_BEGIN/ES_CDEF_END region")
    return m.group(1)


def _header_text() -> str:
    for p in (_native_build.native_source_dir() / "include" / "edge_sdk.h",
              Path(__file__).resolve().parents[2] / "_native" / "edge_sdk.h"):
        if p.is_file():
            return p.read_text()
    raise BackendError("edge_sdk.h not found (neither native/include nor edge_sdk/_native)")


@dataclass(frozen=True)
class _Native:
    ffi: Any
    lib: Any
    path: Path

    def check(self, status: int, what: str) -> None:
        if status != 0:
            msg = self.ffi.string(self.lib.es_status_str(status)).decode()
            raise NativeError(f"{what}: {msg} (status {status})")


@functools.lru_cache(maxsize=1)
def _load() -> tuple[_Native | None, str]:
    """Load (building if needed) the library once per process: (native, "") or (None, why)."""
    try:
        import cffi
    except ImportError as e:  # pragma: no cover - cffi is a dependency
        return None, f"cffi is not installed: {e}"
    try:
        header = _header_text()
        path = _native_build.ensure_library()
        ffi = cffi.FFI()
        ffi.cdef(cdef_text(header))
        lib = ffi.dlopen(str(path))
        n = _Native(ffi, lib, path)
        ver = ffi.new("uint32_t *")
        n.check(lib.es_abi_version(ver), "es_abi_version")
        if ver[0] != lib.ES_ABI_VERSION:
            return None, f"{path} has ABI version {ver[0]}, the header says {lib.ES_ABI_VERSION}: rebuild it"
        return n, ""
    except (BackendError, OSError) as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - cffi parse errors and the like: report, numpy path still works
        return None, f"{type(e).__name__}: {e}"


def available() -> tuple[bool, str]:
    """(True, description) if the native core can run here, else (False, reason).

    Example::

        ok, why = available()
        if not ok:
            warnings.warn(f"native backend unavailable: {why}")
    """
    n, why = _load()
    if n is None:
        return False, why
    info = library_info()
    return True, f"{n.path} ({info['isa']} kernels)"


def _native() -> _Native:
    n, why = _load()
    if n is None:
        raise BackendError(f"the native core is not available: {why}")
    return n


def library_info() -> dict[str, Any]:
    """What the loaded library found: path, CPU features, kernel set per ISA.

    Example::

        >>> library_info()["isa"] in ISA_NAMES
        True
    """
    n = _native()
    ffi, lib = n.ffi, n.lib
    feat = ffi.new("uint32_t *")
    n.check(lib.es_cpu_features(feat), "es_cpu_features")
    best = ffi.new("int32_t *")
    n.check(lib.es_best_isa(best), "es_best_isa")
    supported = []
    for i, name in enumerate(ISA_NAMES):
        ok = ffi.new("int32_t *")
        n.check(lib.es_isa_supported(i, ok), "es_isa_supported")
        if ok[0]:
            supported.append(name)
    return {
        "path": str(n.path),
        "cpu_features": [k for k, bit in CPU_FEATURES.items() if feat[0] & bit],
        "isa": ISA_NAMES[best[0]],
        "supported_isas": supported,
        "kernels": {isa: kernel_names(isa) for isa in supported},
    }


def kernel_names(isa: str = "auto") -> dict[str, str]:
    """Implementation chosen for each kernel by a kernel set, e.g. {"matvec_q8": "matvec_q8_avx512vnni", ...}."""
    n = _native()
    names = n.ffi.new("const char *[]", len(KERNEL_NAMES))
    n.check(n.lib.es_kernel_names(_isa_id(isa), names, len(KERNEL_NAMES)), f"es_kernel_names({isa})")
    return {k: n.ffi.string(names[i]).decode() for i, k in enumerate(KERNEL_NAMES)}


def _isa_id(isa: str) -> int:
    if isa == "auto":
        return -1
    if isa not in ISA_NAMES:
        raise BackendError(f"unknown ISA {isa!r}; choose auto or one of {', '.join(ISA_NAMES)}")
    return ISA_NAMES.index(isa)


def native_layer_buffers(
    cfg: ModelConfig, n_tokens: int, ctx: int, n_threads: int, act_block: int = DEFAULT_ACT_BLOCK
) -> list[Buffer]:
    """The C library's own buffer trace (`es_layer_buffers`); `native_buffers.layer_buffers` mirrors it."""
    n = _native()
    dims = n.ffi.new("es_dims *", {
        "dim": cfg.dim, "n_heads": cfg.n_heads, "n_kv_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
        "ffn_dim": cfg.ffn_dim, "vocab_size": cfg.vocab_size, "n_layers": cfg.n_layers,
        "act_block": int(act_block), "rms_eps": cfg.rms_eps,
    })
    count = n.lib.ES_BUF_COUNT
    info = n.ffi.new("es_buffer_info[]", count)
    n.check(n.lib.es_layer_buffers(dims, int(n_tokens), int(ctx), int(n_threads), info, count), "es_layer_buffers")
    return [Buffer(n.ffi.string(n.lib.es_buffer_name(i)).decode(), int(info[i].size_bytes),
                   int(info[i].first_use), int(info[i].last_use)) for i in range(count)]


# ---- array checks ----------------------------------------------------------


def _need(a: Any, dtype: type, shape: tuple[int, ...], name: str, align: int = 1) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise BackendError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != np.dtype(dtype):
        raise BackendError(f"{name} must be {np.dtype(dtype)}, got {a.dtype}")
    if a.shape != shape:
        raise BackendError(f"{name} must have shape {shape}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise BackendError(f"{name} must be C-contiguous")
    if a.ctypes.data % max(align, a.dtype.itemsize):  # 32-bit ARM faults on misaligned float loads
        raise BackendError(f"{name} must be {max(align, a.dtype.itemsize)}-byte aligned")
    return a


def _aligned_empty(nbytes: int, align: int = ALIGN) -> np.ndarray:
    raw = np.zeros(nbytes + align, dtype=np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start : start + nbytes]


def _token_ids(ids: Any, name: str) -> np.ndarray:
    """A non-empty int32 vector of token ids; floats, booleans and ids that int32 cannot hold are refused
    (the native side checks them against the vocabulary)."""
    a = np.asarray(ids).reshape(-1)
    if a.size == 0:
        raise BackendError(f"{name} is empty")
    if a.dtype.kind not in "iu":
        raise BackendError(f"{name} must be integer token ids, got dtype {a.dtype}")
    if a.dtype.itemsize > 4 or a.dtype == np.uint32:
        lo, hi = int(a.min()), int(a.max())
        if lo < -(2**31) or hi >= 2**31:
            raise BackendError(f"{name}: token id {lo if lo < -(2**31) else hi} is outside int32")
    return np.ascontiguousarray(a, dtype=np.int32)


def _qmat_parts(m: Any, name: str) -> tuple[np.ndarray, np.ndarray, int, int | None]:
    """(q, scale, group_size, act_block or None) of a QMat-like object or a (q, scale) pair."""
    if isinstance(m, tuple) and len(m) == 2:
        q, scale, gs, ab = m[0], m[1], None, None
    else:
        q, scale = getattr(m, "q", None), getattr(m, "scale", None)
        gs, ab = getattr(m, "group_size", None), getattr(m, "act_block", None)
    if not isinstance(q, np.ndarray) or q.ndim != 2:
        raise BackendError(f"{name}: q must be a 2-D int8 array")
    rows, cols = q.shape
    if not isinstance(scale, np.ndarray) or scale.ndim != 2 or scale.shape[0] != rows or scale.shape[1] < 1:
        raise BackendError(f"{name}: scale must be a (rows, n_groups) float32 array")
    ng = scale.shape[1]
    if cols % ng:
        raise BackendError(f"{name}: {ng} scale groups do not divide {cols} columns")
    inferred = 0 if ng == 1 else cols // ng
    if gs is None:
        gs = inferred
    if (gs or cols) != cols // ng:
        raise BackendError(f"{name}: group_size={gs} but scale has {ng} groups for {cols} columns")
    _need(q, np.int8, (rows, cols), f"{name}.q")
    _need(scale, np.float32, (rows, ng), f"{name}.scale")
    return q, scale, int(gs), None if ab is None else int(ab)


# ---- the core ----------------------------------------------------------------


class PreparedLayers:
    """Layer weights checked and laid out as C structs once (opaque; keeps the arrays alive).

    Made by `NativeCore.prepare_layers`; pass it to `NativeCore.run_layers`.
    """

    def __init__(self, core: "NativeCore", layers: Sequence[Any], check_range: bool) -> None:
        n = core._n
        self._core = core
        self._keep: list[np.ndarray] = []
        self._structs = n.ffi.new("es_layer_weights[]", max(1, len(layers)))
        self.n_layers = len(layers)
        for i, layer in enumerate(layers):
            s = self._structs[i]
            for norm in ("attn_norm", "ffn_norm"):
                arr = _need(_field(layer, norm), np.float32, (core.cfg.dim,), f"layer {i} {norm}")
                self._keep.append(arr)
                setattr(s, norm, n.ffi.cast("const float *", arr.ctypes.data))
            for f in LAYER_FIELDS:
                core._fill_qmat(getattr(s, f), _field(layer, f), f"layer {i} {f}", self._keep, check_range)


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        if name not in obj:
            raise BackendError(f"layer weights have no {name!r}")
        return obj[name]
    if not hasattr(obj, name):
        raise BackendError(f"layer weights have no {name!r}")
    return getattr(obj, name)


class NativeCore:
    """A LLaMA model's graphs on the native core: embed, layer ranges, head.

    Owns an es_ctx (thread pool + kernel set), the KV cache (numpy,
    `(n_layers, n_kv_heads, ctx, head_dim)` float32 or float16), the RoPE table
    and one scratch arena planned for `max_tokens` tokens per call (longer
    inputs are run in chunks; the results are the same bits). Not thread-safe:
    one call at a time.

    Example::

        core = NativeCore(cfg, n_threads=2, kv_dtype="f16", ctx=256)
        x = core.embed(qw.tok_embd, np.array([1, 2, 3]))
        x = core.run_layers(qw.layers, 0, x, pos=0)
        logits = core.head(x[-1:], qw.out_norm, qw.head)
    """

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        n_threads: int = 1,
        kv_dtype: str = "f32",
        ctx: int | None = None,
        act_block: int = DEFAULT_ACT_BLOCK,
        max_tokens: int = 64,
        isa: str = "auto",
        rope: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if cfg.arch != "llama":
            raise UnsupportedModelError(f"the native core runs llama-architecture models, not {cfg.arch!r}")
        if kv_dtype not in ("f32", "f16"):
            raise BackendError(f"kv_dtype must be 'f32' or 'f16', got {kv_dtype!r}")
        if not 1 <= int(n_threads) <= 256:
            raise BackendError(f"n_threads must be in [1, 256], got {n_threads}")
        if int(max_tokens) < 1:
            raise BackendError(f"max_tokens must be positive, got {max_tokens}")
        self._n = _native()
        self.cfg = cfg
        self.ctx = int(ctx or cfg.max_ctx)
        if self.ctx < 1:
            raise BackendError(f"ctx must be positive, got {ctx}")
        self.n_threads = int(n_threads)
        self.kv_dtype = kv_dtype
        self.act_block = int(act_block)
        self.max_tokens = min(int(max_tokens), self.ctx)
        ffi, lib = self._n.ffi, self._n.lib

        pctx = ffi.new("es_ctx **")
        self._n.check(lib.es_ctx_create(self.n_threads, _isa_id(isa), pctx), f"creating a native context (isa={isa})")
        self._ctx = pctx[0]
        info_t, info_i = ffi.new("int32_t *"), ffi.new("int32_t *")
        self._n.check(lib.es_ctx_info(self._ctx, info_t, info_i), "es_ctx_info")
        self.isa = ISA_NAMES[info_i[0]]

        self._dims = ffi.new("es_dims *", {
            "dim": cfg.dim, "n_heads": cfg.n_heads, "n_kv_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
            "ffn_dim": cfg.ffn_dim, "vocab_size": cfg.vocab_size, "n_layers": cfg.n_layers,
            "act_block": self.act_block, "rms_eps": cfg.rms_eps,
        })
        shape = (cfg.n_layers, cfg.n_kv_heads, self.ctx, cfg.head_dim)
        dt = np.float16 if kv_dtype == "f16" else np.float32
        self._k = np.zeros(shape, dtype=dt)
        self._v = np.zeros(shape, dtype=dt)
        self._kv = ffi.new("es_kv_cache *", {
            "k": ffi.cast("void *", self._k.ctypes.data), "v": ffi.cast("void *", self._v.ctypes.data),
            "dtype": 1 if kv_dtype == "f16" else 0, "n_layers": cfg.n_layers, "n_kv_heads": cfg.n_kv_heads,
            "ctx": self.ctx, "head_dim": cfg.head_dim,
        })
        if rope is None:
            from ...model.rope import rope_table

            rope = rope_table(cfg, self.ctx)
        half = cfg.head_dim // 2
        self._cos = _need(np.ascontiguousarray(rope[0], dtype=np.float32)[: self.ctx], np.float32,
                          (self.ctx, half), "rope cos")
        self._sin = _need(np.ascontiguousarray(rope[1], dtype=np.float32)[: self.ctx], np.float32,
                          (self.ctx, half), "rope sin")
        self._rope = ffi.new("es_rope *", {
            "cos": ffi.cast("const float *", self._cos.ctypes.data),
            "sin": ffi.cast("const float *", self._sin.ctypes.data), "n_pos": self.ctx, "half_dim": half,
        })
        self.buffers = layer_buffers(cfg, self.max_tokens, self.ctx, self.n_threads, self.act_block)
        # the scratch arena is laid out by the memory planner; set_plan checks it with the planner's verifier
        arena = plan_arena(self.buffers, ALIGN, "greedy_by_size")
        self.arena_plan = arena
        self.set_plan(arena.offsets_for(self.buffers), arena.arena_bytes)
        self._model: dict[str, Any] | None = None

    # ---- lifetime ----

    def close(self) -> None:
        """Stop the thread pool; the object is unusable afterwards."""
        if getattr(self, "_ctx", None) is not None:
            self._n.lib.es_ctx_destroy(self._ctx)
            self._ctx = None

    def __enter__(self) -> "NativeCore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _live(self) -> Any:
        if self._ctx is None:
            raise BackendError("this NativeCore is closed")
        return self._ctx

    # ---- state ----

    def set_plan(self, offsets: Sequence[int], arena_size: int | None = None, verify: bool = True) -> None:
        """Use these buffer offsets (e.g. from the memory planner) for `self.buffers`.

        `self.buffers` is `layer_buffers(cfg, max_tokens, ctx, n_threads,
        act_block)`; plan exactly those. The planner's verifier checks here that
        the buffers fit, are 64-byte aligned and that no two alive at the same op
        share bytes; the native side checks the same again on every call
        (`verify=False` leaves it to the native side alone).
        """
        offs = [int(o) for o in offsets]
        if len(offs) != len(self.buffers):
            raise BackendError(f"{len(offs)} offsets for {len(self.buffers)} buffers")
        size = int(arena_size) if arena_size is not None else arena_bytes(self.buffers, offs)
        if verify:
            plan = ArenaPlan("caller's", ALIGN, {b.name: o for b, o in zip(self.buffers, offs)}, size)
            try:
                verify_arena(self.buffers, plan, ALIGN)
            except PlanError as e:
                raise BackendError(f"arena plan refused: {e}") from None
        self._offsets = np.array(offs, dtype=np.uint64)
        self._arena = _aligned_empty(max(size, 1))
        self.arena_size = size

    def reset(self) -> None:
        """Forget the KV cache (zero it)."""
        self._k.fill(0)
        self._v.fill(0)

    @property
    def kv_cache(self) -> tuple[np.ndarray, np.ndarray]:
        """Read-only views of K and V, (n_layers, n_kv_heads, ctx, head_dim)."""
        k, v = self._k.view(), self._v.view()
        k.flags.writeable = False
        v.flags.writeable = False
        return k, v

    def kernel_names(self) -> dict[str, str]:
        """Kernel implementations this core runs."""
        return kernel_names(self.isa)

    # ---- helpers ----

    def _ptr(self, ctype: str, a: np.ndarray) -> Any:
        return self._n.ffi.cast(ctype, a.ctypes.data)

    def _arena_args(self) -> tuple[Any, int, Any, int]:
        return (self._ptr("void *", self._arena), self.arena_size,
                self._ptr("const uint64_t *", self._offsets), len(self.buffers))

    def _fill_qmat(self, s: Any, m: Any, name: str, keep: list[np.ndarray], check_range: bool,
                   act_block: int | None = None, product: bool = True) -> None:
        q, scale, gs, ab = _qmat_parts(m, name)
        want = self.act_block if act_block is None else act_block
        if product and ab is not None and ab != want:
            raise BackendError(f"{name}: quantized for act_block={ab}, this core runs act_block={want}")
        if check_range and q.size and int(q.min()) < -QMAX:
            raise BackendError(f"{name}: int8 weights must lie in [-127, 127] (found -128)")
        keep.extend((q, scale))
        s.q = self._ptr("const int8_t *", q)
        s.scale = self._ptr("const float *", scale)
        s.rows, s.cols = q.shape
        s.group_size = gs
        s.act_block = want

    def _qmat(self, m: Any, name: str, keep: list[np.ndarray], act_block: int | None = None,
              product: bool = True) -> Any:
        s = self._n.ffi.new("es_qmat *")
        # products need weights in [-127, 127] (the AVX2 kernels' sign trick cannot negate -128); a lookup does not
        self._fill_qmat(s[0], m, name, keep, check_range=product, act_block=act_block, product=product)
        return s

    def _x(self, x: Any, name: str = "x") -> np.ndarray:
        x = np.array(x, dtype=np.float32, order="C", copy=True)
        if x.ndim != 2 or x.shape[1] != self.cfg.dim or x.shape[0] < 1:
            raise BackendError(f"{name} must be (n_tokens, {self.cfg.dim}), got {x.shape}")
        return x

    # ---- kernels ----

    def quantize_rows(self, x: np.ndarray, act_block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Quantize each row of x (rows, cols) float32: q int8 (rows, cols), scales (rows, cols/act_block)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.size == 0:
            raise BackendError(f"x must be a non-empty 2-D array, got shape {x.shape}")
        ab = self.act_block if act_block is None else int(act_block)
        rows, cols = x.shape
        if ab < 0 or (ab and cols % ab):
            raise BackendError(f"act_block={ab} must be 0 or divide {cols}")
        q = np.empty((rows, cols), dtype=np.int8)
        s = np.empty((rows, cols // ab if ab else 1), dtype=np.float32)
        self._n.check(self._n.lib.es_quantize_rows(self._live(), self._ptr("const float *", x), rows, cols, ab,
                                                   self._ptr("int8_t *", q), self._ptr("float *", s)),
                      "es_quantize_rows")
        return q, s

    def matmul_q8(self, xq: np.ndarray, xs: np.ndarray, w: Any, act_block: int | None = None) -> np.ndarray:
        """y (T, rows) float32: the int8 product of quantized activations with a QMat."""
        keep: list[np.ndarray] = []
        s = self._qmat(w, "w", keep, act_block=act_block)
        rows, cols, ab = s.rows, s.cols, s.act_block
        if xq.ndim != 2:
            raise BackendError(f"xq must be (n_tokens, {cols}), got {xq.shape}")
        t = xq.shape[0]
        _need(xq, np.int8, (t, cols), "xq")
        _need(xs, np.float32, (t, cols // ab if ab else 1), "xs")
        y = np.empty((t, rows), dtype=np.float32)
        self._n.check(self._n.lib.es_matmul_q8(self._live(), self._ptr("const int8_t *", xq),
                                               self._ptr("const float *", xs), t, s, self._ptr("float *", y)),
                      "es_matmul_q8")
        return y

    # ---- graphs ----

    def prepare_layers(self, layers: Sequence[Any], check_range: bool = True) -> PreparedLayers:
        """Check a list of layer weights (QLayer-like objects or dicts) and lay them out once."""
        return PreparedLayers(self, layers, check_range)

    def embed(self, table: Any, ids: Any) -> np.ndarray:
        """x (T, dim) float32: rows `ids` of the int8 embedding table, dequantized."""
        ids = _token_ids(ids, "ids")
        keep: list[np.ndarray] = []
        # the lookup reads no activations; pass the core's act_block so grouped tables validate as in es_run_model
        s = self._qmat(table, "embedding table", keep, product=False)
        if s.cols != self.cfg.dim:
            raise BackendError(f"embedding table has {s.cols} columns, the model dim is {self.cfg.dim}")
        out = np.empty((ids.size, s.cols), dtype=np.float32)
        self._n.check(self._n.lib.es_run_embed(self._live(), s, self._ptr("const int32_t *", ids), ids.size,
                                               self._ptr("float *", out)), "es_run_embed")
        return out

    def run_layers(self, layers: Sequence[Any] | PreparedLayers, layer0: int, x: Any, pos: int) -> np.ndarray:
        """Run layers layer0 .. layer0+len(layers)-1 on x (T, dim) at positions pos .. pos+T-1.

        Writes those positions of the KV cache and returns the new x (the
        input is not modified).
        """
        prep = layers if isinstance(layers, PreparedLayers) else self.prepare_layers(layers)
        x = self._x(x)
        ctx = self._live()
        for c0 in range(0, x.shape[0], self.max_tokens):
            xc = x[c0 : c0 + self.max_tokens]
            self._n.check(self._n.lib.es_run_layers(
                ctx, self._dims, prep._structs, int(layer0), prep.n_layers, self._kv, self._rope,
                self._ptr("float *", xc), xc.shape[0], int(pos) + c0, *self._arena_args()), "es_run_layers")
        return x

    def head(self, x: Any, out_norm: np.ndarray, head: Any) -> np.ndarray:
        """logits (T, vocab) float32 of x (T, dim): final rmsnorm, quantize, int8 product."""
        x = self._x(x)
        _need(out_norm, np.float32, (self.cfg.dim,), "out_norm")
        keep: list[np.ndarray] = []
        s = self._qmat(head, "head", keep)
        out = np.empty((x.shape[0], s.rows), dtype=np.float32)
        for c0 in range(0, x.shape[0], self.max_tokens):
            xc, oc = x[c0 : c0 + self.max_tokens], out[c0 : c0 + self.max_tokens]
            self._n.check(self._n.lib.es_run_head(
                self._live(), self._dims, self._ptr("const float *", out_norm), s, self._ptr("const float *", xc),
                xc.shape[0], self._ptr("float *", oc), *self._arena_args()), "es_run_head")
        return out

    # ---- the whole model ----

    def load_weights(self, weights: Any, check_range: bool = True) -> None:
        """Keep a whole model (QWeights-like: tok_embd, layers, out_norm, head) for `forward`."""
        keep: list[np.ndarray] = []
        ffi = self._n.ffi
        layers = self.prepare_layers(weights.layers, check_range)
        if layers.n_layers != self.cfg.n_layers:
            raise BackendError(f"{layers.n_layers} layers given, the config has {self.cfg.n_layers}")
        out_norm = _need(weights.out_norm, np.float32, (self.cfg.dim,), "out_norm")
        head = getattr(weights, "head", None)
        if head is None:
            head = weights.output if getattr(weights, "output", None) is not None else weights.tok_embd
        m = ffi.new("es_model_weights *")
        self._fill_qmat(m.embed, weights.tok_embd, "tok_embd", keep, check_range, product=False)
        self._fill_qmat(m.head, head, "head", keep, check_range)
        m.layers = layers._structs
        m.out_norm = self._ptr("const float *", out_norm)
        keep.append(out_norm)
        self._model = {
            "struct": m, "layers": layers, "keep": keep, "tok_embd": weights.tok_embd,
            "x": np.empty((self.max_tokens, self.cfg.dim), dtype=np.float32),
        }

    def forward(self, tokens: Any, pos: int, last_only: bool = False) -> np.ndarray:
        """Logits (T, vocab), or (1, vocab) for the last token when last_only (the Backend interface)."""
        if self._model is None:
            raise BackendError("call load_weights() before forward()")
        ids = _token_ids(tokens, "tokens")
        t = ids.size
        vocab = self.cfg.vocab_size
        out = np.empty((1 if last_only else t, vocab), dtype=np.float32)
        mw, xw = self._model["struct"], self._model["x"]
        for c0 in range(0, t, self.max_tokens):
            chunk = ids[c0 : c0 + self.max_tokens]
            last_chunk = c0 + self.max_tokens >= t
            if last_only and not last_chunk:  # no logits needed: skip the head
                x = self.embed(self._model["tok_embd"], chunk)
                self.run_layers(self._model["layers"], 0, x, int(pos) + c0)
                continue
            dst = out if last_only else out[c0 : c0 + chunk.size]
            self._n.check(self._n.lib.es_run_model(
                self._live(), self._dims, mw, self._kv, self._rope, self._ptr("const int32_t *", chunk), chunk.size,
                int(pos) + c0, self._ptr("float *", xw), self._ptr("float *", dst), 0 if last_only else 1,
                *self._arena_args()), "es_run_model")
        return out


SYSFS_CPU = Path("/sys/devices/system/cpu")
MAX_DEFAULT_THREADS = 8


def _cpu_list(text: str) -> frozenset[int]:
    """Parse a sysfs CPU list such as "0-3,8,10-11"."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(cpus)


def _core_key(cpu: int, sysfs: Path) -> object:
    """What identifies cpu's physical core: its SMT sibling set, else (package, core_id), else itself."""
    topo = sysfs / f"cpu{cpu}" / "topology"
    for name in ("thread_siblings_list", "core_cpus_list"):  # the second is the newer kernels' name
        try:
            return _cpu_list((topo / name).read_text())
        except (OSError, ValueError):
            pass
    try:
        return (int((topo / "physical_package_id").read_text()), int((topo / "core_id").read_text()))
    except (OSError, ValueError):
        return cpu


def physical_cores(cpus: Iterable[int], sysfs: Path = SYSFS_CPU) -> int:
    """How many distinct physical cores the logical CPUs `cpus` lie on (per sysfs topology).

    CPUs without topology files count as one core each (containers, non-Linux).

    Example::

        >>> physical_cores(os.sched_getaffinity(0)) <= len(os.sched_getaffinity(0))
        True
    """
    return len({_core_key(c, sysfs) for c in cpus})


def prefer_threads(cpus: Iterable[int] | None = None, sysfs: Path = SYSFS_CPU) -> int:
    """The default thread count: one per physical core this process may use, at most 8.

    `cpus` defaults to the process's affinity mask (what taskset, cgroups'
    cpusets and the board's isolated cores leave us), not `os.cpu_count()`.
    SMT siblings count once: decode is an int8 matrix-vector product over all
    the weights per token, bound by memory bandwidth, and a second hardware
    thread on a core shares that core's load ports and caches without adding
    bandwidth, while every extra thread adds to each parallel step's join.
    The cap of 8 is where a 135M-1B model's steps (tens of microseconds) stop
    gaining from more threads on the boards we target.

    Example::

        core = NativeCore(cfg, n_threads=prefer_threads())
        prefer_threads([0, 1, 2, 3])    # 2 on a laptop whose cpu0/cpu2, cpu1/cpu3 are siblings
    """
    if cpus is None:
        try:
            cpus = os.sched_getaffinity(0)
        except AttributeError:  # pragma: no cover - not Linux
            cpus = range(os.cpu_count() or 1)
    cpus = list(cpus)
    return max(1, min(MAX_DEFAULT_THREADS, physical_cores(cpus, sysfs)))
