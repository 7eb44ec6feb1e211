"""`edge-sdk run`: stream a completion to standard output."""

from __future__ import annotations

import argparse
import sys

from ..bench import peak_rss_bytes
from .common import add_model_args, add_sampling_args, load_from_args, sampling_from_args


def print_stats(stats: dict) -> None:
    print(
        f"\n[prompt {stats['prompt_tokens']} tokens at {stats['prefill_tok_s']:.1f} tok/s, "
        f"generated {stats['generated_tokens']} at {stats['decode_tok_s']:.1f} tok/s, "
        f"stop: {stats['stop_reason']}, peak RSS {peak_rss_bytes() / 2**20:.1f} MiB]",
        file=sys.stderr,
    )


def cmd(a: argparse.Namespace) -> int:
    prompt = a.prompt if a.prompt != "-" else sys.stdin.read()
    with load_from_args(a) as model:
        if a.stats:
            print(f"[{model.name}: backend {model.backend.name}, ctx {model.backend.ctx}]", file=sys.stderr)
        stream = model.chat_stream([{"role": "user", "content": prompt}], **sampling_from_args(a)) if a.chat \
            else model.stream(prompt, **sampling_from_args(a))
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        if a.stats:
            print_stats(model.last_stats)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="generate a completion of PROMPT (streamed to stdout)")
    add_model_args(p)
    add_sampling_args(p)
    p.add_argument("--chat", action="store_true", help="wrap PROMPT as a user turn in the model's chat template")
    p.add_argument("--stats", action="store_true", help="print tokens/s and peak RSS to stderr")
    p.add_argument("prompt", help="the prompt text, or - to read it from stdin")
    p.set_defaults(func=cmd)
