"""edge_sdk: run small LLaMA-family language models in int8 on ARM and embedded boards.

Example::

    import edge_sdk
    model = edge_sdk.load()   # SmolLM2-135M-Instruct, downloaded and converted once
    print(model.generate("The capital of France is", max_tokens=8))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["load", "Model", "__version__"]

if TYPE_CHECKING:
    from .api import Model, load


def __getattr__(name: str) -> Any:
    # The API pulls in numpy, tokenizers and jinja2; importing edge_sdk alone stays cheap.
    if name in ("load", "Model"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'edge_sdk' has no attribute {name!r}")
