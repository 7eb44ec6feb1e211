"""Build hook: compile the native core into the package at install time.

Everything else lives in pyproject.toml. If the compiler is missing or the
build fails, the install still succeeds: the SDK then runs on its numpy
backend and `edge_sdk.backends.native.ffi.available()` says why.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithNative(build_py):
    def run(self) -> None:
        super().run()
        # Board profiles are data at the top of the source tree; installed, they live in the package.
        boards = Path(self.build_lib) / "edge_sdk" / "_boards"
        boards.mkdir(parents=True, exist_ok=True)
        for f in (ROOT / "boards").glob("*.json"):
            shutil.copyfile(f, boards / f.name)
        # edge_sdk and its build module import nothing beyond the standard library.
        sys.path.insert(0, str(ROOT))
        try:
            from edge_sdk.backends.native.build import LIBRARY_NAME, build_library, source_digest

            out = Path(self.build_lib) / "edge_sdk" / "_native" / LIBRARY_NAME
            build_library(out, src_dir=ROOT / "native")
            # the binding reads its cdef from the header: ship it next to the library
            shutil.copyfile(ROOT / "native" / "include" / "edge_sdk.h", out.parent / "edge_sdk.h")
            (out.parent / (out.name + ".stamp")).write_text(source_digest(ROOT / "native") + "\n")
            print(f"edge_sdk: built the native core into {out}")
        except Exception as e:  # noqa: BLE001 - the numpy backend still works
            print(f"edge_sdk: WARNING: native core not built ({e}); the numpy backend will be used", file=sys.stderr)
        finally:
            sys.path.remove(str(ROOT))


setup(cmdclass={"build_py": BuildPyWithNative})
