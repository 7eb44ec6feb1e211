"""Compile the native core (`native/`) into a shared library.

Every C file is compiled with `-O3 -fPIC -ffp-contract=off` (no FMA may change
a rounding); each SIMD file gets its own `-m` flags, so one library runs on any
CPU of its architecture and picks kernels at run time. The same recipe serves
the host build (at `pip install` time through `setup.py`, or lazily on first
use) and cross builds for boards (`tools/cross_build.py`).

Example::

    from edge_sdk.backends.native.build import build_library
    build_library(Path("libedge_sdk.so"))                       # this machine
    build_library(Path("out/libedge_sdk.so"), arch="aarch64",
                  cc="aarch64-linux-gnu-gcc")                    # a Pi 4/5, Jetson
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from ...errors import BackendError

LIBRARY_NAME = "libedge_sdk.so"

CORE_SOURCES = (
    "status.c", "dispatch.c", "kernels_generic.c", "pool.c", "ctx.c", "validate.c",
    "buffers.c", "products.c", "api_kernels.c", "layer.c", "graphs.c",
)

ARCH_SOURCES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "x86_64": (
        ("arch/x86/cpu.c", ()),
        ("arch/x86/avx2.c", ("-mavx2", "-mfma", "-mf16c")),
        ("arch/x86/avx512vnni.c",
         ("-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni")),
    ),
    "aarch64": (
        ("arch/arm/cpu_aarch64.c", ()),
        ("arch/arm/neon.c", ()),
        ("arch/arm/dotprod.c", ("-march=armv8.2-a+dotprod",)),
        ("arch/arm/i8mm.c", ("-march=armv8.2-a+dotprod+i8mm",)),
    ),
    "armv7": (
        ("arch/arm/cpu_armv7.c", ()),
        ("arch/arm/neon32.c", ("-mfpu=neon-vfpv4",)),
    ),
    "none": (("arch/none/cpu.c", ()),),
}

ARCH_BASE_FLAGS = {"armv7": ("-march=armv7-a", "-mfpu=vfpv3-d16", "-mfloat-abi=hard")}

COMMON_FLAGS = (
    "-std=c11", "-O3", "-fPIC", "-ffp-contract=off", "-fno-math-errno", "-D_GNU_SOURCE",
)


def native_source_dir() -> Path:
    """`native/` of a source checkout (next to the `edge_sdk` package)."""
    return Path(__file__).resolve().parents[3] / "native"


def host_arch() -> str:
    """The native-core architecture name of this machine: x86_64, aarch64, armv7 or none."""
    m = platform.machine().lower()
    if m in ("x86_64", "amd64"):
        return "x86_64"
    if m in ("aarch64", "arm64"):
        return "aarch64"
    if m.startswith("armv7") or m.startswith("armv8l"):
        return "armv7"
    return "none"


def _sources(arch: str) -> list[tuple[str, tuple[str, ...]]]:
    if arch not in ARCH_SOURCES:
        raise BackendError(f"unknown native-core architecture {arch!r}; known: {', '.join(ARCH_SOURCES)}")
    return [(s, ()) for s in CORE_SOURCES] + list(ARCH_SOURCES[arch])


def source_digest(src_dir: Path | None = None, arch: str | None = None, extra_flags: tuple[str, ...] = ()) -> str:
    """Hash of every C source and header plus the flags: a library built from it is up to date."""
    src_dir = src_dir or native_source_dir()
    arch = arch or host_arch()
    h = hashlib.sha256()
    files = sorted((src_dir / "src").rglob("*.[ch]")) + sorted((src_dir / "include").glob("*.h"))
    for f in files:
        h.update(str(f.relative_to(src_dir)).encode())
        h.update(f.read_bytes())
    h.update(repr((arch, COMMON_FLAGS, ARCH_BASE_FLAGS.get(arch), _sources(arch), extra_flags)).encode())
    return h.hexdigest()[:16]


def find_compiler(cc: str | None = None) -> str | None:
    """The C compiler to use: `cc`, else $CC, else cc/gcc/clang from PATH."""
    for cand in (cc, os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and shutil.which(cand.split()[0]):
            return cand
    return None


def build_library(
    out: Path,
    *,
    cc: str | None = None,
    arch: str | None = None,
    extra_flags: tuple[str, ...] = (),
    src_dir: Path | None = None,
    jobs: int = 2,
) -> Path:
    """Compile the core into the shared library `out` (replaced atomically).

    Raises BackendError with the compiler's message when there is no compiler
    or a file does not compile.
    """
    src_dir = src_dir or native_source_dir()
    arch = arch or host_arch()
    if not (src_dir / "include" / "edge_sdk.h").is_file():
        raise BackendError(f"native sources not found in {src_dir}")
    compiler = find_compiler(cc)
    if compiler is None:
        raise BackendError("no C compiler found (set CC or install gcc/clang)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = [*compiler.split(), *COMMON_FLAGS, *ARCH_BASE_FLAGS.get(arch, ()), *extra_flags,
            f"-I{src_dir / 'include'}", f"-I{src_dir / 'src'}"]
    with tempfile.TemporaryDirectory(prefix="edge_sdk_build_") as tmp:
        objs: list[str] = []
        pending: list[tuple[subprocess.Popen[bytes], str]] = []

        def reap(p: subprocess.Popen[bytes], name: str) -> None:
            _, err = p.communicate()
            if p.returncode != 0:
                raise BackendError(f"compiling native/src/{name} failed:\n{err.decode(errors='replace')[-4000:]}")

        for i, (rel, flags) in enumerate(_sources(arch)):
            obj = os.path.join(tmp, f"{i:02d}_{Path(rel).stem}.o")
            objs.append(obj)
            cmd = [*base, *flags, "-c", str(src_dir / "src" / rel), "-o", obj]
            pending.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE), rel))
            if len(pending) >= max(1, jobs):
                reap(*pending.pop(0))
        for p, rel in pending:
            reap(p, rel)
        tmp_out = out.with_name(out.name + f".tmp{os.getpid()}")
        link = subprocess.run([*compiler.split(), "-shared", "-o", str(tmp_out), *objs, "-lpthread", "-lm"],
                              capture_output=True)
        if link.returncode != 0:
            raise BackendError(f"linking {out.name} failed:\n{link.stderr.decode(errors='replace')[-4000:]}")
        os.replace(tmp_out, out)
    return out


def package_library_path() -> Path:
    """Where `pip install` (setup.py) puts the library: inside the package."""
    return Path(__file__).resolve().parents[2] / "_native" / LIBRARY_NAME  # edge_sdk/_native/


def cache_library_path(digest: str) -> Path:
    """A per-user cache location for lazily built libraries, keyed by the source digest."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "edge_sdk" / f"native-{digest}" / LIBRARY_NAME


