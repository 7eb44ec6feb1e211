"""Building the native core: host library, cross builds for boards, EDGE_SDK_NATIVE_LIB."""

from __future__ import annotations

import os
import shlex
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from edge_sdk.backends.native import build as _native_build
from edge_sdk.errors import BackendError

ROOT = Path(__file__).resolve().parents[1]
EM_ARM, EM_X86_64, EM_AARCH64 = 40, 62, 183


def elf_header(path: Path) -> tuple[int, int]:
    """(EI_CLASS: 1 = 32-bit, 2 = 64-bit; e_machine) of an ELF file."""
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF"
    return head[4], struct.unpack_from("<H", head, 18)[0]


def test_source_digest_tracks_sources_and_flags():
    a = _native_build.source_digest(arch="x86_64")
    assert a == _native_build.source_digest(arch="x86_64")
    assert a != _native_build.source_digest(arch="aarch64")
    assert a != _native_build.source_digest(arch="x86_64", extra_flags=("-mtune=znver3",))


@pytest.mark.parametrize("arch,cc,cls,machine", [
    ("aarch64", "aarch64-linux-gnu-gcc", 2, EM_AARCH64),
    ("armv7", "arm-linux-gnueabihf-gcc", 1, EM_ARM),
])
def test_cross_build_makes_a_board_library(tmp_path, arch, cc, cls, machine):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed (apt-get install gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf)")
    out = subprocess.run([sys.executable, str(ROOT / "tools/cross_build.py"), "--arch", arch, "-o", str(tmp_path)],
                         capture_output=True, text=True, check=True)
    lib = tmp_path / _native_build.LIBRARY_NAME
    assert elf_header(lib) == (cls, machine)
    assert f"EDGE_SDK_NATIVE_LIB=/path/to/{_native_build.LIBRARY_NAME}" in out.stdout
    syms = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
    assert " T es_run_layers" in syms and " T es_layer_buffers" in syms


def test_host_build_and_bad_override(tmp_path):
    lib = _native_build.build_library(tmp_path / "lib" / _native_build.LIBRARY_NAME)
    assert elf_header(lib)[1] in (EM_X86_64, EM_AARCH64, EM_ARM)
    code = "from edge_sdk.backends.native.library import available; ok, why = available(); print(ok); print(why)"
    env = dict(os.environ, PYTHONPATH=str(ROOT), EDGE_SDK_NATIVE_LIB=str(lib))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "True" and str(lib) in out
    env["EDGE_SDK_NATIVE_LIB"] = str(tmp_path / "missing.so")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["False", f"EDGE_SDK_NATIVE_LIB={tmp_path / 'missing.so'} does not exist"]


def test_build_without_compiler_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(Exception, match="no C compiler found"):
        _native_build.build_library(tmp_path / "x.so")


