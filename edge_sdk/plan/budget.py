"""The device budget: does a model fit a board, how, and how fast will it go.

Peak memory is the sum of

* runtime: the Python interpreter with numpy and edge_sdk's API imported, plus
  the chosen backend's own import cost (measured; see the constants below);
* tokenizer: proportional to the vocabulary (measured);
* weights: all of them when they fit (`resident`); otherwise they stay in the
  mmapped file and one graph at a time is paged in (`streamed`): the resident
  need is then the largest graph (a layer range, or the head, which for tied
  embeddings is the whole embedding table) and decode re-reads every weight
  from storage per token;
* KV cache: `sizes.kv_cache_bytes` for the context and KV dtype;
* prompt cache: as many bytes again for each prompt-cache slot (`slots`), each
  planned with room for a whole context (`generate/prompt_cache.py`);
* activations: the arena planned (greedy by size) over the native core's
  scratch buffers, the larger of the prefill-chunk and the decode plans;
* I/O buffers outside the arena: residual stream and one row of logits;
* the RoPE table: cos and sin for every position of the context;
* for backends whose runtime repacks the weights, that extra copy.

The peak is for a full context: a backend that maps its KV cache lazily holds
less until the context fills.

Example::

    board = load_board("raspberry-pi-zero-2w")
    p = plan_device(cfg, QuantConfig(), board, ctx=2048, kv_dtype="f16")
    p.fits, p.peak_bytes, p.max_ctx, p.decode_tok_s_est
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .boards import BoardProfile
from ..model.config import ModelConfig, QuantConfig
from ..errors import PlanError
from ..graphs.split import SplitPolicy, split_layers
from ..model.sizes import embed_weight_bytes, head_weight_bytes, kv_cache_bytes, layer_weight_bytes, model_weight_bytes, qmat_bytes
from .arena import DEFAULT_ALIGNMENT, ArenaPlan, ArenaReport, lower_bound, plan, plan_naive
from .estimates import decode_tok_s, prefill_tok_s
from .records import Buffer
from .trace import io_bytes, layer_trace, rope_bytes
from .verify import verify

MiB = 1 << 20

RUNTIME_BASE_BYTES = 27_600 * 1024
"""Peak RSS of `python -c "import edge_sdk, numpy"` (CPython 3.11, numpy 2.4,
x86-64): 27.5-27.7 MiB over three runs. The interpreter alone is 13.2 MiB."""

SDK_API_IMPORT_BYTES = 8_520 * 1024
"""What `import edge_sdk.api` (tokenizers, the chat template engine, the generation
loop) adds on top: 36.0 MiB peak RSS over three runs, 8.3-8.5 MiB more than the base."""

BACKEND_RUNTIME_BYTES: Mapping[str, int] = {
    "native": 7_600 * 1024,  # the native backend's modules, cffi and the core's shared library: +7.4 MiB measured
    "onnx": 29_000 * 1024,  # `import onnxruntime, onnx` (onnx merges the graphs) on top of numpy: +28.3 MiB measured
    "tflite": 10_200 * 1024,  # `from ai_edge_litert import interpreter`: +10.1-10.3 MiB measured
}
"""Import cost of each backend's runtime (RSS over Python + numpy), measured on x86-64.
Sessions and interpreters allocate more once a model is loaded; that is not included."""

TOKENIZER_BYTES_PER_VOCAB_ENTRY = 1032
"""Loading SmolLM2's tokenizer from a converted package (`Tokenizer.from_json`, the
path a device takes; 49152 entries, 48900 merges) raised RSS by 50.7 MB in three
runs: about 1032 bytes per vocabulary entry. Building it from GGUF metadata
(`importers.gguf_vocab.tokenizer_from_gguf`) costs about half as much (25.0 MB)."""

WEIGHT_COPY_FACTOR: Mapping[str, float] = {"onnx": 1.5, "tflite": 1.15}
"""Extra resident weight bytes, as a fraction of the int8 weights, that a backend's
runtime holds at its peak. Measured on SmolLM2-135M (144 MiB of int8 weights), above
the opened package (which, for these backends, holds no weights: `load_package(weights="file")`):
- onnx: ONNX Runtime folds the int8 -> uint8 weight conversion and packs its own copy
  of every weight while it builds its session (one session for the whole model). The
  peak of `load(backend="onnx")` and 8 generated tokens was 453 MiB at ctx 64, 193 MiB
  above everything else the plan counts: 1.34x the weights (plan 477 MiB). It then
  settles at 1.26x (see `edge_sdk/backends/onnx_backend.py`), 1.47x since the mappings
  it keeps of weights.bin are detached from the file (`backends/file_pages.py`: 272 ->
  303 MiB after loading; the peak, 463 -> 466 MiB at ctx 512 in `python -m edge_sdk.bench.plan`,
  is the same).
