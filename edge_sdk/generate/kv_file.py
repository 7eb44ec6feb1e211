"""Prompt-cache files: the token ids and KV rows of one slot, with what they were computed by.

Layout (little-endian)::

    0       8 bytes  magic b"EDGE-KV\\n"
    8       u32      format version (FORMAT_VERSION)
    12      u32      header length H
    16      H bytes  header, UTF-8 JSON: model identity, backend, KV dtype, context, the cache's arrays (names,
                     dtypes, shapes, position axes), the token ids, payload size, when it was last used
    ...     zeros    to a multiple of 64
    P       payload  for each array in the header's order, its rows [0, n) as one C-ordered block
    end-32  32 bytes sha256 of every byte before it

A file is used only when all of it checks out: magic and version, a header of the expected fields, the
exact size, the checksum, then the model identity (`model_identity`: the weights, the config, the tokenizer),
the backend, the KV dtype and the arrays' layout must be those of the model reading it, and its tokens must
fit its context. Anything else is refused with a message saying why (`KVFileRefused`), and the caller
ignores the file. Files are written to a temporary name in their directory and renamed into place, so a
reader sees the old file or the new one, never half of one.

Example::

    write_kv_file(path, identity, layout, tokens, rows, last_used=3)
    tokens, rows, last_used = read_kv_file(path, identity, be.kv_layout(), vocab_size=49152)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from typing import Any

import numpy as np

from ..backends.kv_state import KVLayout, KVRows, empty_rows
from ..errors import EdgeSDKError

MAGIC = b"EDGE-KV\n"
FORMAT_VERSION = 1
SUFFIX = ".kvc"
ALIGN = 64
DIGEST_BYTES = 32
HEAD = struct.Struct("<8sII")  # magic, version, header length
MAX_HEADER = 64 << 20  # a header this long is not one this edge_sdk wrote (the token ids of 2**22 positions fit)


class KVFileRefused(EdgeSDKError):
    """A prompt-cache file that must not be used: its message says why (another model, backend, KV dtype or
    format version; truncated; corrupt)."""


# ---- the model a cache belongs to ---------------------------------------------------------------------------


def model_identity(config: dict[str, Any], quant: dict[str, Any] | None, weights_sha256: str, tokenizer_sha256: str,
                   tokenizer_meta: dict[str, Any]) -> str:
    """sha256 naming a model: its config, quantization, weights, tokenizer and tokenizer fields (chat template,
    special ids). Two loads of the same model (a package, or the model file it was converted from) agree."""
    body = {"config": config, "quant": quant, "weights": weights_sha256, "tokenizer": tokenizer_sha256,
            "tokenizer_meta": tokenizer_meta}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def identity_of(config: Any, quant: Any, tokenizer: Any, manifest: dict[str, Any] | None = None,
                weights: Any = None) -> str:
    """`model_identity` of a loaded model: from its package's manifest (the sha256 of weights.bin and
    tokenizer.json it lists, checked at load), else computed from the weights in memory (int8: the bytes
    weights.bin would hold, so the model file and its package agree; float: every array in order) and the
    tokenizer's JSON."""
    from ..export.package import TOKENIZER, WEIGHTS, weights_digest
    from ..graphs.layout import flatten_weights
    from ..model.quantize import QWeights

    if manifest is not None:
        files = manifest["files"]
        wsha, tsha = files[WEIGHTS], files[TOKENIZER]
    else:
        if isinstance(weights, QWeights):
            wsha = weights_digest(flatten_weights(weights))
        else:  # FloatWeights
            arrays = {"tok_embd": weights.tok_embd, "out_norm": weights.out_norm}
            for i, layer in enumerate(weights.layers):
                arrays.update({f"layers.{i}.{k}": v for k, v in vars(layer).items()})
            if weights.output is not None:
                arrays["output"] = weights.output
            wsha = weights_digest(arrays)
        tsha = hashlib.sha256(tokenizer.to_json().encode()).hexdigest()
    return model_identity(config.to_dict(), quant.to_dict() if quant is not None else None, wsha, tsha,
                          tokenizer.meta())


# ---- writing ------------------------------------------------------------------------------------------------


def _header(identity: str, layout: KVLayout, tokens: list[int], last_used: int) -> bytes:
    payload = len(tokens) * layout.bytes_per_position()
    return json.dumps({"model": identity, "backend": layout.backend, "kv_dtype": layout.kv_dtype, "ctx": layout.ctx,
                       "arrays": layout.shapes(), "n_tokens": len(tokens), "tokens": [int(t) for t in tokens],
                       "payload_bytes": payload, "last_used": int(last_used)}, separators=(",", ":")).encode()


def write_kv_file(path: str, identity: str, layout: KVLayout, tokens: list[int], rows: KVRows, last_used: int) -> int:
    """Write positions [0, len(tokens)) of `rows` to `path` atomically (temporary file + rename); returns its size."""
    n = len(tokens)
    header = _header(identity, layout, tokens, last_used)
    start = HEAD.size + len(header)
    pad = (-start) % ALIGN
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    h = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as f:
            def put(data: Any) -> None:
                nonlocal size
                h.update(data)
                f.write(data)
                size += memoryview(data).nbytes

            put(HEAD.pack(MAGIC, FORMAT_VERSION, len(header)))
            put(header)
            put(b"\0" * pad)
            for spec in layout.arrays:
                block = rows.rows(spec.name, 0, n)
                # C order of the block is C order of each of its first-axis slices, one after the other
                for part in (block if spec.pos_axis > 0 else [block]):
                    put(np.ascontiguousarray(part).data if part.size else b"")
            f.write(h.digest())
            size += DIGEST_BYTES
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return size