def make_compile_lines(arch: str, build_dir: Path) -> tuple[dict[str, list[str]], list[str]]:
    """What `make -n lib` would run for arch: {file under native/src: argv without -o}, and the link argv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CFLAGS", "CC", "CROSS", "SANITIZE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(["make", "--no-print-directory", "-n", "-B", "-C", str(ROOT / "native"), "lib",
                          f"ARCH={arch}", "CC=cc", f"BUILD={build_dir}"],
                         env=env, capture_output=True, text=True, check=True).stdout
    compiles, link = {}, []
    for line in out.splitlines():
        argv = shlex.split(line)
        if "-c" in argv:
            o = argv.index("-o")
            del argv[o:o + 2]
            compiles[argv[argv.index("-c") + 1].removeprefix("src/")] = argv
        elif "-shared" in argv:
            link = argv
    return compiles, link


@pytest.mark.parametrize("arch", ["x86_64", "aarch64", "armv7", "none"])
def test_makefile_and_python_build_compile_the_same(tmp_path, arch):
    """Both builds read native/sources.mk: same files, same flags in the same order, same link libraries."""
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    compiles, link = make_compile_lines(arch, tmp_path)
    native = ROOT / "native"
    python = {rel: [a.replace(f"-I{native}/", "-I").replace(f"{native}/", "") for a in argv]
              for rel, argv in _native_build.compile_commands(arch, "cc", src_dir=native)}
    assert list(python) == list(compiles)  # same files, same order
    for rel, argv in python.items():
        assert argv == compiles[rel], rel
    assert argv[-2:] == ["-c", f"src/{rel}"] and "-ffp-contract=off" in argv
    names = _native_build.read_sources(native)
    assert link[-len(names["LINK_LIBS"]):] == list(names["LINK_LIBS"]) == ["-lpthread", "-lm"]
    own = {rel: argv[argv.index("-Isrc") + 1:-2] for rel, argv in python.items()}  # a file's own flags
    assert {rel: flags for rel, flags in own.items() if flags} == {
        "x86_64": {"arch/x86/avx2.c": ["-mavx2", "-mfma", "-mf16c"],
                   "arch/x86/avx512vnni.c": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl",
                                             "-mavx512vnni"]},
        "aarch64": {"arch/arm/dotprod.c": ["-march=armv8.2-a+dotprod"],
                    "arch/arm/i8mm.c": ["-march=armv8.2-a+dotprod+i8mm"]},
        "armv7": {"arch/arm/neon32.c": ["-mfpu=neon-vfpv4"]},
        "none": {},
    }[arch]
    if arch == "armv7":  # the base flags reach every file, before the file's own -mfpu
        assert all("-mfloat-abi=hard" in argv for argv in python.values())
        neon32 = python["arch/arm/neon32.c"]
        assert neon32.index("-mfpu=vfpv3-d16") < neon32.index("-mfpu=neon-vfpv4")


@pytest.mark.parametrize("line,message", [
    ("CORE_SOURCES = status", "2: cannot read 'CORE_SOURCES = status': expected `NAME := words`"),
    ("CORE_SOURCES += layer", "2: cannot read 'CORE_SOURCES += layer'"),
    ("ARCH_SOURCES_none := $(CORE)", "2: cannot read 'ARCH_SOURCES_none := $(CORE)'"),
    ("COMMON_FLAGS := -O3 \\", "2: cannot read 'COMMON_FLAGS := -O3 \\\\'"),
    ("LINK_LIBS := -lm # math", "2: cannot read 'LINK_LIBS := -lm # math'"),
    ("ifeq ($(CROSS),armv7)", "2: cannot read 'ifeq ($(CROSS),armv7)'"),
    ("EXTRA_FLAGS := -g", "2: cannot read 'EXTRA_FLAGS := -g'"),
    ("CORE_SOURCES := layer", "2: CORE_SOURCES is already set on line 1"),
    ("FLAGS_avx3 := -mavx3", "2: FLAGS_avx3 must name one source; it names 0"),
    ("FLAGS_cpu := -g", "2: FLAGS_cpu must name one source; it names 2 (arch/none/cpu, arch/x86/cpu)"),
    ("BASE_FLAGS_riscv := -march=rv64gc", "2: BASE_FLAGS_riscv: there is no ARCH_SOURCES_riscv"),
])
def test_sources_file_reader_is_strict(tmp_path, line, message):
    good = ("ARCH_SOURCES_x86_64 := arch/x86/cpu arch/x86/avx2\nARCH_SOURCES_none := arch/none/cpu\n"
            "FLAGS_avx2 := -mavx2\nOPT_FLAGS := -O3\nCOMMON_FLAGS := -fPIC\nLINK_LIBS := -lm\n")
    (tmp_path / "sources.mk").write_text("CORE_SOURCES := status\n" + good)
    assert _native_build.read_sources(tmp_path)["FLAGS_avx2"] == ("-mavx2",)
    (tmp_path / "sources.mk").write_text("CORE_SOURCES := status\n" + line + "\n" + good)
    with pytest.raises(BackendError) as e:
        _native_build.read_sources(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 'sources.mk'}:{message}")


def test_sources_file_must_set_the_lists(tmp_path):
    (tmp_path / "sources.mk").write_text("# nothing yet\nCORE_SOURCES := status\n")
    with pytest.raises(BackendError, match=r"sources\.mk: OPT_FLAGS, COMMON_FLAGS, LINK_LIBS not set$"):
        _native_build.read_sources(tmp_path)
    with pytest.raises(BackendError, match=r"cannot read .*missing/sources\.mk"):
        _native_build.read_sources(tmp_path / "missing")