- tflite: the .tflite files' own copy of the weights plus XNNPACK's packed copy. LiteRT
  runs the files' bytes read into memory at load (it used to map the files, and died of
  SIGBUS when one was truncated), all of them resident (162 MiB for 144 MiB of weights):
  `python -m edge_sdk.bench.plan --backend tflite --kv f32 --ctx 512 --tokens 64` peaked at 413 MiB,
  296 MiB above everything else the plan counts, 2.05x the weights (385 MiB, 1.94x,
  with the files mapped); plan 428 MiB."""

IMPORT_PEAK_FACTOR: Mapping[str, float] = {"default": 5.5, "tflite": 8.2}
"""Extra peak bytes, as a fraction of the int8 weights, of loading a .gguf file or a
Hugging Face directory instead of its converted package: the model is imported to
float32 and quantized in the process, and both are held at once. Measured on
SmolLM2-135M (144 MiB of int8 weights), native core, 8 tokens generated: peak RSS
1022 MiB from its .gguf file, 232 MiB from its package (+790 MiB, 5.5x). The tflite
backend also writes its .tflite graphs in the process first: 1591 MiB, 8.2x above
its plan from the package."""


def import_peak_factor(backend: str) -> float:
    return IMPORT_PEAK_FACTOR.get(backend, IMPORT_PEAK_FACTOR["default"])

REFERENCE_COPY_FACTOR: Mapping[str, float] = {"numpy": 3.5, "float": 4.8}
"""Extra peak bytes, as a fraction of the int8 weights, of the reference backends over
the native core, measured as above: "numpy" keeps a float32 copy of every int8 matrix
for its BLAS products (737 MiB from the package, +505 MiB); "float" holds the float32
model imported from its file (929 MiB, +697 MiB)."""


def load_extra_bytes(cfg: ModelConfig, q: QuantConfig, backend: str, from_package: bool) -> int:
    """Peak bytes that loading adds to a native-core plan: importing a model file, or a reference backend's copies."""
    factor = max(0.0 if from_package else import_peak_factor(backend), REFERENCE_COPY_FACTOR.get(backend, 0.0))
    return int(model_weight_bytes(cfg, q) * factor)


STREAMING_BACKENDS = ("native",)
"""Backends that can read the weights one graph at a time (`backends/native_stream.py`); the others load the whole
model."""

DEFAULT_PREFILL_CHUNK = 64
"""Prompt tokens per native-core call (`NativeBackend(prefill_chunk=64)`; longer prompts
run in chunks): sizes the prefill arena and I/O buffers and sets the prefill estimate."""

KV_DTYPES: Mapping[str, tuple[str, ...]] = {"native": ("f32", "f16"), "onnx": ("f32",), "tflite": ("f32",)}
"""KV cache dtypes each backend stores. Other dtypes are still planned (what the cache
would need) but the plan does not fit, with the reason."""

DEFAULT_KV_DTYPE: Mapping[str, str] = {"native": "f16", "numpy": "f16", "float": "f32", "onnx": "f32", "tflite": "f32"}
"""The KV cache dtype when none is asked for (`kv_dtype="auto"`), the same for `load()` and `plan`:
f16 where the backend stores it (half the bytes of f32; the numpy int8 reference mirrors the native
core), f32 for the float oracle and the runtimes that keep f32 only."""

DEFAULT_SLOTS = 2
"""Prompt-cache slots when no board is given (`load(slots=None)`): the conversation in progress and one more
(a fixed system prompt kept while another conversation runs, or two clients taking turns). Each slot can
hold a whole context of KV rows (at ctx 2048, 45 MiB for SmolLM2-135M with f16 values) but takes memory
only for the rows saved in it; a save copies only the rows the slot does not hold yet."""

MAX_BOARD_SLOTS = 4
"""On a board, the default slots are as many as the plan's memory left holds (each a whole context of KV
rows), at most this many: enough for a few clients of a server taking turns, without taking every byte."""

