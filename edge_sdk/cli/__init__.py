"""The `edge-sdk` command line.

Each sub-command lives in its own module under `edge_sdk/cli/` and exposes
`register(subparsers)`, which adds its parser and sets `func` to a callable
`func(args) -> int`. Standard output carries only the command's product
(generated text, JSON); logs, progress and statistics go to standard error.

Ctrl-C at any moment ends the command with `edge-sdk: interrupted` and exit
status 130: while the command starts (imports, argument parsing) a handler
exits at once, as nothing needs cleaning up yet; once it runs, Ctrl-C is a
KeyboardInterrupt, so the command's own cleanup (closing the model, removing
a half-written package) runs first.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from typing import Sequence

from .. import _interrupted_while_starting
from ..errors import EdgeSDKError

INTERRUPTED = "edge-sdk: interrupted"
EXIT_INTERRUPTED = 130

# Modules of sub-commands, in the order `edge-sdk --help` lists them.
COMMANDS = (
    "run",
    "chat",
    "pull",
    "info",
    "ppl",
    "serve",
    "serve_serial",
    "boards",
    "plan",
    "convert",
    "keygen",
    "bench",
)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command; given `argv` whose first word names one, the parser of that one alone.

    Each sub-command's module imports what it needs to register its flags, and the process keeps it: `edge-sdk
    run` built with all of them held 8.4 MiB more (pyserial and the serial server, the plan pictures' SVG
    escaping with urllib and http.client behind it, ...) before the model was loaded."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="edge-sdk", description="Run small LLaMA-family models in int8 on edge boards.")
    parser.add_argument("--version", action="version", version=f"edge-sdk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = {name.replace("_", "-"): name for name in COMMANDS}.get(argv[0]) if argv else None
    for name in (chosen,) if chosen else COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _was_interrupted(e: BaseException) -> bool:
    """Whether `e` is a KeyboardInterrupt or was raised while handling one (an import cut short)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    import threading

    main_thread = threading.current_thread() is threading.main_thread()  # only there are signals ours to handle
    previous = signal.signal(signal.SIGINT, _interrupted_while_starting) if main_thread else None
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        import numpy  # noqa: F401 - imported while a Ctrl-C still exits at once (an import cut short misleads)

        if main_thread:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        return int(args.func(args) or 0)
    except EdgeSDKError as e:
        print(f"edge-sdk: error: {e}", file=sys.stderr)
        return 1
    except BaseException as e:
        if not _was_interrupted(e):
            raise
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if main_thread:  # as before the call: the command line's own process keeps exiting at once on Ctrl-C
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
