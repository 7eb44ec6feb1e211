"""`edge-sdk chat`: an interactive multi-turn chat on the terminal."""

from __future__ import annotations

import argparse
import sys

from ..errors import ContextOverflowError, EdgeSDKError
from .common import add_model_args, add_sampling_args, load_from_args, sampling_from_args
from .run import print_stats


def cmd(a: argparse.Namespace) -> int:
    messages: list[dict[str, str]] = []
    if a.system:
        messages.append({"role": "system", "content": a.system})
    with load_from_args(a) as model:
        print(f"[{model.name} on {model.backend.name}; empty line or /exit to quit, /reset to forget]", file=sys.stderr)
        while True:
            try:
                line = input("> ")
            except EOFError:
                break
            if line.strip() in ("", "/exit", "/quit"):
                break
            if line.strip() == "/reset":
                messages = messages[:1] if a.system else []
                continue
            messages.append({"role": "user", "content": line})
            first = 1 if a.system else 0  # the oldest turn after the system prompt
            reply: list[str] = []
            while True:
                try:
                    for piece in model.chat_stream(messages, **sampling_from_args(a)):
                        reply.append(piece)
                        sys.stdout.write(piece)
                        sys.stdout.flush()
                except KeyboardInterrupt:
                    print("\n[interrupted]", file=sys.stderr)
                except ContextOverflowError as e:
                    if len(messages) - first > 1:  # forget the oldest exchange and try again
                        del messages[first : first + 2]
                        print("[the conversation outgrew the context; the oldest turn was forgotten]", file=sys.stderr)
                        continue
                    print(f"[{e}]", file=sys.stderr)
                    messages.pop()
                    reply = []
                except EdgeSDKError as e:
                    print(f"[{e}]", file=sys.stderr)
                    messages.pop()
                    reply = []
                break
            if messages and messages[-1]["role"] == "user":
                sys.stdout.write("\n")
                messages.append({"role": "assistant", "content": "".join(reply)})
            if a.stats:
                print_stats(model.last_stats)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="interactive multi-turn chat")
    add_model_args(p)
    add_sampling_args(p)
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--stats", action="store_true")
    p.set_defaults(func=cmd)
