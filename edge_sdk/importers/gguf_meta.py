"""Read a GGUF file's key-value metadata into plain Python values.

Kept apart from the tensor import so that the tokenizer, `edge-sdk info` and
the planner can read metadata without touching tensor data.

Example::

    meta = read_gguf_metadata("model.gguf")
    meta["general.architecture"]      # "llama"
    meta["tokenizer.ggml.tokens"][:3]  # ["<|endoftext|>", "<|im_start|>", ...]
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import Any

from ..errors import ModelFileError

GGUF_MAGIC = b"GGUF"

# -- header pre-scan ----------------------------------------------------------------------------
# `gguf.GGUFReader` trusts every declared count: an array length of 2**40 past the end of the file
# makes it loop 2**40 times over empty reads while its lists grow. `check_gguf_header` walks the
# same header (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md) first, with every count
# and length checked against the bytes left, so that the reader only ever sees a header that fits
# in the file. It reads no tensor data.

# GGUFValueType -> fixed item size in bytes (STRING=8 and ARRAY=9 are variable)
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_MAX_DIMS = 8  # GGML_MAX_DIMS is 4


class _HeaderError(Exception):
    pass


class _Cursor:
    """Bounds-checked reads from a buffer; every overrun raises _HeaderError."""

    def __init__(self, buf: Any, order: str) -> None:
        self.buf, self.order, self.pos, self.size = buf, order, 0, len(buf)

    def left(self) -> int:
        return self.size - self.pos

    def unpack(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        if n > self.left():
            raise _HeaderError(f"{what} at byte {self.pos} runs past the end of the file")
        v = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        self.pos += n
        return v[0] if len(v) == 1 else v

    def skip(self, n: int, what: str) -> None:
        if n > self.left():
            raise _HeaderError(f"{what} declares {n} bytes at byte {self.pos}, but only {self.left()} are left in the file")
        self.pos += n

    def string(self, what: str) -> bytes:
        n = self.unpack("Q", f"the length of {what}")
        start = self.pos
        self.skip(n, what)
        return bytes(self.buf[start:self.pos])

    def count(self, n: int, min_item: int, what: str) -> None:
        """A declared count of items of at least `min_item` bytes must fit in the bytes left."""
        if n * min_item > self.left():
            raise _HeaderError(f"{what} declares {n} items at byte {self.pos}, more than the {self.left()} bytes left "
                               "in the file can hold")


def _skip_value(c: _Cursor, vtype: int, key: str, depth: int = 0) -> None:
    if vtype in _SCALAR_SIZES:
        c.skip(_SCALAR_SIZES[vtype], f"metadata value {key!r}")
    elif vtype == _STRING:
        c.string(f"metadata string {key!r}")
    elif vtype == _ARRAY:
        if depth > 2:
            raise _HeaderError(f"metadata key {key!r} nests arrays more than 3 deep")
        itype = c.unpack("I", f"the item type of metadata array {key!r}")
        n = c.unpack("Q", f"the length of metadata array {key!r}")
        if itype in _SCALAR_SIZES:
            c.count(n, _SCALAR_SIZES[itype], f"metadata array {key!r}")
            c.skip(n * _SCALAR_SIZES[itype], f"metadata array {key!r}")
        elif itype == _STRING:
            c.count(n, 8, f"metadata array {key!r}")
            for _ in range(n):
                c.string(f"an item of metadata array {key!r}")
        elif itype == _ARRAY:
            c.count(n, 12, f"metadata array {key!r}")
            for _ in range(n):
                _skip_value(c, _ARRAY, key, depth + 1)
        else:
            raise _HeaderError(f"metadata array {key!r} has unknown item type {itype}")
    else:
        raise _HeaderError(f"metadata key {key!r} has unknown value type {vtype}")


def _scan_header(c: _Cursor) -> None:
    c.skip(8, "the magic and version")
    n_tensors, n_kv = c.unpack("QQ", "the tensor and key counts")
    # smallest key-value entry: key length (8) + type (4) + a 1-byte value
    c.count(n_kv, 13, "the key-value table")
    for i in range(n_kv):
        key = c.string(f"metadata key #{i}").decode("utf-8", errors="replace")
        _skip_value(c, c.unpack("I", f"the value type of metadata key {key!r}"), key)
    # smallest tensor info: name length (8) + n_dims (4) + type (4) + offset (8)
    c.count(n_tensors, 24, "the tensor table")
    for i in range(n_tensors):
        name = c.string(f"the name of tensor #{i}").decode("utf-8", errors="replace")
        n_dims = c.unpack("I", f"the rank of tensor {name!r}")
        if n_dims > _MAX_DIMS:
            raise _HeaderError(f"tensor {name!r} declares {n_dims} dimensions (at most {_MAX_DIMS})")
        c.skip(8 * n_dims + 12, f"the shape, type and offset of tensor {name!r}")


def check_gguf_header(path: str) -> None:
    """Raise ModelFileError when a declared count or length in the GGUF header overruns the file."""
    size = os.path.getsize(path)
    if size < 24:
        raise ModelFileError(f"{path}: corrupt or truncated GGUF file ({size} bytes, shorter than a GGUF header)")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        (version,) = struct.unpack_from("<I", mm, 4)
        # a file written on a big-endian machine reads as version << 16 here (as GGUFReader detects it)
        order = ">" if version & 0xFFFF == 0 else "<"
        (version,) = struct.unpack_from(order + "I", mm, 4)
        if version not in (2, 3):
            raise ModelFileError(f"{path}: GGUF version {version} is not supported (edge_sdk reads GGUF versions 2 and 3)")
        c = _Cursor(memoryview(mm), order)
        try:
            _scan_header(c)
        except _HeaderError as e:
            raise ModelFileError(f"{path}: corrupt or truncated GGUF file ({e})") from None
        finally:
            c.buf.release()


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
    check_gguf_header(path)
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
