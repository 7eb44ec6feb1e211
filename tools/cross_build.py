"""Cross-compile the native core for a board.

    python tools/cross_build.py --arch aarch64 [-o DIR] [--mcpu cortex-a76]
    python tools/cross_build.py --arch armv7   [-o DIR] [--mcpu cortex-a53]

aarch64 uses aarch64-linux-gnu-gcc, armv7 (32-bit Raspberry Pi OS)
arm-linux-gnueabihf-gcc (Debian: `apt-get install gcc-aarch64-linux-gnu
gcc-arm-linux-gnueabihf`); --cc overrides. The library picks its kernels at
run time from the board's CPU (NEON, dot product, i8mm), so one build serves
every board of the architecture; `--mcpu` only tunes scheduling for one.
Copy the library to the board and point the SDK at it:

    EDGE_SDK_NATIVE_LIB=/path/to/libedge_sdk.so edge-sdk run ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_sdk.backends.native.build import LIBRARY_NAME, build_library, source_digest  # noqa: E402
from edge_sdk.errors import BackendError  # noqa: E402

COMPILERS = {"aarch64": "aarch64-linux-gnu-gcc", "armv7": "arm-linux-gnueabihf-gcc"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", required=True, choices=sorted(COMPILERS))
    ap.add_argument("-o", "--out-dir", type=Path, default=None, help="output folder (default build/native-ARCH)")
    ap.add_argument("--cc", default=None, help="cross compiler (default %s)" % ", ".join(
        f"{a}: {c}" for a, c in COMPILERS.items()))
    ap.add_argument("--mcpu", default=None, help="tune for one CPU, e.g. cortex-a72, cortex-a76")
    args = ap.parse_args(argv)
    out_dir = args.out_dir or Path("build") / f"native-{args.arch}"
    out = out_dir / LIBRARY_NAME
    extra = (f"-mtune={args.mcpu}",) if args.mcpu else ()
    try:
        build_library(out, cc=args.cc or COMPILERS[args.arch], arch=args.arch, extra_flags=extra)
    except BackendError as e:
        print(f"cross build failed: {e}", file=sys.stderr)
        return 1
    (out_dir / (LIBRARY_NAME + ".stamp")).write_text(source_digest(arch=args.arch, extra_flags=extra) + "\n")
    print(f"built {out.resolve()} for {args.arch}")
    print("on the board:")
    print(f"  EDGE_SDK_NATIVE_LIB=/path/to/{LIBRARY_NAME} edge-sdk run ...")
    print("  python -c 'from edge_sdk.backends.native.library import library_info; print(library_info())'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
