"""The `edge-sdk` command line.

Each sub-command lives in its own module under `edge_sdk/cli/` and exposes
`register(subparsers)`, which adds its parser and sets `func` to a callable
`func(args) -> int`. Standard output carries only the command's product
(generated text, JSON); logs, progress and statistics go to standard error.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import EdgeSDKError

# Modules of sub-commands, in the order `edge-sdk --help` lists them.
COMMANDS = (
    "run",
    "chat",
    "pull",
    "info",
    "ppl",
    "serve_serial",
    "boards",
    "plan",
    "convert",
    "keygen",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-sdk", description="Run small LLaMA-family models in int8 on edge boards.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgeSDKError as e:
        print(f"edge-sdk: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edge-sdk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