DEFAULT_CTX = 2048
"""Context when no board is given: min(the model's, 2048). On a board the default is the largest
context that keeps every weight resident (`plan_device(ctx=None)`), capped by the model's."""


def default_kv_dtype(backend: str, kv_dtype: str | None = "auto") -> str:
    """`kv_dtype`, or the backend's default for "auto"/None."""
    return DEFAULT_KV_DTYPE.get(backend, "f32") if kv_dtype in (None, "auto") else kv_dtype

DEFAULT_DECODE_POSITION = 256
"""Position at which decode speed is estimated (KV cache read grows with it)."""


@dataclass(frozen=True)
class DevicePlan:
    """Everything `plan_device` decided and estimated. `breakdown` sums to `peak_bytes`."""

    board_id: str
    model_name: str
    ctx: int
    kv_dtype: str
    backend: str
    threads: int
    prefill_chunk: int
    fits: bool
    peak_bytes: int
    budget_bytes: int
    breakdown: Mapping[str, int]
    max_ctx: int  # largest context that fits, streaming weights if need be
    max_ctx_resident: int  # largest context that fits with every weight resident
    weights_mode: str  # "resident" or "streamed"
    split: SplitPolicy
    layer_ranges: tuple[tuple[int, int], ...]
    arena: ArenaReport  # arena actually reserved (larger of prefill and decode) vs naive vs lower bound
    prefill_buffers: tuple[Buffer, ...] = field(repr=False)
    prefill_arena: ArenaPlan = field(repr=False)
    decode_buffers: tuple[Buffer, ...] = field(repr=False)
    decode_arena: ArenaPlan = field(repr=False)
    decode_tok_s_est: float = 0.0
    prefill_tok_s_est: float = 0.0
    estimate_details: Mapping[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    slots: int = 0  # prompt-cache slots planned (breakdown["prompt_cache"] holds their bytes)
    slot_bytes: int = 0  # bytes of one slot: a whole context of KV rows

    def to_dict(self) -> dict[str, Any]:
        """Plain values for `--json`."""
        return {
            "board": self.board_id,
            "model": self.model_name,
            "ctx": self.ctx,
            "kv_dtype": self.kv_dtype,
            "backend": self.backend,
            "threads": self.threads,
            "prefill_chunk": self.prefill_chunk,
            "fits": self.fits,
            "peak_bytes": self.peak_bytes,
            "budget_bytes": self.budget_bytes,
            "breakdown": dict(self.breakdown),
            "max_ctx": self.max_ctx,
            "max_ctx_resident": self.max_ctx_resident,
            "weights_mode": self.weights_mode,
            "split": {"policy": self.split.describe(), "layer_ranges": [list(r) for r in self.layer_ranges]},
            "arena": {
                "arena_bytes": self.arena.arena_bytes,
                "naive_bytes": self.arena.naive_bytes,
                "lower_bound_bytes": self.arena.lower_bound_bytes,
                "prefill_offsets": dict(self.prefill_arena.offsets),
                "decode_offsets": dict(self.decode_arena.offsets),
            },
            "decode_tok_s_est": round(self.decode_tok_s_est, 2),
            "prefill_tok_s_est": round(self.prefill_tok_s_est, 2),
            "estimate_details": dict(self.estimate_details),
            "reasons": list(self.reasons),
            "slots": self.slots,
            "slot_bytes": self.slot_bytes,
        }


def size_text(nbytes: int) -> str:
    """Bytes in MiB with one decimal, or in KiB below a tenth of a MiB."""
    return f"{nbytes / MiB:.1f} MiB" if nbytes >= MiB // 10 else f"{nbytes / 1024:.1f} KiB"


# ---------------------------------------------------------------------------
# Pieces of the budget
# ---------------------------------------------------------------------------


def tokenizer_bytes(cfg: ModelConfig) -> int:
    return cfg.vocab_size * TOKENIZER_BYTES_PER_VOCAB_ENTRY


def runtime_bytes(backend: str) -> int:
    return RUNTIME_BASE_BYTES + SDK_API_IMPORT_BYTES + BACKEND_RUNTIME_BYTES[backend]


def head_graph_bytes(cfg: ModelConfig, q: QuantConfig) -> int:
    """Weights the head graph touches: its norm plus the output matrix (the embedding table when tied)."""
    return head_weight_bytes(cfg, q) + (embed_weight_bytes(cfg, q) if cfg.tied_embeddings else 0)


def embed_row_bytes(cfg: ModelConfig, q: QuantConfig) -> int:
    return qmat_bytes(1, cfg.dim, q)


@dataclass(frozen=True)
class _Arenas:
    prefill_buffers: list[Buffer]
    prefill: ArenaPlan
    decode_buffers: list[Buffer]
    decode: ArenaPlan
    report: ArenaReport


def _plan_arenas(cfg: ModelConfig, q: QuantConfig, ctx: int, threads: int, chunk: int) -> _Arenas:
    pre = layer_trace(cfg, q, chunk, ctx, threads)
    dec = layer_trace(cfg, q, 1, ctx, threads)
    pre_plan, dec_plan = plan(pre, DEFAULT_ALIGNMENT), plan(dec, DEFAULT_ALIGNMENT)
    verify(pre, pre_plan, DEFAULT_ALIGNMENT)
    verify(dec, dec_plan, DEFAULT_ALIGNMENT)
    big, big_plan = (pre, pre_plan) if pre_plan.arena_bytes >= dec_plan.arena_bytes else (dec, dec_plan)
    rep = ArenaReport(big_plan.arena_bytes, plan_naive(big, DEFAULT_ALIGNMENT).arena_bytes, lower_bound(big))
    return _Arenas(pre, pre_plan, dec, dec_plan, rep)


@dataclass(frozen=True)
class _Fit:
    peak: int
    breakdown: dict[str, int]
    mode: str
    split: SplitPolicy
    ranges: list[tuple[int, int]]
    arenas: _Arenas
    problem: str  # "" when the weights can be arranged at all


def _fit(cfg: ModelConfig, q: QuantConfig, board: BoardProfile, ctx: int, kv_dtype: str, backend: str,
         threads: int, chunk: int, allow_stream: bool = True, slots: int = 0) -> _Fit:
    """Peak memory at `ctx`, streaming the weights if they do not fit resident (and streaming is allowed)."""
    arenas = _plan_arenas(cfg, q, ctx, threads, chunk)
    fixed = {
        "runtime": runtime_bytes(backend),
        "tokenizer": tokenizer_bytes(cfg),
        "kv_cache": kv_cache_bytes(cfg, ctx, kv_dtype),
        **({"prompt_cache": slots * kv_cache_bytes(cfg, ctx, kv_dtype)} if slots else {}),
        "activations": arenas.report.arena_bytes,
        "io_buffers": io_bytes(cfg, chunk),
        "rope_table": rope_bytes(cfg, ctx),
    }
    all_weights = model_weight_bytes(cfg, q)
    if backend in WEIGHT_COPY_FACTOR:
        fixed["weight_copies"] = int(all_weights * WEIGHT_COPY_FACTOR[backend])
    rest = sum(fixed.values())
    room = board.sdk_budget_bytes - rest
    if all_weights <= room or backend not in STREAMING_BACKENDS or not allow_stream:
        split = SplitPolicy()
        return _Fit(rest + all_weights, {"weights": all_weights, **fixed}, "resident", split,
                    split_layers(cfg, q, split), arenas, "")
    # Streamed: as many layers per graph as fit next to everything else; the head graph must fit too.
    per_layer = layer_weight_bytes(cfg, q)
    head = head_graph_bytes(cfg, q)
    k = max(1, min(cfg.n_layers, (room - embed_row_bytes(cfg, q)) // per_layer)) if room > 0 else 1
    split = SplitPolicy(layers_per_graph=k)
    resident = max(k * per_layer, head) + embed_row_bytes(cfg, q)
    problem = ""
    if room < per_layer + embed_row_bytes(cfg, q):
        problem = f"not even one decoder layer ({per_layer / MiB:.1f} MiB) fits next to the rest"
    elif room < head + embed_row_bytes(cfg, q):
        problem = f"the head graph ({head / MiB:.1f} MiB of weights) does not fit next to the rest"
    return _Fit(rest + resident, {"weights": resident, **fixed}, "streamed", split,
                split_layers(cfg, q, split), arenas, problem)


def _max_ctx(cfg: ModelConfig, q: QuantConfig, board: BoardProfile, kv_dtype: str, backend: str,
             threads: int, chunk: int, allow_stream: bool, slots: int = 0) -> int:
    """Largest context (<= cfg.max_ctx) whose peak fits the budget; 0 if none. Peak grows with ctx."""

    def ok(c: int) -> bool:
        f = _fit(cfg, q, board, c, kv_dtype, backend, threads, min(chunk, c), allow_stream, slots)
        return not f.problem and f.peak <= board.sdk_budget_bytes

    if kv_dtype not in KV_DTYPES[backend] or not ok(1):  # a cache this backend cannot store fits at no ctx
        return 0
    lo, hi = 1, cfg.max_ctx
    if ok(hi):
        return hi
    while hi - lo > 1:  # ok(lo) and not ok(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


# ---------------------------------------------------------------------------
# Choices from the board's fields
# ---------------------------------------------------------------------------


def choose_backend(board: BoardProfile, backend: str | None) -> str:
    if backend is None:
        return board.backends[0]
    if backend not in BACKEND_RUNTIME_BYTES:
        raise PlanError(f"unknown backend {backend!r}; choose one of {sorted(BACKEND_RUNTIME_BYTES)}")
    if backend not in board.backends:
        raise PlanError(f"backend {backend!r} does not run on {board.id}; it supports {', '.join(board.backends)}")
    return backend


def choose_threads(board: BoardProfile, threads: int | None) -> int:
    """Default: one thread per core of the fastest cluster (little cores slow a big.LITTLE barrier down)."""
    if threads is None:
        return board.big_cluster.count
    if not 1 <= threads <= board.total_cores:
        raise PlanError(f"threads must be between 1 and the board's {board.total_cores} cores, got {threads}")
    return threads


# ---------------------------------------------------------------------------
# The device plan
# ---------------------------------------------------------------------------


def _reasons(fit: _Fit, board: BoardProfile, ctx: int, kv_dtype: str, max_ctx: int, backend: str) -> list[str]:
    over = fit.peak - board.sdk_budget_bytes
    out = []
    if over > 0 and backend not in STREAMING_BACKENDS:
        out.append(f"backend {backend} loads every weight at once; {', '.join(STREAMING_BACKENDS)} can stream them from storage")
    if over > 0:
        parts = ", ".join(f"{k} {v / MiB:.1f} MiB" for k, v in sorted(fit.breakdown.items(), key=lambda kv: -kv[1]))
        out.append(
            f"needs {fit.peak / MiB:.1f} MiB but {board.id} leaves {board.sdk_budget_bytes / MiB:.1f} MiB to the SDK: "
            f"over by {over / MiB:.1f} MiB ({parts})"
        )
        out.append(
            f"the KV cache alone is {fit.breakdown['kv_cache'] / MiB:.1f} MiB at ctx {ctx} with {kv_dtype} values; "
            + (f"the largest context that fits with {kv_dtype} is {max_ctx}" if max_ctx else f"no context fits with {kv_dtype}")
        )
    if fit.problem:
        out.append(f"weights cannot be arranged: {fit.problem}")
    if fit.mode == "streamed" and not fit.problem:
        out.append(
            f"weights ({fit.breakdown['weights'] / MiB:.1f} MiB resident of the model) are streamed from storage one "
            f"graph at a time ({fit.split.describe()}); decode re-reads them from storage every token"
        )
    return out


def plan_device(
    cfg: ModelConfig,
    q: QuantConfig,
    board: BoardProfile,
    ctx: int | None = None,
    kv_dtype: str | None = None,
    backend: str | None = None,
    threads: int | None = None,
    prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
    decode_position: int = DEFAULT_DECODE_POSITION,
    slots: int | None = 0,
) -> DevicePlan:
    """Plan memory and estimate speed for `cfg` on `board`.

    `ctx=None` plans for the largest context that keeps every weight resident
    (`max_ctx_resident`), or, when none does, the largest that fits streaming them
    (`max_ctx`). `kv_dtype=None` (or "auto") takes the backend's `DEFAULT_KV_DTYPE`.
    Backend and threads default to the board's first backend and its fastest
    cluster. `load(..., board=)` uses the same defaults, so a plan describes the run.
    `slots`: prompt-cache slots to plan room for, each a whole context of KV rows (the context
    chosen when `ctx=None` leaves room for them); None: as many as the memory left holds, at
    most `MAX_BOARD_SLOTS` (what `load(board=..., slots=None)` takes).

    Example::

        p = plan_device(cfg, QuantConfig(), load_board("raspberry-pi-zero-2w"), ctx=8192, kv_dtype="f32")
        p.fits, p.reasons[0]   # (False, 'needs ... MiB but raspberry-pi-zero-2w leaves 320.0 MiB ...')
    """
    backend = choose_backend(board, backend)
    kv_dtype = default_kv_dtype(backend, kv_dtype)
    if kv_dtype not in ("f32", "f16", "int8"):
        raise PlanError(f"kv dtype must be f32, f16 or int8, got {kv_dtype!r}")
    if prefill_chunk < 1:
        raise PlanError(f"prefill_chunk must be positive, got {prefill_chunk}")
    if slots is not None and (isinstance(slots, bool) or not isinstance(slots, int) or slots < 0):
        raise PlanError(f"slots must be an int >= 0 (or None: as many as fit), got {slots!r}")
    threads = choose_threads(board, threads)
    asked = slots or 0
    max_ctx = _max_ctx(cfg, q, board, kv_dtype, backend, threads, prefill_chunk, allow_stream=True, slots=asked)
    max_ctx_resident = _max_ctx(cfg, q, board, kv_dtype, backend, threads, prefill_chunk, allow_stream=False,
                                slots=asked)
    if ctx is None:
        ctx = max_ctx_resident or max_ctx or min(cfg.max_ctx, prefill_chunk)
    if not 1 <= ctx <= cfg.max_ctx:
        raise PlanError(f"ctx must be between 1 and the model's maximum context {cfg.max_ctx}, got {ctx}")
    chunk = min(prefill_chunk, ctx)
    slot_bytes = kv_cache_bytes(cfg, ctx, kv_dtype)
    bare = _fit(cfg, q, board, ctx, kv_dtype, backend, threads, chunk)
    room = 0 if bare.problem else max(0, board.sdk_budget_bytes - bare.peak) // slot_bytes  # slots that fit
    planned = min(MAX_BOARD_SLOTS, room) if slots is None else slots
    fit = _fit(cfg, q, board, ctx, kv_dtype, backend, threads, chunk, slots=planned) if planned else bare
    kv_ok = kv_dtype in KV_DTYPES[backend]
    fits = not fit.problem and fit.peak <= board.sdk_budget_bytes and kv_ok
    slot_reason = []
    if planned > room:
        slot_reason = [f"{planned} prompt-cache slot(s) need {size_text(planned * slot_bytes)} "
                       f"({size_text(slot_bytes)} each: a whole context of {kv_dtype} KV rows at ctx {ctx}); "
                       f"{room} fit at this context" + ("" if room else ": load with slots=0 or a smaller ctx")]
    position = min(decode_position, ctx)
    dec, dec_details = decode_tok_s(cfg, q, board, threads, kv_dtype, position, fit.mode == "streamed")
    pre, pre_details = prefill_tok_s(cfg, board, threads, chunk)
    return DevicePlan(
        board_id=board.id,
        model_name=cfg.name,
        ctx=ctx,
        kv_dtype=kv_dtype,
        backend=backend,
        threads=threads,
        prefill_chunk=chunk,
        fits=fits,
        peak_bytes=fit.peak,
        budget_bytes=board.sdk_budget_bytes,
        breakdown=fit.breakdown,
        max_ctx=max_ctx,
        max_ctx_resident=max_ctx_resident,
        weights_mode=fit.mode,
        split=fit.split,
        layer_ranges=tuple(fit.ranges),
        arena=fit.arenas.report,
        prefill_buffers=tuple(fit.arenas.prefill_buffers),
        prefill_arena=fit.arenas.prefill,
        decode_buffers=tuple(fit.arenas.decode_buffers),
        decode_arena=fit.arenas.decode,
        decode_tok_s_est=dec,
        prefill_tok_s_est=pre,
        estimate_details={"decode": dec_details, "prefill": pre_details},
        reasons=tuple(([] if kv_ok else [
            f"the {backend} backend keeps the KV cache in {' or '.join(KV_DTYPES[backend])}, not {kv_dtype}; "
            f"the numbers are for {kv_dtype} values"]) + slot_reason
            + _reasons(fit, board, ctx, kv_dtype, max_ctx, backend)),
        slots=planned,
        slot_bytes=slot_bytes,
    )