def ensure_library() -> Path:
    """Path of a library for this machine, building it if needed.

    Order: $EDGE_SDK_NATIVE_LIB (used as is); the library inside the package,
    if its stamp matches the sources (or there are no sources to compare);
    else a fresh build into the package (or the user cache if the package is
    read-only). Raises BackendError if nothing can be found or built.
    """
    env = os.environ.get("EDGE_SDK_NATIVE_LIB")
    if env:
        p = Path(env)
        if not p.is_file():
            raise BackendError(f"EDGE_SDK_NATIVE_LIB={env} does not exist")
        return p
    lib = package_library_path()
    src = native_source_dir()
    have_sources = (src / "include" / "edge_sdk.h").is_file()
    if not have_sources:
        if lib.is_file():
            return lib
        raise BackendError(f"no native library at {lib} and no sources to build one")
    digest = source_digest(src)
    stamp = lib.with_name(lib.name + ".stamp")
    if lib.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return lib
    cached = cache_library_path(digest)
    if cached.is_file():
        return cached
    for target in (lib, cached):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not os.access(target.parent, os.W_OK):
                continue
        except OSError:
            continue
        build_library(target, src_dir=src)
        target.with_name(target.name + ".stamp").write_text(digest + "\n")
        ignore = target.parent / ".gitignore"  # build output, never committed
        if not ignore.exists():
            ignore.write_text("*\n")
        return target
    raise BackendError(f"cannot write the native library to {lib.parent} or {cached.parent}")
