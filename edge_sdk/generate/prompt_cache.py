"""The prompt cache: slots holding the token ids and KV rows of recent prompts, reused by later ones.

A backend holds one sequence in its KV cache; the generator already keeps what a new prompt shares with the
previous one. A prompt cache keeps `n_slots` more: after each generation the cache's content (the prompt and
what was generated) is copied into a slot, and a later prompt that shares a longer prefix with a slot than
with the live cache gets that prefix's rows copied back (`restore`) and is prefilled from there: the next turn
of a conversation that was interrupted by another one, or a fixed system prompt in front of every request.

Slots are reused least recently used first. A save copies only the rows a slot does not hold already: a
conversation that goes on extends its own slot (a slot whose tokens start the new content), and a new one
overwrites the least recently used slot from the first position where they differ. Each slot owns room for a
whole context (`kv_state.empty_rows`, anonymous pages that become resident as rows are written), allocated
once: saving and restoring copy rows and allocate nothing. Pinned slots (a package's precomputed system
prompt) are restored from but never overwritten.

With a directory (`load(..., prompt_cache=DIR)`), `save_files` writes each slot changed since it was read
to `DIR/slot-<i>.kvc` (`kv_file`; atomically) and `load_files`, at load, reads them back, refusing with a
warning any file that is not this model's, backend's, KV dtype's or format's, or is damaged.

Rows restored from a slot are the bytes computed for those tokens before; the native core and the numpy
reference compute a position's rows to the same bits however the prompt was chunked, so greedy output with
a hit equals output without one (`tests/test_prompt_cache.py` holds every backend to it).

Example::

    cache = PromptCache(backend, n_slots=2)
    kept, restored = cache.restore(backend, live_tokens, prompt_ids, kept=0)
    ...                                       # prefill prompt_ids[kept + restored:], decode
    cache.save(backend, all_tokens_in_the_cache)
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..backends.kv_state import KVLayout, KVRows, empty_rows
from ..errors import BackendError, InvalidArgumentError
from .kv_file import SUFFIX, KVFileRefused, read_kv_bytes, read_kv_file, write_kv_file

SLOT_PREFIX = "slot-"


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids `a` and `b` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class Slot:
    """Token ids and the KV rows of positions [0, len(tokens)) in `rows`."""

    rows: KVRows | None  # None until first used (room is taken on the first save)
    tokens: list[int] = field(default_factory=list)
    last_used: int = 0  # the cache's clock when it was last restored from or saved into
    pinned: bool = False  # restored from, never overwritten (a package's system prompt)
    dirty: bool = False  # changed since it was read from or written to its file


def check_kv_backend(backend: Any) -> KVLayout:
    """The backend's KV layout, or BackendError when it cannot save and restore its cache."""
    if not callable(getattr(backend, "kv_layout", None)):
        raise BackendError(f"the {getattr(backend, 'name', '?')} backend cannot save and restore its KV cache, "
                           "so it has no prompt-cache slots; load it with slots=0")
    return backend.kv_layout()


