"""A package's precomputed system prompt: its KV rows made at conversion, restored as a pinned slot at load.

`edge-sdk convert --system-prompt FILE` renders FILE's text as the system turn of the model's chat template,
prefills it on each backend asked for (`--system-prompt-backend`, default the native core) and stores the
rows as prompt-cache files in the package, `prompt_cache/system.<backend>.<kv dtype>.kvc`, listed with their
sha256 in the manifest like every package file (and so signed with it). Loading the package on that backend
with that KV dtype checks the file as any prompt-cache file (`kv_file`: model identity, backend, KV dtype,
format version, checksum) and keeps it as a pinned slot: every chat whose rendering starts with that system
turn reuses it, from the first request on.

Example::

    rows_file = write_system_cache(model.backend, ids, identity, "pkg/prompt_cache/system.native.f16.kvc")
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from ..backends.kv_state import KVLayout, empty_rows
from ..errors import InvalidArgumentError
from .kv_file import KVFileRefused, read_kv_bytes, write_kv_file

SYSTEM_DIR = "prompt_cache"


def system_file(backend: str, kv_dtype: str) -> str:
    """The package-relative path of the system-prompt cache for `backend` with `kv_dtype` values."""
    return f"{SYSTEM_DIR}/system.{backend}.{kv_dtype}.kvc"


def system_prompt_ids(chat_prompt: Callable[..., str], encode: Callable[[str], list[int]], text: str) -> list[int]:
    """The token ids of `text` rendered as a system turn, checked to start every conversation that opens with it
    (a chat template that folds the system prompt into the first user turn never renders it as a prefix)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError("the system prompt is empty")
    system = [{"role": "system", "content": text}]
    ids = encode(chat_prompt(system, add_generation_prompt=False))
    probe = encode(chat_prompt(system + [{"role": "user", "content": "Hello"}]))
    if probe[: len(ids)] != ids:
        raise InvalidArgumentError("this model's chat template does not render the system prompt as the start of "
                                   "the conversation; a precomputed system-prompt cache would never be used")
    return ids


def write_system_cache(backend: Any, ids: Sequence[int], identity: str, path: str, chunk: int = 64) -> int:
    """Prefill `ids` on `backend` (from position 0, in chunks of `chunk`) and write their rows to `path`."""
    ids = [int(t) for t in ids]
    layout: KVLayout = backend.kv_layout()
    if not 1 <= len(ids) <= layout.ctx:
        raise InvalidArgumentError(f"the system prompt has {len(ids)} tokens; the context holds {layout.ctx}")
    for start in range(0, len(ids), chunk):
        backend.forward(np.asarray(ids[start : start + chunk], dtype=np.int64), start, last_only=True)
    rows = empty_rows(layout, len(ids))
    backend.kv_save(rows, 0, len(ids))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return write_kv_file(path, identity, layout, ids, rows, last_used=0)


def package_system_slot(pkg: Any, layout: KVLayout, identity: str, vocab_size: int) -> tuple[list[int], Any] | None:
    """(tokens, rows) of the package's system-prompt cache for this backend and KV dtype, or None: when the
    package has none, or none for this backend and dtype, or its file is refused (both said in a warning)."""
    listed = [rel for rel in pkg.manifest.get("files", {}) if rel.startswith(SYSTEM_DIR + "/")]
    if not listed:
        return None
    rel = system_file(layout.backend, layout.kv_dtype)
    if rel not in listed:
        warnings.warn(f"prompt cache: {pkg.path} has a precomputed system prompt for "
                      f"{', '.join(sorted(os.path.basename(r) for r in listed))}, not for the {layout.backend} "
                      f"backend with {layout.kv_dtype} KV values (system.{layout.backend}.{layout.kv_dtype}.kvc); "
                      "it is computed at the first request instead", RuntimeWarning, stacklevel=3)
        return None
    data = pkg.files.read(rel)  # the bytes hashed at load, as the manifest lists them
    try:
        tokens, rows, _ = read_kv_bytes(data, os.path.join(pkg.path, rel), identity, layout, vocab_size)
    except KVFileRefused as e:
        warnings.warn(f"prompt cache: {e}", RuntimeWarning, stacklevel=3)
        return None
    return tokens, rows
