"""The LiteRT backend: runs a package's .tflite graphs (embed, layer ranges, head).

Each graph of the package has a .tflite file (`tflite_export.py`) run by
LiteRT's `Interpreter` (`ai-edge-litert`). `tflite-runtime` is not used:
its last release (2.14) needs numpy < 2 and silently ignores per-channel
weight scales in hybrid FULLY_CONNECTED, which gives wrong text.

The K/V cache. The backend keeps the whole cache in its own arrays: keys
(1, n_kv_heads, ctx, head_dim) and values transposed (1, n_kv_heads,
head_dim, ctx) per layer. A layer-range interpreter sees only a prefix of
`P` positions of it as its `past_*` inputs, where P is `pos` rounded up to a
multiple of `window_step` (64): attention then costs O(pos), not O(ctx). The
new rows a call outputs (`key.{i}`, `value.{i}`) are written into the
backend's arrays and straight into the interpreters' input buffers
(`Interpreter.tensor` views), so a decode step copies T rows, never the
cache. Only when `pos` crosses into the next window is an interpreter's
`past_*` input resized and refilled from the backend's arrays, once per
`window_step` tokens.

Measured on SmolLM2-135M (x86, one thread, XNNPACK, "segments" products): a
decode step takes 21-22 ms of CPU at position 70 whether ctx is 256 or 2048,
and 31 ms at position 1000 (attention over the longer window).

Token counts. A layer-range interpreter runs T = 1 tokens (decode) or
T = `prefill_chunk` (prompts, in chunks, the last one padded). Switching
between the two resizes it like a window change (15-55 ms for SmolLM2-135M
here, XNNPACK re-planning, weights not repacked). One interpreter per graph
rather than one per T: XNNPACK packs its own copy of the weights for each
interpreter (SmolLM2-135M's peak RSS in `edge-sdk bench`, "blocks" products:
762 MiB with two interpreters per range, 496 MiB with one; 396 MiB with
"segments"). Embed and head interpreters are resized when T changes (they
have no state); the embed interpreter runs on one thread.

Every interpreter is created at load and its inputs and outputs (names,
dtypes, shape signatures) checked against those `tflite_export.graph_io`
writes; embed and head are also sized for one token there. A damaged or
mismatched file (its checksum re-signed, so the package loader passes it)
then fails at load with a BackendError naming it, not at the first token.

LiteRT runs a model file in place. Given its path it maps the file, and a
.tflite file truncated under the loaded model then killed the process with
SIGBUS; it is given the file's bytes instead, read at load (those that were
hashed: `PackageFiles.read` refuses a file that changed since), which costs
the untouched parts of the files in resident memory (SmolLM2-135M: peak
385 -> 413 MiB; `plan/budget.py` counts it). `check_files`, before each
request, says when the package on disk changed.

Example::

    be = TfliteBackend("smollm2-pkg/", ctx=512, threads=2)
    logits = be.forward(np.array([1, 2, 3]), pos=0, last_only=True)   # (1, vocab)
    be.close()
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BackendError, InvalidArgumentError, PackageError
from ..graphs.spec import GraphSpec, specs_from_manifest
from ..model.rope import rope_table
from .base import check_files, check_forward_tokens
from .kv_state import KVRows, KVSnapshots
from ..export.tflite import graph_file_name, graph_io

WINDOW_STEP = 64  # past positions an interpreter sees grow in steps of this many
PREFILL_CHUNK = 16  # tokens per prompt call of a layer range: 16, 32 and 64 all prefill SmolLM2-135M at
# ~240 tok/s (CPU time, one thread); 16 wastes least on short prompts (8 tokens: 81 ms, 138 ms with 32)
DELEGATES = ("xnnpack", "none")


def litert_interpreter() -> Any:
    """LiteRT's Interpreter class, or BackendError saying what to install."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise BackendError(
            f"the tflite backend needs LiteRT ({e}); install it with `pip install 'edge-sdk[tflite]'` "
            "(ai-edge-litert; tflite-runtime 2.14 is not supported: it ignores per-channel scales)") from e
    return Interpreter


def tflite_files(pkg: Any, specs: list[GraphSpec]) -> list[str]:
    """The .tflite path of each graph, checked against the package's file list."""
    listed = pkg.manifest.get("files", {})
    out = []
    for spec in specs:
        rel = graph_file_name(spec)
        if rel not in listed:
            raise BackendError(f"{pkg.path}: the package has no TFLite graphs; convert the model again with "
                               f"`edge-sdk convert --backend tflite`")
        out.append(os.path.join(pkg.path, rel))
    return out


