#!/usr/bin/env python3
"""Steer a robot with a language model: one command line in, one action out.

Commands arrive as text lines on a serial port (``--port``, ``--baud``) or on
stdin (``--stdin``), for example ``there is an obstacle ahead, the goal is to
the left``. Each one becomes a chat prompt asking for exactly one action from
a fixed set::

    FORWARD | BACK | LEFT | RIGHT | STOP      optionally followed by 1..999
                                              (cm for FORWARD/BACK, degrees
                                              for LEFT/RIGHT, seconds for STOP)

The robot never acts on garbage. The reply is short (``--max-tokens``, cut at
the first newline, ``--seconds`` per command) and `parse_action` accepts it
only when it *starts* with an action; anything else, a timeout, a reply cut
by the token limit right after its action, or an error becomes ``STOP`` with
the reason printed next to it. With ``--constrained``
the model cannot even produce garbage: the reply is generated under the
SDK's constraint `ACTION_REGEX`, so only valid actions can come out (see
`examples/robot_tools.py` for the same robot driven through tool calls).

Acting is `Actuator.act`: it prints the action and, in serial mode, writes it
back on the line (``FORWARD 20\\n``). Undecodable or non-printable lines are
skipped with a message on stderr; Ctrl-C sends a last ``STOP`` and exits.
Before it reads the first command the robot decides a made-up one (see
`warm_up`), so that the first real command is as quick as the others.

Usage::

    python examples/robot.py --stdin                       # type commands
    python examples/robot.py --port /dev/ttyUSB0 --baud 115200 --constrained
    python examples/robot.py --stdin -m model.gguf --backend numpy < commands.txt
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator, Sequence

from edge_sdk.errors import EdgeSDKError

log = logging.getLogger("robot")

# ---------------------------------------------------------------------------
# Actions and the strict parser
# ---------------------------------------------------------------------------

ACTIONS = ("FORWARD", "BACK", "LEFT", "RIGHT", "STOP")
MAX_ARG = 999  # largest accepted argument (cm, degrees or seconds)
MAX_LINE_BYTES = 512  # longer command lines are dropped, not truncated

# The reply must start with an action word (any case, optionally after
# "action:" or an opening quote/asterisk); a word that merely contains one
# ("BACKWARD", "STOPPED") does not count.
_ACTION_RE = re.compile(
    r"""^\s*(?:action\s*:\s*)?[`"'*]*(?P<word>FORWARD|BACK|LEFT|RIGHT|STOP)(?![A-Za-z0-9_])(?P<rest>.*)$""",
    re.IGNORECASE | re.DOTALL,
)
_ARG_RE = re.compile(r"[ \t]+(?P<arg>\d+)(?![A-Za-z0-9_.])")


@dataclass(frozen=True)
class Action:
    """One robot action; `arg` is None or 1..MAX_ARG.

    Example::

        str(Action("FORWARD", 20))   # 'FORWARD 20'
    """

    word: str
    arg: int | None = None

    def __str__(self) -> str:
        return self.word if self.arg is None else f"{self.word} {self.arg}"


STOP = Action("STOP")


def parse_action(reply: str) -> tuple[Action | None, str]:
    """The action a reply starts with, or (None, why not).

    Only the first line counts; the word may be in any case; a number right
    after it (separated by spaces) is its argument and must be a plain integer
    in 1..MAX_ARG. What follows the action is ignored ("LEFT, then FORWARD"
    is LEFT).

    Example::

        parse_action("forward 20")      # (Action('FORWARD', 20), '')
        parse_action("I see a wall")    # (None, "no valid action in the reply 'I see a wall'")
    """
    line = reply.split("\n", 1)[0]
    m = _ACTION_RE.match(line)
    if m is None:
        return None, f"no valid action in the reply {reply!r}"
    word, rest = m.group("word").upper(), m.group("rest")
    if not re.match(r"[ \t]+\d", rest):
        return Action(word), ""
    a = _ARG_RE.match(rest)
    if a is None:
        return None, f"malformed argument after {word} in the reply {reply!r}"
    arg = int(a.group("arg"))
    if not 1 <= arg <= MAX_ARG:
        return None, f"argument {arg} of {word} is outside 1..{MAX_ARG}"
    return Action(word, arg), ""


def cut_at_action(reply: str) -> bool:
    """Whether the reply's action runs to its very end, so more text could have changed it.

    A reply stopped by the token limit right after ``FORWARD 2`` may have been
    going to say ``FORWARD 25``, and ``BACK`` may have been ``BACKWARD``:
    one more character would change what `parse_action` reads.

    Example::

        cut_at_action("LEFT 9")             # True
        cut_at_action("LEFT 90 because")    # False
    """
    return parse_action(reply + "X")[0] != parse_action(reply)[0]


ACTION_REGEX = r"(?:FORWARD|BACK|LEFT|RIGHT|STOP)(?: [1-9][0-9]{0,2})?"
"""Every reply the constrained robot can give: an action word, then optionally its argument in 1..MAX_ARG."""


# ---------------------------------------------------------------------------
# Prompt
# ---------------------------------------------------------------------------

SYSTEM_PROMPT = (
    "You steer a small wheeled robot. Reply with exactly one action and nothing else: "
    "FORWARD, BACK, LEFT, RIGHT or STOP, optionally followed by a number "
    "(centimetres for FORWARD and BACK, degrees for LEFT and RIGHT)."
)
# A few worked turns: small models follow a format they have just seen far better than a rule.
EXAMPLES = (
    ("the path ahead is clear and the goal is straight ahead", "FORWARD 50"),
    ("there is a wall ahead, the goal is to the right", "RIGHT 90"),
    ("a person is standing right in front of you", "STOP"),
)


def build_messages(command: str) -> list[dict[str, str]]:
    """The chat turns for one command: system rule, worked examples, the command."""
    msgs = [{"role": "system", "content": SYSTEM_PROMPT}]
    for user, assistant in EXAMPLES:
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    msgs.append({"role": "user", "content": command})
    return msgs


# ---------------------------------------------------------------------------
# Constrained decoding
# ---------------------------------------------------------------------------


def constrained_decide(model: Any, command: str, max_tokens: int, timeout: float | None) -> tuple[Action, str, str]:
    """(action, reply, fallback reason or "") for one command, generated under `ACTION_REGEX`: the reply is a
    valid action unless it was cut short (time or token limit), which the stats say.

    Example::

        constrained_decide(model, "the goal is behind you", max_tokens=8, timeout=5.0)
        # (Action('BACK', 20), 'BACK 20', '')
    """
    reply = model.chat(build_messages(command), max_tokens=max_tokens, temperature=0.0, regex=ACTION_REGEX,
                       timeout=timeout)
    stats = model.last_stats
    if stats.get("finish_reason") != "stop":  # the action was not finished: never act on a part of one
        return STOP, reply, (f"no complete action within {timeout:g} s" if stats.get("stop_reason") == "timeout"
                             else f"the reply {reply!r} did not end within {max_tokens} tokens")
    action, reason = parse_action(reply)
    return (action, reply, "") if action is not None else (STOP, reply, reason)


# ---------------------------------------------------------------------------
# Deciding with plain chat
# ---------------------------------------------------------------------------


def chat_decide(model: Any, command: str, max_tokens: int, timeout: float | None) -> tuple[Action, str, str]:
    """(action, reply, fallback reason or "") for one command, with `model.chat` at temperature 0.

    Example::

        chat_decide(model, "the goal is to the left", max_tokens=8, timeout=5.0)
        # (Action('LEFT', 90), 'LEFT 90', '')
    """
    reply = model.chat(build_messages(command), max_tokens=max_tokens, temperature=0.0, stop=["\n"], timeout=timeout)
    why = model.last_stats.get("stop_reason")
    if why == "timeout":
        return STOP, reply, f"the reply timed out after {timeout:g} s ({reply!r} so far)"
    if why == "length" and cut_at_action(reply):
        return STOP, reply, f"the reply {reply!r} was cut by the {max_tokens}-token limit right after the action"
    action, reason = parse_action(reply)
    return (action, reply, "") if action is not None else (STOP, reply, reason)


# ---------------------------------------------------------------------------
# Acting
# ---------------------------------------------------------------------------


class Actuator:
    """Carries out actions; this one prints them and echoes them on the serial line.

    Subclass it and override `act` to drive motors. `write` is any callable
    taking bytes (a pyserial ``Serial.write``) or None.

    Example::

        Actuator().act(Action("LEFT", 90))   # prints 'action: LEFT 90'
    """

    def __init__(self, write: Callable[[bytes], Any] | None = None, out: Any = None) -> None:
        self.write = write
        self.out = out if out is not None else sys.stdout

    def act(self, action: Action, note: str = "") -> None:
        print(f"action: {action}" + (f"  (fallback: {note})" if note else ""), file=self.out, flush=True)
        if self.write is not None:
            self.write(f"{action}\n".encode("ascii"))


# ---------------------------------------------------------------------------
# Input lines
# ---------------------------------------------------------------------------


class LineSplitter:
    """Cuts a byte stream into lines; lines longer than `limit` bytes are dropped whole.

    Example::

        s = LineSplitter()
        list(s.feed(b"go left\\nstop\\r\\nhal"))   # [b'go left', b'stop']
    """

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.overflow = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.buf += data
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                if len(self.buf) > self.limit:
                    self.overflow = True
                    self.buf.clear()
                return
            line, self.buf = bytes(self.buf[:nl]), self.buf[nl + 1 :]
            if self.overflow or len(line) > self.limit:
                self.overflow = False
                log.warning("skipped a line longer than %d bytes", self.limit)
                continue
            yield line.rstrip(b"\r")


def command_text(line: bytes) -> str | None:
    """The command in a raw line, or None (with a log message) when it is garbage."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("skipped a line that is not UTF-8 text (%d bytes)", len(line))
        return None
    text = text.strip()
    if not text:
        return None
    if not text.isprintable():
        log.warning("skipped a line with control characters (%d bytes)", len(line))
        return None
    return text


def serial_lines(port: Any, stop: threading.Event) -> Iterator[bytes]:
    splitter = LineSplitter()
    while not stop.is_set():
        data = port.read(max(1, port.in_waiting))
        if data:
            yield from splitter.feed(data)


def stream_lines(f: BinaryIO) -> Iterator[bytes]:
    splitter = LineSplitter()
    for chunk in iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""):
        yield from splitter.feed(chunk)
    if splitter.buf:
        yield from splitter.feed(b"\n")


# ---------------------------------------------------------------------------
# Main loop
# ---------------------------------------------------------------------------


def run(lines: Iterator[bytes], actuator: Actuator, decide: Callable[[str], tuple[Action, str, str]]) -> int:
    """Handle command lines until they end; returns the number of commands acted on."""
    n = 0
    for line in lines:
        command = command_text(line)
        if command is None:
            continue
        print(f"command: {command}", flush=True)
        try:
            action, _reply, note = decide(command)
        except (EdgeSDKError, ValueError) as e:
            action, note = STOP, f"generation failed: {e}"
        actuator.act(action, note)
        n += 1
    return n


def warm_up(decide_within: Callable[[str, float | None], tuple[Action, str, str]]) -> None:
    """Decide one made-up command, with no time limit, before the first real one arrives.

    Every prompt starts with the same system rule and worked examples (about
    380 tokens); the model keeps them cached between commands, so only the
    first command would pay for computing them, inside its ``--seconds``
    limit: on a slow or busy board that command alone would time out and
    fall back to STOP. A prompt that does not fit the context is left for
    each command to report.
    """
    try:
        decide_within(EXAMPLES[0][0], None)
    except (EdgeSDKError, ValueError):
        pass


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Steer a robot with a language model, one command line at a time.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--stdin", action="store_true", help="read commands from stdin")
    src.add_argument("--port", help="serial port to read commands from and write actions to (e.g. /dev/ttyUSB0)")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("-m", "--model", default=None, help="registered name (default smollm2-135m), .gguf file, Hugging Face directory or package")
    p.add_argument("--backend", default="auto", choices=("auto", "native", "numpy", "float", "onnx", "tflite"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--group-size", type=int, default=32, help="int8 weight scale per group of G inputs (0: per row)")
    p.add_argument("--max-tokens", type=int, default=8, help="longest reply in tokens")
    p.add_argument("--seconds", type=float, default=10.0, help="time limit per command")
    p.add_argument("--constrained", action="store_true", help="let the model produce valid actions only")
    a = p.parse_args(argv)
    if a.max_tokens < 1:
        p.error("--max-tokens must be >= 1")
    if a.seconds < 0:
        p.error("--seconds must be >= 0")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    import edge_sdk

    try:
        model = edge_sdk.load(a.model, backend=a.backend, threads=a.threads, group_size=a.group_size)
    except (EdgeSDKError, OSError, ValueError) as e:
        print(f"robot: cannot load the model: {e}", file=sys.stderr)
        return 2
    decide_one = constrained_decide if a.constrained else chat_decide

    def decide_within(c: str, seconds: float | None) -> tuple[Action, str, str]:
        return decide_one(model, c, a.max_tokens, seconds)

    def decide(c: str) -> tuple[Action, str, str]:
        return decide_within(c, a.seconds)

    warm_up(decide_within)
    port = None
    stop = threading.Event()
    try:
        if a.port:
            import serial

            try:
                port = serial.Serial(a.port, a.baud, timeout=0.1)
            except (serial.SerialException, ValueError) as e:
                print(f"robot: cannot open {a.port}: {e}", file=sys.stderr)
                return 2
            actuator = Actuator(write=port.write)
            log.info("listening on %s at %d baud", a.port, a.baud)
            lines = serial_lines(port, stop)
        else:
            actuator = Actuator()
            log.info("reading commands from stdin")
            lines = stream_lines(sys.stdin.buffer)
        try:
            n = run(lines, actuator, decide)
        except KeyboardInterrupt:
            stop.set()
            actuator.act(STOP, "interrupted")
            log.info("interrupted; stopped")
            return 0
        except OSError as e:  # serial.SerialException included: the line went away
            log.error("the command line failed: %s", e)
            return 1
        log.info("%d commands handled", n)
        return 0
    finally:
        if port is not None:
            port.close()
        model.close()


if __name__ == "__main__":
    sys.exit(main())
