"""Checks every backend must pass, shared by the backend test files."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable

import numpy as np
import pytest

from edge_sdk.errors import BackendError, ContextOverflowError
from edge_sdk.export.package import MANIFEST, MANIFEST_DIGEST, manifest_digest, sha256_of


def check_forward_refuses_bad_calls(be: Any) -> None:
    """A backend with ctx 8 over the tiny vocabulary (306 tokens) refuses positions past its context, unknown
    token ids and empty calls (`backends/base.check_forward_tokens`), then closes and refuses every call."""
    with pytest.raises(ContextOverflowError, match="positions 6..9 do not fit in the context of 8"):
        be.forward(np.array([1, 2, 3, 4]), 6)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 306\)"):
        be.forward(np.array([306]), 0)
    with pytest.raises(ValueError, match="at least one token"):
        be.forward(np.array([], dtype=np.int64), 0)
    be.close()
    with pytest.raises(BackendError, match="closed"):
        be.forward(np.array([1]), 0)


# Ways to damage a graph file: each takes the file's bytes and gives the damaged bytes.
DAMAGES: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda b: b"",
    "random": lambda b: np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    "truncated": lambda b: b[: len(b) // 2],
    "header flipped": lambda b: b[:4] + bytes(c ^ 0xFF for c in b[4:40]) + b[40:],
}


def resigned_copy(src: str | os.PathLike, dst: str | os.PathLike, files: dict[str, bytes],
                  edit: Callable[[dict[str, Any]], None] | None = None) -> str:
    """A copy of the package `src` at `dst` with `files` (relative path -> new bytes) written, the manifest changed
    by `edit`, and all re-signed: the files' sha256 and the manifest's own checksum recomputed, so the package
    loader's checks pass and only the backend can tell that the package is wrong."""
    dst = os.fspath(dst)
    shutil.copytree(src, dst)
    for rel, data in files.items():
        with open(os.path.join(dst, rel), "wb") as f:
            f.write(data)
    mpath = os.path.join(dst, MANIFEST)
    with open(mpath, encoding="utf-8") as f:
        manifest = json.load(f)
    for rel in files:
        manifest["files"][rel] = sha256_of(os.path.join(dst, rel))
    if edit is not None:
        edit(manifest)
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    with open(mpath, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    return dst