@dataclass
class _Runner:
    """The interpreter of a layer range, sized for T tokens and `window` past positions (0, 0: not yet)."""

    interp: Any
    index: dict[str, int]  # input/output name -> tensor index
    layers: tuple[tuple[int, int, int, int, int], ...] = ()  # (layer, key out, value out, past key, past value)
    T: int = 0
    window: int = 0


class TfliteBackend(KVSnapshots):
    """A package's .tflite graphs on LiteRT; one sequence at a time."""

    name = "tflite"

    def __init__(self, package: Any, ctx: int, threads: int | None = None, delegate: str = "xnnpack",
                 prefill_chunk: int = PREFILL_CHUNK, window_step: int = WINDOW_STEP, kv_dtype: str = "f32") -> None:
        from ..export.package import Package, load_package

        pkg = package if isinstance(package, Package) else load_package(package, weights="file")
        if kv_dtype != "f32":
            raise BackendError(f"the tflite backend keeps its K/V cache in float32; kv_dtype {kv_dtype!r} is not supported")
        if delegate not in DELEGATES:
            raise InvalidArgumentError(f"delegate must be one of {', '.join(DELEGATES)}, got {delegate!r}")
        if prefill_chunk < 1 or window_step < 1:
            raise InvalidArgumentError("prefill_chunk and window_step must be >= 1")
        self.config = cfg = pkg.config
        if ctx < 1 or ctx > cfg.max_ctx:
            raise InvalidArgumentError(f"ctx must be in [1, {cfg.max_ctx}] for this model, got {ctx}")
        self.ctx, self.chunk, self.step = ctx, prefill_chunk, window_step
        self.kv_dtype = kv_dtype
        try:
            self.specs: list[GraphSpec] = specs_from_manifest(pkg.graphs)
        except PackageError as e:
            raise BackendError(str(e)) from e
        if not self.specs:
            raise BackendError(f"{pkg.path}: the package has no graph records; convert the model again")
        self.files = tflite_files(pkg, self.specs)
        self.package_files = pkg.files
        self._contents: dict[int, bytes] = {}  # graph -> the bytes of its .tflite file, which LiteRT runs in place
        self._Interpreter = litert_interpreter()
        self._kwargs: dict[str, Any] = {"num_threads": threads}
        if delegate == "none":
            from ai_edge_litert.interpreter import OpResolverType

            self._kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        # the cache: keys (1, n_kv_heads, ctx, head_dim), values transposed (1, n_kv_heads, head_dim, ctx)
        kvh, hd = cfg.n_kv_heads, cfg.head_dim
        self.keys = {i: np.zeros((1, kvh, ctx, hd), np.float32) for s in self.specs for i in range(s.first_layer, s.end_layer)}
        self.values = {i: np.zeros((1, kvh, hd, ctx), np.float32) for i in self.keys}
        cos, sin = rope_table(cfg, ctx + prefill_chunk)  # padded rows of a last chunk may pass ctx
        self._cos = np.concatenate([cos, cos], axis=1)  # (ctx + chunk, head_dim)
        self._sin = np.concatenate([-sin, sin], axis=1)  # first half negated: x * cos + concat(x2, x1) * sin
        self._stateless: dict[int, tuple[Any, int, int, int]] = {}  # embed, head: (interpreter, T, input, output)
        self._runners: dict[int, _Runner] = {}  # graph -> its interpreter, for layer ranges
        # every file is opened and its interface checked here, so that a damaged package fails at load
        for g, spec in enumerate(self.specs):
            if spec.kind == "layers":
                self._runner(g)
            else:
                interp = self._new_interpreter(g)
                self._stateless[g] = (interp, 0, interp.get_input_details()[0]["index"],
                                      interp.get_output_details()[0]["index"])
                self._resize_stateless(g, 1)

    # ---- interpreters ----------------------------------------------------------------------------
    def _new_interpreter(self, g: int) -> Any:
        """The interpreter of graph g, its inputs and outputs checked against those `tflite_export` writes."""
        kwargs = dict(self._kwargs)
        if self.specs[g].kind == "embed":
            # a gather of T rows: nothing for a thread pool to share, and a second pool's threads, waiting after
            # each call, take time from the layers' pool (SmolLM2-135M, 2 threads: 16.1 -> 15.0 ms per decode step)
            kwargs["num_threads"] = 1
        path = self.files[g]
        # LiteRT runs a model file in place: given its path it maps it (shared, read-only), and truncating the file
        # under the loaded model then killed the process with SIGBUS. It runs the bytes read here instead, those
        # that were hashed at load (PackageFiles.read refuses a file that changed since).
        files = self.package_files
        rel = os.path.relpath(os.path.abspath(path), files.path) if files is not None else ""
        if files is not None and rel in files.stamps:
            content = files.read(rel)
        else:
            with open(path, "rb") as f:
                content = f.read()
        self._contents[g] = content
        try:
            interp = self._Interpreter(model_content=content, **kwargs)
            inputs, outputs = interp.get_input_details(), interp.get_output_details()
        except Exception as e:  # LiteRT raises ValueError/RuntimeError for a damaged file
            raise BackendError(f"{path}: not a readable .tflite graph ({e}); convert the model again") from e
        want_in, want_out = graph_io(self.specs[g], self.config)
        got = [d["name"] for d in inputs], [d["name"] for d in outputs]
        if got != ([n for n, _, _ in want_in], [n for n, _, _ in want_out]):
            raise BackendError(f"{path}: its inputs/outputs ({', '.join(got[0])} -> {', '.join(got[1])}) "
                               f"are not those this edge_sdk writes; convert the model again")
        for d, (name, shape, dtype) in zip(inputs + outputs, want_in + want_out):
            have = (np.dtype(d["dtype"]).name, [int(n) for n in d["shape_signature"]])
            if have != (dtype, shape):
                raise BackendError(f"{path}: {name} is {have[0]} {have[1]}, not the {dtype} {shape} this edge_sdk "
                                   f"writes; convert the model again")
        return interp

    def _allocate(self, g: int, interp: Any, sizes: dict[int, list[int]], what: str) -> None:
        """Resize inputs (tensor index -> shape) and allocate; LiteRT's errors become BackendError naming the file."""
        try:
            for index, shape in sizes.items():
                interp.resize_tensor_input(index, shape)
            interp.allocate_tensors()
        except Exception as e:  # RuntimeError/ValueError from LiteRT or its delegate
            raise BackendError(f"{self.files[g]}: LiteRT cannot size this graph for {what} ({e}); "
                               f"convert the model again") from e

    def _resize_stateless(self, g: int, T: int) -> None:
        interp, _, i_in, i_out = self._stateless[g]
        shape = [1, T] if self.specs[g].kind == "embed" else [1, T, self.config.dim]
        self._allocate(g, interp, {i_in: shape}, f"{T} tokens")
        self._stateless[g] = (interp, T, i_in, i_out)

    def _stateless_run(self, g: int, value: np.ndarray) -> np.ndarray:
        if self._stateless[g][1] != value.shape[1]:
            self._resize_stateless(g, value.shape[1])
        interp, _, i_in, i_out = self._stateless[g]
        interp.set_tensor(i_in, value)
        interp.invoke()
        return interp.get_tensor(i_out)

    def _runner(self, g: int) -> _Runner:
        r = self._runners.get(g)
        if r is None:
            interp = self._new_interpreter(g)
            index = {d["name"]: d["index"] for d in interp.get_input_details()}
            index.update({d["name"]: d["index"] for d in interp.get_output_details()})
            spec = self.specs[g]
            layers = tuple((i, index[f"key.{i}"], index[f"value.{i}"], index[f"past_key.{i}"], index[f"past_value.{i}"])
                           for i in range(spec.first_layer, spec.end_layer))
            r = _Runner(interp, index, layers)
            self._runners[g] = r
        return r

    def _map_window(self, g: int, r: _Runner, T: int, window: int) -> None:
        """Resize the runner to T tokens and `window` past positions, filled from the cache."""
        cfg, spec, interp = self.config, self.specs[g], r.interp
        kvh, hd = cfg.n_kv_heads, cfg.head_dim
        sizes = {r.index["x"]: [1, T, cfg.dim], r.index["mask_past"]: [T, window], r.index["mask_new"]: [T, T],
                 r.index["cos"]: [T, hd], r.index["sin"]: [T, hd]}
        for i in range(spec.first_layer, spec.end_layer):
            sizes[r.index[f"past_key.{i}"]] = [1, kvh, window, hd]
            sizes[r.index[f"past_value.{i}"]] = [1, kvh, hd, window]
        self._allocate(g, interp, sizes, f"{T} tokens and {window} past positions")
        for i in range(spec.first_layer, spec.end_layer):
            interp.set_tensor(r.index[f"past_key.{i}"], self.keys[i][:, :, :window])
            interp.set_tensor(r.index[f"past_value.{i}"], np.ascontiguousarray(self.values[i][..., :window]))
        interp.set_tensor(r.index["mask_new"], np.triu(np.full((T, T), -np.inf, np.float32), 1))
        r.T, r.window = T, window

    def _window_for(self, pos: int) -> int:
        return min(self.ctx, max(self.step, -(-pos // self.step) * self.step))

    # ---- running ---------------------------------------------------------------------------------
    def _run_layers(self, g: int, x: np.ndarray, pos: int) -> np.ndarray:
        """x (1, T, dim) of which the first n rows are tokens at pos..pos+n-1 (the rest padding)."""
        n = x.shape[1]
        T = 1 if n == 1 else self.chunk
        r = self._runner(g)
        window = self._window_for(pos)
        if (T, window) != (r.T, r.window):
            self._map_window(g, r, T, window)
        if n < T:
            x = np.concatenate([x, np.zeros((1, T - n, x.shape[2]), np.float32)], axis=1)
        interp, idx = r.interp, r.index
        interp.set_tensor(idx["x"], np.ascontiguousarray(x, dtype=np.float32))
        mask = np.where(np.arange(window) < pos, np.float32(0), np.float32(-np.inf)).astype(np.float32)
        interp.set_tensor(idx["mask_past"], np.broadcast_to(mask, (T, window)).copy())
        interp.set_tensor(idx["cos"], self._cos[pos : pos + T])
        interp.set_tensor(idx["sin"], self._sin[pos : pos + T])
        interp.invoke()
        out = interp.get_tensor(idx["x_out"])[:, :n]
        end = min(r.window, pos + n)  # new rows that fall in this runner's window go into its past inputs too
        for i, k_out, v_out, k_past, v_past in r.layers:
            k = interp.get_tensor(k_out)[:, :, :n]  # (1, kvh, n, hd)
            v = interp.get_tensor(v_out)[..., :n]  # (1, kvh, hd, n)
            self.keys[i][:, :, pos : pos + n] = k
            self.values[i][..., pos : pos + n] = v
            if end > pos:  # views of the interpreter's buffers: no full copy
                interp.tensor(k_past)()[:, :, pos:end] = k[:, :, : end - pos]
                interp.tensor(v_past)()[..., pos:end] = v[..., : end - pos]
        return out

    def forward(self, tokens: np.ndarray, pos: int, last_only: bool = False) -> np.ndarray:
        """Logits (T, vocab) float32 for tokens at positions pos..pos+T-1, or (1, vocab) with last_only."""
        tokens = check_forward_tokens(tokens, pos, self.ctx, self.config.vocab_size)
        n = tokens.shape[1]
        if not self.files:
            raise BackendError("the tflite backend is closed")
        x: np.ndarray = tokens.astype(np.int32)
        for g, spec in enumerate(self.specs):
            if spec.kind == "embed":
                x = self._stateless_run(g, x)
            elif spec.kind == "layers":
                step = 1 if n == 1 else self.chunk
                x = np.concatenate([self._run_layers(g, x[:, s : s + step], pos + s) for s in range(0, n, step)], axis=1)
            else:
                if last_only:
                    x = x[:, -1:]
                x = self._stateless_run(g, np.ascontiguousarray(x))
        return x[0]

    # ---- saving and restoring the cache ----------------------------------------------------------------
    def kv_arrays(self) -> dict[str, tuple[np.ndarray, int]]:
        """The backend's own cache: "key.{i}" (1, n_kv_heads, ctx, head_dim), positions on axis 2, and
        "value.{i}" (1, n_kv_heads, head_dim, ctx), on axis 3."""
        return {**{f"key.{i}": (k, 2) for i, k in self.keys.items()},
                **{f"value.{i}": (v, 3) for i, v in self.values.items()}}

    def kv_restore(self, rows: KVRows, start: int, end: int) -> None:
        """Copy positions [start, end) of `rows` into the cache and into the past inputs of every interpreter
        whose window holds them (the rows only: the rest of a window is refilled when it changes)."""
        super().kv_restore(rows, start, end)
        for r in self._runners.values():
            stop = min(end, r.window)
            if stop <= start:
                continue
            interp = r.interp
            for i, _, _, k_past, v_past in r.layers:
                interp.tensor(k_past)()[:, :, start:stop] = self.keys[i][:, :, start:stop]
                interp.tensor(v_past)()[..., start:stop] = self.values[i][..., start:stop]

    def check_files(self) -> None:
        check_files(self.package_files)

    def close(self) -> None:
        self._runners = {}
        self._stateless = {}
        self._contents = {}
        self.files = []
        self.keys, self.values = {}, {}
