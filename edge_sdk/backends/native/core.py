"""The native core's runner: a LLaMA model's graphs (embedding, layer ranges, head) on the C core.

`NativeCore` owns the C context (thread pool and kernel set), the KV cache, the RoPE table and one scratch
arena laid out by the memory planner (`plan.arena`, checked by `plan.verify`); every array goes through
`arrays` before a call and no cffi object leaves this module.

Example::

    core = NativeCore(cfg, n_threads=2, kv_dtype="f16", ctx=512)
    core.load_weights(qweights)              # edge_sdk.model.quantize.QWeights
    logits = core.forward(np.array([1, 2, 3]), pos=0, last_only=True)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ...errors import BackendError, PlanError, UnsupportedModelError
from ...model.config import ModelConfig
from ...plan.arena import ArenaPlan
from ...plan.arena import plan as plan_arena
from ...plan.native_buffers import ALIGN, DEFAULT_ACT_BLOCK, arena_bytes, layer_buffers
from ...plan.verify import verify as verify_arena
from .arrays import LAYER_FIELDS, QMAX, aligned_empty, need, qmat_parts, token_ids
from .library import ISA_NAMES, _isa_id, _native, kernel_names

class PreparedLayers:
    """Layer weights checked and laid out as C structs once (opaque; keeps the arrays alive).

    Made by `NativeCore.prepare_layers`; pass it to `NativeCore.run_layers`.
    """

    def __init__(self, core: "NativeCore", layers: Sequence[Any], check_range: bool) -> None:
        n = core._n
        self._core = core
        self._keep: list[np.ndarray] = []
        self._structs = n.ffi.new("es_layer_weights[]", max(1, len(layers)))
        self.n_layers = len(layers)
        for i, layer in enumerate(layers):
            s = self._structs[i]
            for norm in ("attn_norm", "ffn_norm"):
                arr = need(_field(layer, norm), np.float32, (core.cfg.dim,), f"layer {i} {norm}")
                self._keep.append(arr)
                setattr(s, norm, n.ffi.cast("const float *", arr.ctypes.data))
            for f in LAYER_FIELDS:
                core._fill_qmat(getattr(s, f), _field(layer, f), f"layer {i} {f}", self._keep, check_range)


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        if name not in obj:
            raise BackendError(f"layer weights have no {name!r}")
        return obj[name]
    if not hasattr(obj, name):
        raise BackendError(f"layer weights have no {name!r}")
    return getattr(obj, name)


class NativeCore:
    """A LLaMA model's graphs on the native core: embed, layer ranges, head.

    Owns an es_ctx (thread pool + kernel set), the KV cache (numpy,
    `(n_layers, n_kv_heads, ctx, head_dim)` float32 or float16), the RoPE table
    and one scratch arena planned for `max_tokens` tokens per call (longer
    inputs are run in chunks; the results are the same bits). Not thread-safe:
    one call at a time.

    Example::

        core = NativeCore(cfg, n_threads=2, kv_dtype="f16", ctx=256)
        x = core.embed(qw.tok_embd, np.array([1, 2, 3]))
        x = core.run_layers(qw.layers, 0, x, pos=0)
        logits = core.head(x[-1:], qw.out_norm, qw.head)
    """

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        n_threads: int = 1,
        kv_dtype: str = "f32",
        ctx: int | None = None,
        act_block: int = DEFAULT_ACT_BLOCK,
        max_tokens: int = 64,
        isa: str = "auto",
        rope: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if cfg.arch != "llama":
            raise UnsupportedModelError(f"the native core runs llama-architecture models, not {cfg.arch!r}")
        if kv_dtype not in ("f32", "f16"):
            raise BackendError(f"kv_dtype must be 'f32' or 'f16', got {kv_dtype!r}")
        if int(max_tokens) < 1:
            raise BackendError(f"max_tokens must be positive, got {max_tokens}")
        self._n = _native()
        self.cfg = cfg
        self.ctx = int(ctx or cfg.max_ctx)
        if self.ctx < 1:
            raise BackendError(f"ctx must be positive, got {ctx}")
        self.n_threads = int(n_threads)
        self.kv_dtype = kv_dtype
        self.act_block = int(act_block)
        self.max_tokens = min(int(max_tokens), self.ctx)
        ffi, lib = self._n.ffi, self._n.lib

        pctx = ffi.new("es_ctx **")
        self._n.check(lib.es_ctx_create(self.n_threads, _isa_id(isa), pctx), f"creating a native context (isa={isa})")
        self._ctx = pctx[0]
        info_t, info_i = ffi.new("int32_t *"), ffi.new("int32_t *")
        self._n.check(lib.es_ctx_info(self._ctx, info_t, info_i), "es_ctx_info")
        self.isa = ISA_NAMES[info_i[0]]

        self._dims = ffi.new("es_dims *", {
            "dim": cfg.dim, "n_heads": cfg.n_heads, "n_kv_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
            "ffn_dim": cfg.ffn_dim, "vocab_size": cfg.vocab_size, "n_layers": cfg.n_layers,
            "act_block": self.act_block, "rms_eps": cfg.rms_eps,
        })
        shape = (cfg.n_layers, cfg.n_kv_heads, self.ctx, cfg.head_dim)
        dt = np.float16 if kv_dtype == "f16" else np.float32
        self._k = np.zeros(shape, dtype=dt)
        self._v = np.zeros(shape, dtype=dt)
        # every array of the cache with its position axis: what a prompt-cache slot saves and restores
        self._kv_arrays = {"k": (self._k, 2), "v": (self._v, 2)}
        self._kv = ffi.new("es_kv_cache *", {
            "k": ffi.cast("void *", self._k.ctypes.data), "v": ffi.cast("void *", self._v.ctypes.data),
            "dtype": 1 if kv_dtype == "f16" else 0, "n_layers": cfg.n_layers, "n_kv_heads": cfg.n_kv_heads,
            "ctx": self.ctx, "head_dim": cfg.head_dim,
        })
        if rope is None:
            from ...model.rope import rope_table

            rope = rope_table(cfg, self.ctx)
        half = cfg.head_dim // 2
        self._cos = need(np.ascontiguousarray(rope[0], dtype=np.float32)[: self.ctx], np.float32,
                          (self.ctx, half), "rope cos")
        self._sin = need(np.ascontiguousarray(rope[1], dtype=np.float32)[: self.ctx], np.float32,
                          (self.ctx, half), "rope sin")
        self._rope = ffi.new("es_rope *", {
            "cos": ffi.cast("const float *", self._cos.ctypes.data),
            "sin": ffi.cast("const float *", self._sin.ctypes.data), "n_pos": self.ctx, "half_dim": half,
        })
        self.buffers = layer_buffers(cfg, self.max_tokens, self.ctx, self.n_threads, self.act_block)
        # the scratch arena is laid out by the memory planner; set_plan checks it with the planner's verifier
        arena = plan_arena(self.buffers, ALIGN, "greedy_by_size")
        self.arena_plan = arena
        self.set_plan(arena.offsets_for(self.buffers), arena.arena_bytes)
        self._model: dict[str, Any] | None = None

    # ---- lifetime ----

    def close(self) -> None:
        """Stop the thread pool; the object is unusable afterwards."""
        if getattr(self, "_ctx", None) is not None:
            self._n.lib.es_ctx_destroy(self._ctx)
            self._ctx = None

    def __enter__(self) -> "NativeCore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _live(self) -> Any:
        if self._ctx is None:
            raise BackendError("this NativeCore is closed")
        return self._ctx

    # ---- state ----

    def set_plan(self, offsets: Sequence[int], arena_size: int | None = None, verify: bool = True) -> None:
        """Use these buffer offsets (e.g. from the memory planner) for `self.buffers`.

        `self.buffers` is `layer_buffers(cfg, max_tokens, ctx, n_threads,
        act_block)`; plan exactly those. The planner's verifier checks here that
        the buffers fit, are 64-byte aligned and that no two alive at the same op
        share bytes; the native side checks the same again on every call
        (`verify=False` leaves it to the native side alone).
        """
        offs = [int(o) for o in offsets]
        if len(offs) != len(self.buffers):
            raise BackendError(f"{len(offs)} offsets for {len(self.buffers)} buffers")
        size = int(arena_size) if arena_size is not None else arena_bytes(self.buffers, offs)
        if verify:
            plan = ArenaPlan("caller's", ALIGN, {b.name: o for b, o in zip(self.buffers, offs)}, size)
            try:
                verify_arena(self.buffers, plan, ALIGN)
            except PlanError as e:
                raise BackendError(f"arena plan refused: {e}") from None
        self._offsets = np.array(offs, dtype=np.uint64)
        self._arena = aligned_empty(max(size, 1))
        self.arena_size = size

    def reset(self) -> None:
        """Forget the KV cache (zero it)."""
        self._k.fill(0)
        self._v.fill(0)

    @property
    def kv_cache(self) -> tuple[np.ndarray, np.ndarray]:
        """Read-only views of K and V, (n_layers, n_kv_heads, ctx, head_dim)."""
        k, v = self._k.view(), self._v.view()
        k.flags.writeable = False
        v.flags.writeable = False
        return k, v

    def kv_arrays(self) -> dict[str, tuple[np.ndarray, int]]:
        """The KV cache's arrays themselves (writable; the core reads and writes them in place), by name, with
        the axis of their positions: "k" and "v" (n_layers, n_kv_heads, ctx, head_dim), axis 2. Restoring saved
        rows into them (`backends.kv_state`) is how a prompt cache hands a prefix back to the core."""
        return dict(self._kv_arrays)

    def kernel_names(self) -> dict[str, str]:
        """Kernel implementations this core runs."""
        return kernel_names(self.isa)

    # ---- helpers ----

    def _ptr(self, ctype: str, a: np.ndarray) -> Any:
        return self._n.ffi.cast(ctype, a.ctypes.data)

    def _arena_args(self) -> tuple[Any, int, Any, int]:
        return (self._ptr("void *", self._arena), self.arena_size,
                self._ptr("const uint64_t *", self._offsets), len(self.buffers))

    def _fill_qmat(self, s: Any, m: Any, name: str, keep: list[np.ndarray], check_range: bool,
                   act_block: int | None = None, product: bool = True) -> None:
        q, scale, gs, ab = qmat_parts(m, name)
        want = self.act_block if act_block is None else act_block
        if product and ab is not None and ab != want:
            raise BackendError(f"{name}: quantized for act_block={ab}, this core runs act_block={want}")
        if check_range and q.size and int(q.min()) < -QMAX:
            raise BackendError(f"{name}: int8 weights must lie in [-127, 127] (found -128)")
        keep.extend((q, scale))
        s.q = self._ptr("const int8_t *", q)
        s.scale = self._ptr("const float *", scale)
        s.rows, s.cols = q.shape
        s.group_size = gs
        s.act_block = want

    def _qmat(self, m: Any, name: str, keep: list[np.ndarray], act_block: int | None = None,
              product: bool = True) -> Any:
        s = self._n.ffi.new("es_qmat *")
        # products need weights in [-127, 127] (the AVX2 kernels' sign trick cannot negate -128); a lookup does not
        self._fill_qmat(s[0], m, name, keep, check_range=product, act_block=act_block, product=product)
        return s

    def _x(self, x: Any, name: str = "x") -> np.ndarray:
        x = np.array(x, dtype=np.float32, order="C", copy=True)
        if x.ndim != 2 or x.shape[1] != self.cfg.dim or x.shape[0] < 1:
            raise BackendError(f"{name} must be (n_tokens, {self.cfg.dim}), got {x.shape}")
        return x

    # ---- kernels ----

    def quantize_rows(self, x: np.ndarray, act_block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Quantize each row of x (rows, cols) float32: q int8 (rows, cols), scales (rows, cols/act_block)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.size == 0:
            raise BackendError(f"x must be a non-empty 2-D array, got shape {x.shape}")
        ab = self.act_block if act_block is None else int(act_block)
        rows, cols = x.shape
        if ab < 0 or (ab and cols % ab):
            raise BackendError(f"act_block={ab} must be 0 or divide {cols}")
        q = np.empty((rows, cols), dtype=np.int8)
        s = np.empty((rows, cols // ab if ab else 1), dtype=np.float32)
        self._n.check(self._n.lib.es_quantize_rows(self._live(), self._ptr("const float *", x), rows, cols, ab,
                                                   self._ptr("int8_t *", q), self._ptr("float *", s)),
                      "es_quantize_rows")
        return q, s

    def matmul_q8(self, xq: np.ndarray, xs: np.ndarray, w: Any, act_block: int | None = None) -> np.ndarray:
        """y (T, rows) float32: the int8 product of quantized activations with a QMat."""
        keep: list[np.ndarray] = []
        s = self._qmat(w, "w", keep, act_block=act_block)
        rows, cols, ab = s.rows, s.cols, s.act_block
        if xq.ndim != 2:
            raise BackendError(f"xq must be (n_tokens, {cols}), got {xq.shape}")
        t = xq.shape[0]
        need(xq, np.int8, (t, cols), "xq")
        need(xs, np.float32, (t, cols // ab if ab else 1), "xs")
        y = np.empty((t, rows), dtype=np.float32)
        self._n.check(self._n.lib.es_matmul_q8(self._live(), self._ptr("const int8_t *", xq),
                                               self._ptr("const float *", xs), t, s, self._ptr("float *", y)),
                      "es_matmul_q8")
        return y

    # ---- graphs ----

    def prepare_layers(self, layers: Sequence[Any], check_range: bool = True) -> PreparedLayers:
        """Check a list of layer weights (QLayer-like objects or dicts) and lay them out once."""
        return PreparedLayers(self, layers, check_range)

    def embed(self, table: Any, ids: Any) -> np.ndarray:
        """x (T, dim) float32: rows `ids` of the int8 embedding table, dequantized."""
        ids = token_ids(ids, "ids")
        keep: list[np.ndarray] = []
        # the lookup reads no activations; pass the core's act_block so grouped tables validate as in es_run_model
        s = self._qmat(table, "embedding table", keep, product=False)
        if s.cols != self.cfg.dim:
            raise BackendError(f"embedding table has {s.cols} columns, the model dim is {self.cfg.dim}")
        out = np.empty((ids.size, s.cols), dtype=np.float32)
        self._n.check(self._n.lib.es_run_embed(self._live(), s, self._ptr("const int32_t *", ids), ids.size,
                                               self._ptr("float *", out)), "es_run_embed")
        return out

    def run_layers(self, layers: Sequence[Any] | PreparedLayers, layer0: int, x: Any, pos: int) -> np.ndarray:
        """Run layers layer0 .. layer0+len(layers)-1 on x (T, dim) at positions pos .. pos+T-1.

        Writes those positions of the KV cache and returns the new x (the
        input is not modified).
        """
        prep = layers if isinstance(layers, PreparedLayers) else self.prepare_layers(layers)
        x = self._x(x)
        ctx = self._live()
        for c0 in range(0, x.shape[0], self.max_tokens):
            xc = x[c0 : c0 + self.max_tokens]
            self._n.check(self._n.lib.es_run_layers(
                ctx, self._dims, prep._structs, int(layer0), prep.n_layers, self._kv, self._rope,
                self._ptr("float *", xc), xc.shape[0], int(pos) + c0, *self._arena_args()), "es_run_layers")
        return x

    def head(self, x: Any, out_norm: np.ndarray, head: Any) -> np.ndarray:
        """logits (T, vocab) float32 of x (T, dim): final rmsnorm, quantize, int8 product."""
        x = self._x(x)
        need(out_norm, np.float32, (self.cfg.dim,), "out_norm")
        keep: list[np.ndarray] = []
        s = self._qmat(head, "head", keep)
        out = np.empty((x.shape[0], s.rows), dtype=np.float32)
        for c0 in range(0, x.shape[0], self.max_tokens):
            xc, oc = x[c0 : c0 + self.max_tokens], out[c0 : c0 + self.max_tokens]
            self._n.check(self._n.lib.es_run_head(
                self._live(), self._dims, self._ptr("const float *", out_norm), s, self._ptr("const float *", xc),
                xc.shape[0], self._ptr("float *", oc), *self._arena_args()), "es_run_head")
        return out

    # ---- the whole model ----

    def load_weights(self, weights: Any, check_range: bool = True) -> None:
        """Keep a whole model (QWeights-like: tok_embd, layers, out_norm, head) for `forward`."""
        keep: list[np.ndarray] = []
        ffi = self._n.ffi
        layers = self.prepare_layers(weights.layers, check_range)
        if layers.n_layers != self.cfg.n_layers:
            raise BackendError(f"{layers.n_layers} layers given, the config has {self.cfg.n_layers}")
        out_norm = need(weights.out_norm, np.float32, (self.cfg.dim,), "out_norm")
        head = getattr(weights, "head", None)
        if head is None:
            head = weights.output if getattr(weights, "output", None) is not None else weights.tok_embd
        m = ffi.new("es_model_weights *")
        self._fill_qmat(m.embed, weights.tok_embd, "tok_embd", keep, check_range, product=False)
        self._fill_qmat(m.head, head, "head", keep, check_range)
        m.layers = layers._structs
        m.out_norm = self._ptr("const float *", out_norm)
        keep.append(out_norm)
        self._model = {
            "struct": m, "layers": layers, "keep": keep, "tok_embd": weights.tok_embd,
            "x": np.empty((self.max_tokens, self.cfg.dim), dtype=np.float32),
        }

    def forward(self, tokens: Any, pos: int, last_only: bool = False) -> np.ndarray:
        """Logits (T, vocab), or (1, vocab) for the last token when last_only (the Backend interface)."""
        if self._model is None:
            raise BackendError("call load_weights() before forward()")
        ids = token_ids(tokens, "tokens")
        t = ids.size
        vocab = self.cfg.vocab_size
        out = np.empty((1 if last_only else t, vocab), dtype=np.float32)
        mw, xw = self._model["struct"], self._model["x"]
        for c0 in range(0, t, self.max_tokens):
            chunk = ids[c0 : c0 + self.max_tokens]
            last_chunk = c0 + self.max_tokens >= t
            if last_only and not last_chunk:  # no logits needed: skip the head
                x = self.embed(self._model["tok_embd"], chunk)
                self.run_layers(self._model["layers"], 0, x, int(pos) + c0)
                continue
            dst = out if last_only else out[c0 : c0 + chunk.size]
            self._n.check(self._n.lib.es_run_model(
                self._live(), self._dims, mw, self._kv, self._rope, self._ptr("const int32_t *", chunk), chunk.size,
                int(pos) + c0, self._ptr("float *", xw), self._ptr("float *", dst), 0 if last_only else 1,
                *self._arena_args()), "es_run_model")
        return out
