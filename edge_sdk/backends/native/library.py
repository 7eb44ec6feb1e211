"""Loading the native core once per process; `_Native` holds its cffi objects for `core`.

The cdef is the marked region of `native/include/edge_sdk.h` (the header is the ABI, so there is one source of
truth); the library is loaded in ABI mode (`ffi.dlopen`), so no compiler is needed at import time once the
library exists (built at install time, lazily on first use by `build`, or pointed at by `EDGE_SDK_NATIVE_LIB`).
Every non-zero status becomes `NativeError` (`_Native.check`); `arrays` checks what is handed to C and `core`
makes the calls.

Example::

    ok, why = available()
    if ok:
        library_info()["isa"]        # e.g. "avx512vnni"
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import BackendError, NativeError
from ...model.config import ModelConfig
from ...plan.native_buffers import DEFAULT_ACT_BLOCK
from ...plan.records import Buffer
from . import build as _native_build

ISA_NAMES = ("generic", "avx2", "avx512vnni", "neon", "dotprod", "i8mm", "neon32")
KERNEL_NAMES = (
    "quantize_row", "matvec_q8", "matmul_q8", "rmsnorm", "rope", "attention", "softmax",
    "swiglu", "add", "embed_row", "f32_to_f16", "f16_to_f32",
)
CPU_FEATURES = {
    "avx2": 1, "fma": 2, "f16c": 4, "avx512f": 8, "avx512bw": 16, "avx512vl": 32, "avx512vnni": 64,
    "neon": 256, "asimddp": 512, "i8mm": 1024, "fp16": 2048,
}

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