class PromptCache:
    """`n_slots` slots of one backend's KV cache (plus any pinned ones); see the module's docstring."""

    def __init__(self, backend: Any, n_slots: int, directory: str | os.PathLike | None = None,
                 identity: str | None = None) -> None:
        self.layout = check_kv_backend(backend)
        self.vocab_size = backend.config.vocab_size
        self.slots = [Slot(None) for _ in range(n_slots)]
        self.pinned: list[Slot] = []
        self.clock = 0
        self.directory = os.fspath(directory) if directory is not None else None
        self.identity = identity  # model_identity(...): needed to read and write files
        if self.directory is not None and identity is None:
            raise InvalidArgumentError("a prompt-cache directory needs the model's identity")

    # ---- matching and restoring ----------------------------------------------------------------------------
    def _tick(self, slot: Slot) -> None:
        self.clock += 1
        slot.last_used = self.clock

    def best(self, prompt: Sequence[int], limit: int) -> tuple[Slot | None, int]:
        """The slot sharing the longest prefix with `prompt` and that length (at most `limit`)."""
        best, length = None, 0
        for slot in self.pinned + self.slots:
            n = min(common_prefix(slot.tokens, prompt), limit)
            if n > length:
                best, length = slot, n
        return best, length

    def restore(self, backend: Any, live: Sequence[int], prompt: Sequence[int], kept: int) -> tuple[int, int]:
        """Put the longest prefix of `prompt` any slot holds into the backend's cache when it is longer than the
        `kept` positions the live cache (holding `live`) shares with it. Returns (positions kept in place,
        positions copied from the slot); their sum is how much of the prompt need not be computed.

        At most len(prompt) - 1 positions: the last prompt token is always computed, for its logits."""
        slot, length = self.best(prompt, len(prompt) - 1)
        if slot is None or length <= kept:
            return kept, 0
        same = min(common_prefix(live, slot.tokens), length)  # rows the live cache already holds
        assert slot.rows is not None
        backend.kv_restore(slot.rows, same, length)
        self._tick(slot)
        return same, length - same

    # ---- saving --------------------------------------------------------------------------------------------
    def save(self, backend: Any, tokens: Sequence[int]) -> Slot | None:
        """Copy the backend's cache, which holds `tokens` at positions [0, len(tokens)), into a slot: the one
        whose tokens start `tokens` (the same conversation, gone on), else the least recently used one."""
        tokens = list(tokens)
        if not tokens or not self.slots:
            return None
        slot = None
        for s in self.pinned + self.slots:
            if common_prefix(s.tokens, tokens) == len(tokens):
                self._tick(s)  # a slot already holds all of it
                return s
        for s in self.slots:
            if s.tokens and common_prefix(s.tokens, tokens) == len(s.tokens):
                slot = s
                break
        if slot is None:
            slot = min(self.slots, key=lambda s: (bool(s.tokens), s.last_used))
        if slot.rows is None:
            slot.rows = empty_rows(self.layout, self.layout.ctx)
        same = common_prefix(slot.tokens, tokens)
        backend.kv_save(slot.rows, same, len(tokens))
        slot.tokens = tokens
        slot.dirty = True
        self._tick(slot)
        return slot

    def add_pinned(self, tokens: list[int], rows: KVRows) -> None:
        """A slot that is restored from and never overwritten (a package's precomputed system prompt)."""
        self.pinned.append(Slot(rows, list(tokens), pinned=True))

    # ---- files ---------------------------------------------------------------------------------------------
    def _file(self, i: int) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, f"{SLOT_PREFIX}{i}{SUFFIX}")

    def load_files(self) -> list[str]:
        """Fill the slots from the directory's files, most recently used first; returns the messages of the
        files refused (each also a RuntimeWarning)."""
        if self.directory is None:
            return []
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(SUFFIX) and not n.startswith("."))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise InvalidArgumentError(f"prompt-cache directory {self.directory}: {e.strerror or e}") from None
        found, refused = [], []
        for name in names:
            path = os.path.join(self.directory, name)
            try:
                tokens, rows, last_used = read_kv_file(path, self.identity or "", self.layout, self.vocab_size,
                                                       capacity=self.layout.ctx)
            except KVFileRefused as e:
                refused.append(str(e))
                warnings.warn(f"prompt cache: {e}", RuntimeWarning, stacklevel=3)
                continue
            found.append((last_used, name, tokens, rows))
        found.sort(key=lambda f: -f[0])  # most recently used first: slot 0 gets the newest
        found = found[: len(self.slots)]
        for i, (_, name, tokens, rows) in enumerate(found):
            slot = self.slots[i]
            slot.tokens, slot.rows = tokens, rows
            slot.last_used = len(found) - i
            slot.dirty = name != os.path.basename(self._file(i))  # written under its new name at the next save
        self.clock = len(found)
        return refused

    def save_files(self) -> int:
        """Write every slot changed since it was read or written to the directory (atomically), remove slot
        files no slot holds any more; returns how many files were written."""
        if self.directory is None:
            return 0
        os.makedirs(self.directory, exist_ok=True)
        written = 0
        for i, slot in enumerate(self.slots):
            if slot.dirty and slot.tokens and slot.rows is not None:
                write_kv_file(self._file(i), self.identity or "", self.layout, slot.tokens, slot.rows, slot.last_used)
                slot.dirty = False
                written += 1
        keep = {os.path.basename(self._file(i)) for i, s in enumerate(self.slots) if s.tokens}
        for name in os.listdir(self.directory):
            if name.startswith(SLOT_PREFIX) and name.endswith(SUFFIX) and name not in keep:
                try:
                    os.unlink(os.path.join(self.directory, name))
                except OSError:
                    pass
        return written

    # ---- what it holds -------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {"slots": len(self.slots), "slot_tokens": [len(s.tokens) for s in self.slots],
                "pinned_tokens": [len(s.tokens) for s in self.pinned],
                "bytes_per_token": self.layout.bytes_per_position(), "directory": self.directory}


def pinned_from_bytes(data: bytes, path: str, identity: str, layout: KVLayout, vocab_size: int) -> tuple[list[int], KVRows]:
    """A precomputed slot's tokens and rows from a file's bytes (checked as any prompt-cache file)."""
    tokens, rows, _ = read_kv_bytes(data, path, identity, layout, vocab_size)
    return tokens, rows


def check_directory(directory: Any) -> str | None:
    """`prompt_cache=`: a directory path (made at the first save when missing), or None."""
    if directory is None:
        return None
    if not isinstance(directory, (str, os.PathLike)):
        raise InvalidArgumentError(f"prompt_cache must be a directory path, got {directory!r}")
    path = os.fspath(directory)
    if os.path.exists(path) and not os.path.isdir(path):
        raise InvalidArgumentError(f"prompt_cache={path}: exists and is not a directory")
    return path


def open_prompt_cache(backend: Any, n_slots: int, directory: str | None, identity: Callable[[], str],
                      package: Any = None, asked: bool = False) -> PromptCache | None:
    """The prompt cache of a model being loaded, or None when it has no slot at all: `n_slots` slots, filled
    from `directory`'s files, plus the package's precomputed system prompt as a pinned slot.

    `identity()` gives the model's identity (computed only when a file is read or written). `asked`: the
    slots were asked for by the caller, so a backend that cannot save its cache is an error (else no slots)."""
    from .system_prompt import SYSTEM_DIR, package_system_slot

    if directory is not None and n_slots < 1:
        raise InvalidArgumentError(f"prompt_cache={directory} needs at least one slot; got slots={n_slots}")
    if not callable(getattr(backend, "kv_layout", None)):
        if asked and n_slots:
            check_kv_backend(backend)  # raises, saying why
        return None
    system = package is not None and any(rel.startswith(SYSTEM_DIR + "/") for rel in package.manifest.get("files", {}))
    if not n_slots and not system:
        return None
    ident = identity() if directory is not None or system else None
    cache = PromptCache(backend, n_slots, directory, ident)
    if system:
        found = package_system_slot(package, cache.layout, ident or "", cache.vocab_size)
        if found is not None:
            cache.add_pinned(*found)
    cache.load_files()
    return cache
