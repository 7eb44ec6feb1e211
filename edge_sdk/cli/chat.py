"""`edge-sdk chat`: an interactive multi-turn chat on the terminal.

With `--tools FILE` (an OpenAI tools list) a reply may be a tool call: it is printed as
`[tool call] NAME ARGUMENTS-JSON`, and the next line typed is taken as that tool's result.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import ContextOverflowError, EdgeSDKError
from .common import add_model_args, add_sampling_args, load_from_args, read_json_file, sampling_from_args
from .run import print_stats


def cmd(a: argparse.Namespace) -> int:
    messages: list[dict] = []
    if a.system:
        messages.append({"role": "system", "content": a.system})
    tools = read_json_file(a.tools, "--tools") if a.tools else None
    pending_call: dict | None = None  # a tool call waiting for its result (the next line typed)
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
                pending_call = None
                continue
            if pending_call is not None:
                messages.append({"role": "tool", "tool_call_id": pending_call["id"], "content": line})
                pending_call = None
            else:
                messages.append({"role": "user", "content": line})
            if tools is not None:
                try:
                    reply_msg = model.chat(messages, tools=tools, tool_choice=a.tool_choice, **sampling_from_args(a))
                except KeyboardInterrupt:
                    print("\n[interrupted]", file=sys.stderr)
                    messages.pop()
                    continue
                messages.append(reply_msg)
                for call in reply_msg.get("tool_calls", []):
                    pending_call = call
                    sys.stdout.write(f"[tool call] {call['function']['name']} {call['function']['arguments']}\n")
                if reply_msg["content"] is not None:
                    sys.stdout.write(reply_msg["content"] + "\n")
                sys.stdout.flush()
                if a.stats:
                    print_stats(model.last_stats)
                continue
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
    p.add_argument("--tools", metavar="FILE", default=None,
                   help="a JSON file with OpenAI function tools: replies may call them (the next line is the result)")
    p.add_argument("--tool-choice", default=None, choices=("auto", "required", "none"),
                   help="with --tools: may (auto, the default), must (required) or must not (none) call a tool")
    p.add_argument("--stats", action="store_true")
    p.set_defaults(func=cmd)
