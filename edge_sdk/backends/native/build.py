"""Compile the native core (`native/`) into a shared library.

The sources and flags come from `native/sources.mk`, the list that
`native/Makefile` includes too: every C file gets `-O3 -ffp-contract=off` (no
FMA may change a rounding) and the common flags, each SIMD file its own `-m`
flags, so one library runs on any CPU of its architecture and picks kernels at
run time. The same recipe serves the host build (at `pip install` time through
`setup.py`, or lazily on first use) and cross builds for boards
(`tools/cross_build.py`).

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
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ...errors import BackendError

LIBRARY_NAME = "libedge_sdk.so"

SOURCES_FILE = "sources.mk"  # in native/: the source list and flags, shared with native/Makefile
_ASSIGN = re.compile(r"(\w+) :=([ \t][^$\\#]*)?")  # NAME := words, nothing make would expand or continue
_NAME = re.compile(r"CORE_SOURCES|OPT_FLAGS|COMMON_FLAGS|LINK_LIBS|(ARCH_SOURCES|BASE_FLAGS|FLAGS)_\w+")
_REQUIRED = ("CORE_SOURCES", "OPT_FLAGS", "COMMON_FLAGS", "LINK_LIBS")


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


def read_sources(src_dir: Path | None = None) -> dict[str, tuple[str, ...]]:
    """The variables of `native/sources.mk` (name -> words), as native/Makefile sees them.

    Only blank lines, `#` comments and `NAME := words` lines are accepted. Any
    other line (other make syntax, `$`, a `\\` continuation, an inline `#`), an
    unknown or repeated name, BASE_FLAGS_<arch> without ARCH_SOURCES_<arch>,
    or FLAGS_<file> that does not name exactly one source raises BackendError
    naming the file and line.
    """
    path = (src_dir or native_source_dir()) / SOURCES_FILE
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise BackendError(f"cannot read {path}: {e.strerror}") from None
    out: dict[str, tuple[str, ...]] = {}
    line_of: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _ASSIGN.fullmatch(line.rstrip())
        if m is None or not _NAME.fullmatch(m.group(1)):
            raise BackendError(f"{path}:{n}: cannot read {line.strip()!r}: expected `NAME := words` with NAME one of "
                               "CORE_SOURCES, ARCH_SOURCES_<arch>, BASE_FLAGS_<arch>, FLAGS_<file>, OPT_FLAGS, "
                               "COMMON_FLAGS, LINK_LIBS and no $, \\ or # in the words")
        name = m.group(1)
        if name in out:
            raise BackendError(f"{path}:{n}: {name} is already set on line {line_of[name]}")
        out[name], line_of[name] = tuple((m.group(2) or "").split()), n
    missing = [name for name in _REQUIRED if name not in out]
    if missing:
        raise BackendError(f"{path}: {', '.join(missing)} not set")
    archs = {k.removeprefix("ARCH_SOURCES_") for k in out if k.startswith("ARCH_SOURCES_")}
    files: dict[str, list[str]] = {}  # file name without directory and .c -> sources
    for src in out["CORE_SOURCES"] + tuple(s for a in sorted(archs) for s in out[f"ARCH_SOURCES_{a}"]):
        files.setdefault(src.rsplit("/", 1)[-1], []).append(src)
    for name, n in line_of.items():
        if name.startswith("BASE_FLAGS_") and name.removeprefix("BASE_FLAGS_") not in archs:
            raise BackendError(f"{path}:{n}: {name}: there is no ARCH_SOURCES_{name.removeprefix('BASE_FLAGS_')}")
        if name.startswith("FLAGS_") and len(files.get(name.removeprefix("FLAGS_"), ())) != 1:
            named = files.get(name.removeprefix("FLAGS_"), [])
            raise BackendError(f"{path}:{n}: {name} must name one source; it names "
                               f"{len(named)}{' (' + ', '.join(named) + ')' if named else ''}")
    return out


def _sources(arch: str, src_dir: Path | None = None) -> list[tuple[str, tuple[str, ...]]]:
    """(file under native/src, its own flags) for every file of the arch's library."""
    v = read_sources(src_dir)
    if f"ARCH_SOURCES_{arch}" not in v:
        known = ", ".join(k[len("ARCH_SOURCES_"):] for k in v if k.startswith("ARCH_SOURCES_"))
        raise BackendError(f"unknown native-core architecture {arch!r}; known: {known}")
    return [(f"{s}.c", v.get(f"FLAGS_{s.rsplit('/', 1)[-1]}", ())) for s in v["CORE_SOURCES"] + v[f"ARCH_SOURCES_{arch}"]]


def compile_commands(arch: str, compiler: str, extra_flags: tuple[str, ...] = (),
                     src_dir: Path | None = None) -> list[tuple[str, list[str]]]:
    """(file under native/src, compiler argv without `-o`) per file, in the Makefile's flag order:
    OPT_FLAGS COMMON_FLAGS BASE_FLAGS_<arch> extra -Iinclude -Isrc FLAGS_<file>."""
    src_dir = src_dir or native_source_dir()
    v = read_sources(src_dir)
    base = [*compiler.split(), *v["OPT_FLAGS"], *v["COMMON_FLAGS"], *v.get(f"BASE_FLAGS_{arch}", ()), *extra_flags,
            f"-I{src_dir / 'include'}", f"-I{src_dir / 'src'}"]
    return [(rel, [*base, *flags, "-c", str(src_dir / "src" / rel)]) for rel, flags in _sources(arch, src_dir)]


def source_digest(src_dir: Path | None = None, arch: str | None = None, extra_flags: tuple[str, ...] = ()) -> str:
    """Hash of every C source and header, the source list and the flags: a library built from it is up to date."""
    src_dir = src_dir or native_source_dir()
    arch = arch or host_arch()
    h = hashlib.sha256()
    files = [src_dir / SOURCES_FILE, *sorted((src_dir / "src").rglob("*.[ch]")), *sorted((src_dir / "include").glob("*.h"))]
    for f in files:
        h.update(str(f.relative_to(src_dir)).encode())
        h.update(f.read_bytes())
    h.update(repr((arch, _sources(arch, src_dir), extra_flags)).encode())
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
    commands = compile_commands(arch, compiler, extra_flags, src_dir)
    link_libs = read_sources(src_dir)["LINK_LIBS"]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edge_sdk_build_") as tmp:
        objs: list[str] = []
        pending: list[tuple[subprocess.Popen[bytes], str]] = []

        def reap(p: subprocess.Popen[bytes], name: str) -> None:
            _, err = p.communicate()
            if p.returncode != 0:
                raise BackendError(f"compiling native/src/{name} failed:\n{err.decode(errors='replace')[-4000:]}")

        for i, (rel, cmd) in enumerate(commands):
            obj = os.path.join(tmp, f"{i:02d}_{Path(rel).stem}.o")
            objs.append(obj)
            pending.append((subprocess.Popen([*cmd, "-o", obj], stdout=subprocess.PIPE, stderr=subprocess.PIPE), rel))
            if len(pending) >= max(1, jobs):
                reap(*pending.pop(0))
        for p, rel in pending:
            reap(p, rel)
        tmp_out = out.with_name(out.name + f".tmp{os.getpid()}")
        link = subprocess.run([*compiler.split(), "-shared", "-o", str(tmp_out), *objs, *link_libs],
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
