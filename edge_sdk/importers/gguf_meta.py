"""Read a GGUF file's key-value metadata into plain Python values.

Kept apart from the tensor import so that the tokenizer, `edge-sdk info` and
the planner can read metadata without touching tensor data.

Example::

    meta = read_gguf_metadata("model.gguf")
    meta["general.architecture"]      # "llama"
    meta["tokenizer.ggml.tokens"][:3]  # ["<|endoftext|>", "<|im_start|>", ...]
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ModelFileError

GGUF_MAGIC = b"GGUF"


def open_gguf(path: str | os.PathLike):
    """Open a GGUF file with `gguf.GGUFReader`, turning every failure into ModelFileError."""
    import gguf

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: not a file (expected a .gguf file or a Hugging Face directory)")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(
            f"{path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r}); "
            "supported inputs are GGUF files and Hugging Face directories with config.json"
        )
    try:
        return gguf.GGUFReader(path, "r")
    except Exception as e:  # the reader raises ValueError, IndexError, struct errors...
        raise ModelFileError(f"{path}: corrupt or truncated GGUF file ({type(e).__name__}: {e})") from e


def field_value(field: Any) -> Any:
    """Convert one `ReaderField` to str / int / float / bool / list."""
    import gguf

    types = field.types
    if not types:
        return None
    if types[0] == gguf.GGUFValueType.ARRAY:
        sub = types[-1] if len(types) > 1 else None
        if sub == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    if types[0] == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    value = field.parts[field.data[0]].tolist()[0]
    if types[0] == gguf.GGUFValueType.BOOL:
        return bool(value)
    return value


def reader_metadata(reader: Any) -> dict[str, Any]:
    """All key-value fields of an open reader as a dict of plain values."""
    return {name: field_value(f) for name, f in reader.fields.items()}


def read_gguf_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Metadata of the GGUF file at `path` (see module docstring)."""
    return reader_metadata(open_gguf(path))
