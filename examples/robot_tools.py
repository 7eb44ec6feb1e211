#!/usr/bin/env python3
"""Drive a robot through tool calls: one command line in, one function call out, always valid.

The robot's abilities are OpenAI-style function tools (`TOOLS`): ``move`` (forward or back, 1-500 cm), ``turn``
(left or right, 1-360 degrees), ``stop`` and ``say`` (a sentence of at most 60 characters). Each command line
becomes a chat turn; the model must answer with a call (``tool_choice="required"``), generated under the SDK's
constraint, so the call always names one of the tools and its arguments always validate against that tool's
parameters: the robot never gets a malformed or out-of-range order. The call is carried out by `Robot` (here it
prints; subclass it to drive motors) and its result goes back into the conversation as the tool's reply, so the
next command sees what happened. A call that could not be finished in time (``--seconds``) or within
``--max-tokens`` becomes ``stop``.

Usage::

    python examples/robot_tools.py                               # type commands; SmolLM2-135M-Instruct
    printf 'drive forward a bit\\nturn around\\n' | python examples/robot_tools.py -m model.gguf --backend numpy
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from edge_sdk.errors import EdgeSDKError

TOOLS = [
    {"type": "function", "function": {
        "name": "move", "description": "Drive straight forward or back by a distance in centimetres.",
        "parameters": {"type": "object", "properties": {
            "direction": {"enum": ["forward", "back"]},
            "cm": {"type": "integer", "minimum": 1, "maximum": 500}},
            "required": ["direction", "cm"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "turn", "description": "Turn on the spot, left or right, by an angle in degrees.",
        "parameters": {"type": "object", "properties": {
            "direction": {"enum": ["left", "right"]},
            "degrees": {"type": "integer", "minimum": 1, "maximum": 360}},
            "required": ["direction", "degrees"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "stop", "description": "Stop at once.",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "say", "description": "Say a short sentence out loud.",
        "parameters": {"type": "object", "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 60}},
                       "required": ["text"], "additionalProperties": False}}},
]
SYSTEM_PROMPT = "You control a small wheeled robot. For every command, call exactly one of the robot's functions."


class Robot:
    """Carries out calls; this one prints them. Override the methods to drive motors and a speaker."""

    def __init__(self, out: Any = None) -> None:
        self.out = out if out is not None else sys.stdout

    def call(self, name: str, args: dict[str, Any], note: str = "") -> str:
        """Run one call and return its result (the tool's reply in the conversation)."""
        result = getattr(self, name)(**args)
        print(f"call: {name} {json.dumps(args, separators=(',', ':'))}" + (f"  (fallback: {note})" if note else ""),
              file=self.out, flush=True)
        return result

    def move(self, direction: str, cm: int) -> str:
        return f"moved {direction} {cm} cm"

    def turn(self, direction: str, degrees: int) -> str:
        return f"turned {direction} {degrees} degrees"

    def stop(self) -> str:
        return "stopped"

    def say(self, text: str) -> str:
        return f"said: {text}"


def decide(model: Any, history: list[dict[str, Any]], command: str, max_tokens: int,
           timeout: float | None) -> tuple[str, dict[str, Any], str, dict[str, Any] | None]:
    """(function name, arguments, fallback reason or "", the assistant message) for one command."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, *history, {"role": "user", "content": command}]
    reply = model.chat(messages, tools=TOOLS, tool_choice="required", max_tokens=max_tokens, temperature=0.0,
                       timeout=timeout)
    if not reply.get("tool_calls"):  # cut short: the call was not finished
        why = model.last_stats.get("stop_reason")
        return "stop", {}, (f"no complete call within {timeout:g} s" if why == "timeout"
                            else f"the call did not end within {max_tokens} tokens"), None
    call = reply["tool_calls"][0]["function"]
    return call["name"], json.loads(call["arguments"]), "", reply


def run(model: Any, robot: Robot, lines: Sequence[str] | Any, max_tokens: int, timeout: float | None,
        history_turns: int) -> int:
    """Handle command lines until they end; returns the number of calls carried out."""
    history: list[dict[str, Any]] = []
    n = 0
    for line in lines:
        command = line.strip()
        if not command:
            continue
        print(f"command: {command}", file=robot.out, flush=True)
        try:
            name, args, note, reply = decide(model, history, command, max_tokens, timeout)
        except EdgeSDKError as e:
            name, args, note, reply = "stop", {}, f"generation failed: {e}", None
            history = []  # start afresh (the conversation may no longer fit the context)
        result = robot.call(name, args, note)
        if reply is not None:
            call_id = reply["tool_calls"][0]["id"]
            history += [{"role": "user", "content": command}, reply,
                        {"role": "tool", "tool_call_id": call_id, "content": result}]
            history = history[-3 * history_turns:] if history_turns else []
        n += 1
    return n


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Drive a robot through tool calls, one command line at a time.")
    p.add_argument("-m", "--model", default=None, help="registered name (default smollm2-135m), .gguf, HF dir or package")
    p.add_argument("--backend", default="auto", choices=("auto", "native", "numpy", "float", "onnx", "tflite"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--ctx", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=64, help="longest call in tokens")
    p.add_argument("--seconds", type=float, default=20.0, help="time limit per command")
    p.add_argument("--history-turns", type=int, default=2, help="earlier commands (with their calls) kept")
    a = p.parse_args(argv)
    if a.max_tokens < 1 or a.seconds < 0 or a.history_turns < 0:
        p.error("--max-tokens must be >= 1, --seconds and --history-turns >= 0")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    import edge_sdk

    try:
        model = edge_sdk.load(a.model, backend=a.backend, threads=a.threads, ctx=a.ctx)
    except (EdgeSDKError, OSError) as e:
        print(f"robot_tools: cannot load the model: {e}", file=sys.stderr)
        return 2
    try:
        n = run(model, Robot(), sys.stdin, a.max_tokens, a.seconds, a.history_turns)
    except KeyboardInterrupt:
        Robot().call("stop", {}, "interrupted")
        return 0
    finally:
        model.close()
    print(f"robot_tools: {n} commands handled", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
