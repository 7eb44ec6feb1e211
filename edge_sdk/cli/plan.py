"""`edge-sdk plan`: will a model fit a board, how, and how fast.

Examples::

    edge-sdk plan -m smollm2-135m --board raspberry-pi-zero-2w --ctx 2048
    edge-sdk plan -m model.gguf --board jetson-nano-4gb --kv int8 --json
    edge-sdk plan --board raspberry-pi-5-4gb --svg plan.svg
    edge-sdk plan --board raspberry-pi-zero-2w --ctx 1024 --slots 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..plan.boards import load_board
from ..plan.host import detect_board
from ..errors import EdgeSDKError, PlanError
from ..plan.budget import DEFAULT_PREFILL_CHUNK, MAX_BOARD_SLOTS, DevicePlan, plan_device, size_text
from ..plan.picture import plan_svg, write_png

MiB = 1 << 20
DEFAULT_MODEL = "smollm2-135m"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plan", help="plan memory and estimate speed of a model on a board",
        description="Plan memory (weights, KV cache, activation arena) for a model on a board and estimate its speed. "
                    "Without --board the board is detected from /proc. Exit status 1 when the plan does not fit. "
                    "--png works only when matplotlib is installed; --svg always works.")
    p.add_argument("-m", "--model", default=DEFAULT_MODEL,
                   help=f"registered name, .gguf file, Hugging Face directory or converted package (default {DEFAULT_MODEL})")
    p.add_argument("--board", metavar="ID", help="board profile id (see `edge-sdk boards`); default: detect")
    p.add_argument("--ctx", type=int,
                   help="context length to plan for (default: the largest that keeps every weight resident, "
                        "capped by the model's; the same as `edge-sdk run --board`)")
    p.add_argument("--kv", choices=["auto", "f32", "f16", "int8"], default="auto",
                   help="KV cache dtype (default auto: f16 where the backend stores it, else f32, as `run` uses)")
    p.add_argument("--backend", choices=["native", "onnx", "tflite"], help="default: the board's first")
    p.add_argument("--threads", type=int, help="default: the cores of the board's fastest cluster")
    p.add_argument("--prefill-chunk", type=int, default=DEFAULT_PREFILL_CHUNK, help="prompt tokens per prefill call")
    p.add_argument("--slots", type=int, default=None,
                   help="prompt-cache slots to plan room for, each a whole context of KV rows (default: as many as "
                        f"the memory left holds, at most {MAX_BOARD_SLOTS}, as `load(board=...)` takes)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--svg", metavar="FILE", help="write the arena and budget picture as SVG")
    p.add_argument("--png", metavar="FILE", help="write the picture as PNG (only if matplotlib is installed)")
    p.set_defaults(func=run)


def model_config(model: str):
    """(ModelConfig, QuantConfig) of `model` without loading weights."""
    try:
        from ..export.describe import model_config as resolve
    except ImportError as e:
        raise EdgeSDKError(f"cannot read model configs: {e}") from e
    return resolve(model)


def _text(p: DevicePlan, reason: str | None) -> str:
    lines = [f"{p.model_name or 'model'} on {p.board_id}" + (f" (detected: {reason})" if reason else ""),
             f"  fits          {'yes' if p.fits else 'NO'}: peak {p.peak_bytes / MiB:.1f} MiB of {p.budget_bytes / MiB:.1f} MiB budget",
             f"  context       {p.ctx} (KV {p.kv_dtype}); largest that fits: {p.max_ctx}, with weights resident: {p.max_ctx_resident}",
             f"  backend       {p.backend}, {p.threads} thread(s)",
             f"  weights       {p.weights_mode}; {p.split.describe()}: {len(p.layer_ranges)} layer graph(s)",
             f"  prompt cache  {p.slots} slot(s) of {size_text(p.slot_bytes)} (a whole context of KV rows each)"]
    for name, size in p.breakdown.items():
        lines.append(f"    {name:<12}{size / MiB:9.2f} MiB")
    lines.append(f"  arena         greedy {p.arena.arena_bytes} B, naive {p.arena.naive_bytes} B, "
                 f"lower bound {p.arena.lower_bound_bytes} B")
    lines.append(f"  estimates     decode {p.decode_tok_s_est:.1f} tok/s, prefill {p.prefill_tok_s_est:.1f} tok/s")
    lines += [f"  note          {r}" for r in p.reasons]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    cfg, qcfg = model_config(args.model)
    reason = None
    if args.board:
        board = load_board(args.board)
    else:
        board, reason = detect_board()
        print(f"edge-sdk: board {board.id}: {reason}", file=sys.stderr)
    p = plan_device(cfg, qcfg, board, ctx=args.ctx, kv_dtype=args.kv, backend=args.backend, threads=args.threads,
                    prefill_chunk=args.prefill_chunk, slots=args.slots)
    print(json.dumps(p.to_dict(), indent=2) if args.json else _text(p, reason))
    if args.svg:
        try:
            Path(args.svg).write_text(plan_svg(p))
        except OSError as e:
            raise PlanError(f"cannot write {args.svg}: {e.strerror or e}") from None
        print(f"edge-sdk: wrote {args.svg}", file=sys.stderr)
    if args.png:
        try:
            write_png(p, args.png)
        except OSError as e:
            raise PlanError(f"cannot write {args.png}: {e.strerror or e}") from None
        print(f"edge-sdk: wrote {args.png}", file=sys.stderr)
    return 0 if p.fits else 1