# ---- reading ------------------------------------------------------------------------------------------------


def _field(header: dict[str, Any], name: str, kind: type, path: str) -> Any:
    value = header.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise KVFileRefused(f"{path}: header field {name!r} is missing or not a {kind.__name__}; not written by "
                            "this edge_sdk: ignored")
    return value


def parse_header(data: bytes, path: str) -> tuple[dict[str, Any], int]:
    """(the header, the payload's offset) of a file's bytes; magic, version, size and checksum checked."""
    if len(data) < HEAD.size + DIGEST_BYTES:
        raise KVFileRefused(f"{path}: {len(data)} bytes, too short for a prompt-cache file (truncated): ignored")
    magic, version, hlen = HEAD.unpack_from(data)
    if magic != MAGIC:
        raise KVFileRefused(f"{path}: not a prompt-cache file (it does not start with the EDGE-KV magic): ignored")
    if version != FORMAT_VERSION:
        raise KVFileRefused(f"{path}: format version {version}, this edge_sdk reads version {FORMAT_VERSION}: ignored")
    if hlen > min(MAX_HEADER, len(data) - HEAD.size - DIGEST_BYTES):
        raise KVFileRefused(f"{path}: its header ({hlen} bytes) does not fit in the file (truncated or corrupt): ignored")
    try:
        header = json.loads(data[HEAD.size : HEAD.size + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise KVFileRefused(f"{path}: its header is not valid JSON (corrupt): ignored") from None
    if not isinstance(header, dict):
        raise KVFileRefused(f"{path}: its header is not a JSON object (corrupt): ignored")
    payload = _field(header, "payload_bytes", int, path)
    start = HEAD.size + hlen
    start += (-start) % ALIGN
    want = start + payload + DIGEST_BYTES
    if len(data) != want:
        raise KVFileRefused(f"{path}: {len(data)} bytes where its header says {want} (truncated or corrupt): ignored")
    if hashlib.sha256(memoryview(data)[:-DIGEST_BYTES]).digest() != data[-DIGEST_BYTES:]:
        raise KVFileRefused(f"{path}: checksum does not match its content (corrupt): ignored")
    return header, start


def check_header(header: dict[str, Any], path: str, identity: str, layout: KVLayout, vocab_size: int) -> list[int]:
    """The file's token ids, once it is known to be this model's, backend's, KV dtype's and layout's."""
    if _field(header, "model", str, path) != identity:
        raise KVFileRefused(f"{path}: made by another model (its weights, config or tokenizer differ from this "
                            "one's): ignored")
    backend = _field(header, "backend", str, path)
    if backend != layout.backend:
        raise KVFileRefused(f"{path}: made by the {backend} backend, this model runs on {layout.backend}: ignored")
    kv = _field(header, "kv_dtype", str, path)
    if kv != layout.kv_dtype:
        raise KVFileRefused(f"{path}: holds a {kv} KV cache, this model's is {layout.kv_dtype}: ignored")
    if header.get("arrays") != layout.shapes():
        raise KVFileRefused(f"{path}: its KV arrays are laid out as {header.get('arrays')!r}, this model's as "
                            f"{layout.shapes()!r}: ignored")
    tokens = _field(header, "tokens", list, path)
    n = _field(header, "n_tokens", int, path)
    if len(tokens) != n or not all(type(t) is int and 0 <= t < vocab_size for t in tokens):
        raise KVFileRefused(f"{path}: its token ids are not {n} ids of this vocabulary (corrupt): ignored")
    if not 1 <= n <= layout.ctx:
        raise KVFileRefused(f"{path}: holds {n} positions, this model's context is {layout.ctx}: ignored")
    if header["payload_bytes"] != n * layout.bytes_per_position():
        raise KVFileRefused(f"{path}: {header['payload_bytes']} payload bytes for {n} positions, expected "
                            f"{n * layout.bytes_per_position()} (corrupt): ignored")
    return tokens


def read_kv_bytes(data: bytes, path: str, identity: str, layout: KVLayout, vocab_size: int,
                  capacity: int | None = None) -> tuple[list[int], KVRows, int]:
    """(token ids, their KV rows, last_used) from a file's bytes, every check passed; KVFileRefused otherwise.

    `capacity`: positions of room in the rows returned (default: exactly the file's tokens)."""
    header, at = parse_header(data, path)
    tokens = check_header(header, path, identity, layout, vocab_size)
    n = len(tokens)
    rows = empty_rows(layout, max(n, capacity or 0))
    for spec in layout.arrays:
        shape = spec.row_shape(n)
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
        block = np.frombuffer(data, dtype=np.dtype(spec.dtype), count=nbytes // np.dtype(spec.dtype).itemsize,
                              offset=at).reshape(shape)
        np.copyto(rows.rows(spec.name, 0, n), block)
        at += nbytes
    last_used = header.get("last_used")
    return tokens, rows, last_used if type(last_used) is int else 0


def read_kv_file(path: str, identity: str, layout: KVLayout, vocab_size: int,
                 capacity: int | None = None) -> tuple[list[int], KVRows, int]:
    """`read_kv_bytes` of the file at `path` (an unreadable file is refused too)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise KVFileRefused(f"{path}: unreadable ({e.strerror or e}): ignored") from None
    return read_kv_bytes(data, path, identity, layout, vocab_size, capacity)
