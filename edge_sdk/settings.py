"""What one `load()` runs with: the caller's arguments checked once, where they enter, and resolved into a
record (`RunSettings`) that the backends and the generator take as given.

The arguments are checked here (`LoadArgs.check`) and nowhere below: a backend gets a thread count, a
context, a KV dtype and a prompt chunk that are already valid. On a board the values come from its memory
plan (`plan.budget.plan_device`, the same `edge-sdk plan --board` prints), the profile read once; without
one, from the defaults the planner states (`DEFAULT_CTX`, `DEFAULT_PREFILL_CHUNK`, `DEFAULT_KV_DTYPE`).

Example::

    args = LoadArgs.check(backend="native", threads=2, ctx=None, kv_dtype="auto", group_size=32)
    run = default_settings(cfg, args)          # RunSettings(backend='native', ctx=2048, kv_dtype='f16', ...)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgumentError, PlanError

MAX_THREADS = 256
"""The most threads any backend is given (the native core's limit, `ES_MAX_THREADS` in edge_sdk.h)."""

BACKENDS = ("auto", "native", "numpy", "float", "onnx", "tflite")
KV_CHOICES = ("auto", "f32", "f16")


def check_count(name: str, value: Any, limit: int | None = None) -> int | None:
    """An int >= 1 (at most `limit`), or None for the default; anything else is an InvalidArgumentError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidArgumentError(f"{name} must be an int >= 1 (or None for the default), got {value!r}")
    if limit is not None and value > limit:
        raise InvalidArgumentError(f"{name} must be at most {limit}, got {value}")
    return int(value)


def check_timeout(value: Any, name: str) -> float | None:
    """A number of seconds, finite and >= 0, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"{name} must be a finite number of seconds >= 0 (or None), got {value!r}")
    return float(value)


def check_token_ids(ids: Any) -> list[int]:
    """A caller's token ids as a list of ints; a float, a bool or a str is an error (the vocabulary range is
    the backend's to check, at every forward call)."""
    import operator

    if isinstance(ids, (str, bytes)):
        raise InvalidArgumentError(f"token ids must be a sequence of ints, got {type(ids).__name__}")
    try:
        out = [operator.index(t) for t in ids if not isinstance(t, bool) and type(t).__name__ != "bool_"]
    except TypeError as e:
        raise InvalidArgumentError(f"token ids must be ints: {e}") from None
    if len(out) != len(ids):
        raise InvalidArgumentError("token ids must be ints, not booleans")
    return out


@dataclass(frozen=True)
class LoadArgs:
    """The arguments of `load()` that shape the run, checked; `backend` resolved ("auto" -> native or numpy)."""

    backend: str
    threads: int | None
    ctx: int | None
    kv_dtype: str  # f32 or f16, "auto" resolved for the backend
    group_size: int
    board: str | None = None
    slots: int | None = None  # prompt-cache slots; None: the default (the board plan's, else DEFAULT_SLOTS)

    @classmethod
    def check(cls, backend: str = "auto", threads: Any = None, ctx: Any = None, kv_dtype: str = "auto",
              group_size: Any = 32, board: str | None = None, slots: Any = None) -> "LoadArgs":
        from .model.config import QuantConfig
        from .plan.budget import default_kv_dtype

        if backend not in BACKENDS:
            raise InvalidArgumentError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        threads = check_count("threads", threads, MAX_THREADS)
        ctx = check_count("ctx", ctx)
        if kv_dtype not in KV_CHOICES:
            raise InvalidArgumentError(f"kv_dtype must be one of {', '.join(KV_CHOICES)}, got {kv_dtype!r}")
        QuantConfig(group_size=group_size)  # raises InvalidArgumentError naming group_size
        if board is not None and not isinstance(board, str):
            raise InvalidArgumentError(f"board must be a board profile id (a string), got {board!r}")
        if slots is not None and (isinstance(slots, bool) or not isinstance(slots, numbers.Integral) or slots < 0):
            raise InvalidArgumentError(f"slots must be an int >= 0 (or None for the default), got {slots!r}")
        chosen = resolve_backend(backend)
        return cls(chosen, threads, ctx, default_kv_dtype(chosen, kv_dtype), int(group_size), board,
                   None if slots is None else int(slots))


def resolve_backend(backend: str) -> str:
    """ "auto": the native core when it is built for this CPU, else the numpy int8 path (said once, on stderr)."""
    if backend != "auto":
        return backend
    from .backends.native.library import available

    ok, why = available()
    if ok:
        return "native"
    _warn_once(f"edge_sdk: native core unavailable ({why}); using the numpy int8 backend, which is much slower")
    return "numpy"


