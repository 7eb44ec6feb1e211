"""edge_sdk: run small LLaMA-family language models in int8 on ARM and embedded boards.

Example::

    import edge_sdk
    model = edge_sdk.load()   # SmolLM2-135M-Instruct, downloaded and converted once
    print(model.generate("The capital of France is", max_tokens=8))

Every error edge_sdk raises on purpose is an `EdgeSDKError`; the classes are
exported here (`edge_sdk.InvalidArgumentError`, `edge_sdk.ContextOverflowError`, ...).
"""

from __future__ import annotations

import _signal  # the interpreter's own module, already loaded: `signal` would first build its enums
import os as _os
import sys as _sys


def _starting_the_command_line() -> bool:
    """Whether this process is the `edge-sdk` command (console script or `python -m edge_sdk`) starting up."""
    if _os.path.basename(_sys.argv[0] if _sys.argv else "") == "edge-sdk":
        return True
    orig = list(getattr(_sys, "orig_argv", ()))
    return "-m" in orig and orig[orig.index("-m") + 1 : orig.index("-m") + 2] == ["edge_sdk"]


def _interrupted_while_starting(signum: int, frame: object) -> None:
    _os.write(2, b"edge-sdk: interrupted\n")
    _os._exit(130)


if _starting_the_command_line():  # Ctrl-C while the command starts: one line, exit 130 (edge_sdk.cli takes over)
    _signal.signal(_signal.SIGINT, _interrupted_while_starting)

from typing import TYPE_CHECKING, Any  # noqa: E402

from .errors import BackendError, BoardError, BusyError, ContextOverflowError, EdgeSDKError, InvalidArgumentError, ModelFileError, NativeError, PackageError, PlanError, ProtocolError, TokenizerError, UnsupportedModelError

__version__ = "0.1.0"
__all__ = [
    "load", "Model", "serve", "__version__",
    "BackendError", "BoardError", "BusyError", "ContextOverflowError", "EdgeSDKError", "InvalidArgumentError",
    "ModelFileError", "NativeError", "PackageError", "PlanError", "ProtocolError", "TokenizerError",
    "UnsupportedModelError",
]

if TYPE_CHECKING:
    from .api import Model, load
    from .server.run import serve


def __getattr__(name: str) -> Any:
    # The API pulls in numpy, tokenizers and jinja2; importing edge_sdk alone stays cheap.
    if name in ("load", "Model"):
        from . import api

        return getattr(api, name)
    if name == "serve":  # the HTTP server (the `server` extra)
        from . import server

        return server.serve
    raise AttributeError(f"module 'edge_sdk' has no attribute {name!r}")
