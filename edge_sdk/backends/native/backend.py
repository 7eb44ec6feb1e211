"""The "native" backend: the C core (`core.NativeCore`) running the whole int8 model.

The weights are numpy arrays the core reads in place: from a package, views of
`weights.bin`'s bytes read into memory at load (`load_package(weights="memory")`),
so no file can change under the running model. `package_files` (the package's
`PackageFiles`) lets `check_files` tell, before a request, that the package on
disk changed. `native_stream.py` reads the weights from the file graph by graph
instead, for boards whose plan streams them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...model.config import ModelConfig, QuantConfig
from ...model.quantize import QWeights
from ...plan.budget import DEFAULT_PREFILL_CHUNK
from ..base import check_files, check_forward_tokens
from ..kv_state import KVSnapshots
from .core import NativeCore
from .threads import prefer_threads


class NativeBackend(KVSnapshots):
    name = "native"

    def __init__(self, cfg: ModelConfig, qcfg: QuantConfig, weights: QWeights, ctx: int, kv_dtype: str = "f32",
                 threads: int | None = None, prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
                 package_files: Any = None) -> None:
        """`prefill_chunk`: the most tokens one call of the core takes (its arena is planned for it; the
        generator sends prompts in chunks of this size)."""
        self.config = cfg
        self.package_files = package_files
        self.ctx = ctx
        self.kv_dtype = kv_dtype
        self.threads = prefer_threads() if threads is None else threads
        self.core = NativeCore(cfg, n_threads=self.threads, kv_dtype=kv_dtype, ctx=ctx, act_block=qcfg.act_block,
                               max_tokens=prefill_chunk)
        self.core.load_weights(weights)
        self.isa = self.core.isa

    def forward(self, tokens: np.ndarray, pos: int, last_only: bool = False) -> np.ndarray:
        ids = check_forward_tokens(tokens, pos, self.ctx, self.config.vocab_size)  # the one check (and the C core's)
        return self.core.forward(ids.reshape(-1).astype(np.int32), pos, last_only)

    def kv_arrays(self) -> dict[str, tuple[np.ndarray, int]]:
        return self.core.kv_arrays()

    def check_files(self) -> None:
        check_files(self.package_files)

    def close(self) -> None:
        self.core.close()
