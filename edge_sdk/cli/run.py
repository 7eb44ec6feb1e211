"""`edge-sdk run`: stream a completion to standard output.

An instruct model (one whose file carries a chat template) answers PROMPT as a user turn in that
template, as other tools' `run` does; `--raw` continues PROMPT as plain text instead, and `--chat`
uses the template (ChatML when the model has none) on any model.
"""

from __future__ import annotations

import argparse
import sys

from .common import (add_constraint_args, add_model_args, add_sampling_args, constraint_from_args, load_from_args,
                     report_incomplete, sampling_from_args)


def print_stats(stats: dict) -> None:
    from ..plan.host import peak_rss_bytes

    print(
        f"\n[prompt {stats['prompt_tokens']} tokens at {stats['prefill_tok_s']:.1f} tok/s, "
        f"generated {stats['generated_tokens']} at {stats['decode_tok_s']:.1f} tok/s, "
        f"stop: {stats['stop_reason']}, peak RSS {peak_rss_bytes() / 2**20:.1f} MiB]",
        file=sys.stderr,
    )


def uses_chat(a: argparse.Namespace, model) -> bool:
    """Whether PROMPT goes through the chat template: --chat / --raw, else whether the model has a template."""
    if a.chat or a.raw:
        return bool(a.chat)
    return model.tokenizer.chat_template is not None


def cmd(a: argparse.Namespace) -> int:
    from ..errors import InvalidArgumentError

    prompt = a.prompt if a.prompt != "-" else sys.stdin.read()
    if not prompt:
        raise InvalidArgumentError("the prompt is empty; give some text (or - to read it from stdin)")
    constraint = constraint_from_args(a)
    with load_from_args(a) as model:
        chat = uses_chat(a, model)
        if a.stats:
            print(f"[{model.name}: backend {model.backend.name}, ctx {model.backend.ctx}, "
                  f"{'chat template' if chat else 'raw completion'}]", file=sys.stderr)
        if chat:
            messages = ([{"role": "system", "content": a.system}] if a.system else []) + [{"role": "user", "content": prompt}]
            stream = model.chat_stream(messages, **sampling_from_args(a), **constraint)
        else:
            stream = model.stream(prompt, **sampling_from_args(a), **constraint)
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        if a.stats:
            print_stats(model.last_stats)
        return report_incomplete(model.last_stats)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="answer PROMPT (instruct models) or continue it (--raw), streamed to stdout",
                       description=__doc__.split("\n\n", 1)[1].strip())
    add_model_args(p)
    add_sampling_args(p)
    add_constraint_args(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--chat", action="store_true",
                      help="send PROMPT as a user turn in the chat template (the default for models that have one)")
    mode.add_argument("--raw", action="store_true", help="continue PROMPT as plain text, without the chat template")
    p.add_argument("--system", default=None, help="system prompt (with the chat template)")
    p.add_argument("--stats", action="store_true", help="print tokens/s and peak RSS to stderr")
    p.add_argument("prompt", help="the prompt text, or - to read it from stdin")
    p.set_defaults(func=cmd)