_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    import sys

    if msg not in _warned:
        _warned.add(msg)
        print(msg, file=sys.stderr)


@dataclass(frozen=True)
class RunSettings:
    """What the backend and the generator run with; every field already valid."""

    backend: str
    ctx: int
    kv_dtype: str
    threads: int | None  # None: the backend's own default (native: one per physical core)
    prefill_chunk: int  # prompt tokens per forward call, for the generator and the native core's arena
    stream_layers: int = 0  # > 0: the plan streams the weights from the package, this many layers per graph
    providers: tuple[str, ...] | None = None  # ONNX Runtime providers in order of preference (from the board)
    board: str | None = None
    slots: int = 0  # prompt-cache slots, each with room for a whole context of KV rows


def default_settings(cfg: Any, args: LoadArgs) -> RunSettings:
    """Without a board: the caller's values, else min(the model's context, DEFAULT_CTX) and the planner's chunk."""
    from .plan.budget import DEFAULT_CTX, DEFAULT_PREFILL_CHUNK, DEFAULT_SLOTS

    ctx = args.ctx if args.ctx is not None else min(cfg.max_ctx, DEFAULT_CTX)
    if ctx > cfg.max_ctx:
        raise InvalidArgumentError(f"ctx must be in [1, {cfg.max_ctx}] for this model, got {ctx}")
    slots = DEFAULT_SLOTS if args.slots is None else args.slots
    return RunSettings(args.backend, ctx, args.kv_dtype, args.threads, min(DEFAULT_PREFILL_CHUNK, ctx), slots=slots)


def board_settings(path: Any, args: LoadArgs) -> RunSettings:
    """The model planned for `args.board` from its metadata alone; refused (PlanError) before anything loads
    when it does not fit, counting what loading adds (importing a model file, a reference backend's copies)."""
    from .export.describe import model_config
    from .export.package import is_package
    from .model.config import QuantConfig
    from .model.sizes import model_weight_bytes
    from .plan.boards import load_board
    from .plan.budget import REFERENCE_COPY_FACTOR, import_peak_factor, load_extra_bytes, plan_device

    cfg, qcfg = model_config(path)
    from_package = is_package(path)
    if not from_package:
        qcfg = QuantConfig(group_size=args.group_size)
    if args.ctx is not None and args.ctx > cfg.max_ctx:
        raise InvalidArgumentError(f"ctx must be in [1, {cfg.max_ctx}] for this model, got {args.ctx}")
    profile = load_board(args.board)
    plan_backend = args.backend if args.backend in ("native", "onnx", "tflite") else None
    dp = plan_device(cfg, qcfg, profile, ctx=args.ctx, kv_dtype=args.kv_dtype, backend=plan_backend,
                     threads=args.threads, slots=args.slots)
    if not dp.fits:
        raise PlanError(f"{cfg.name or path} does not fit {profile.id} at ctx {dp.ctx}: " + "; ".join(dp.reasons))
    extra = load_extra_bytes(cfg, qcfg, args.backend, from_package)
    if args.slots is None and dp.slots and dp.peak_bytes + extra > dp.budget_bytes:  # the default slots give way
        over = dp.peak_bytes + extra - dp.budget_bytes
        dp = plan_device(cfg, qcfg, profile, ctx=dp.ctx, kv_dtype=args.kv_dtype, backend=plan_backend,
                         threads=args.threads, slots=max(0, dp.slots - -(-over // dp.slot_bytes)))
    if dp.peak_bytes + extra > dp.budget_bytes:
        why = [] if from_package else [
            f"loading {path} imports and quantizes it in this process (about {import_peak_factor(args.backend):g}x "
            f"its {model_weight_bytes(cfg, qcfg) / 2**20:.0f} MiB of int8 weights at the peak); convert it once "
            "with `edge-sdk convert MODEL -o DIR` on a larger machine and load DIR"]
        if args.backend in REFERENCE_COPY_FACTOR:
            why.append(f"the {args.backend} backend holds float32 copies of the weights; the native core does not")
        raise PlanError(f"{cfg.name or path} does not fit {profile.id} at ctx {dp.ctx} with the {args.backend} "
                        f"backend: needs {(dp.peak_bytes + extra) / 2**20:.1f} MiB but {profile.id} leaves "
                        f"{dp.budget_bytes / 2**20:.1f} MiB; " + "; ".join(why))
    stream_layers = dp.split.layers_per_graph if dp.weights_mode == "streamed" else 0
    return RunSettings(args.backend, dp.ctx, args.kv_dtype, dp.threads, dp.prefill_chunk, stream_layers,
                       tuple(profile.onnxruntime_providers), profile.id, dp.slots)
