"""Building the native core: host library, cross builds for boards, EDGE_SDK_NATIVE_LIB."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from edge_sdk.backends.native import build as _native_build

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
