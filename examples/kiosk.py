#!/usr/bin/env python3
"""A question-answer kiosk on a terminal: one question per line, answers streamed.

Made to run unattended on a small board:

* every answer has a time limit (``--answer-seconds``, passed to the model as
  ``timeout=``); when it runs out the kiosk says so after what it has;
* a memory guard: before each answer the process's resident memory (VmRSS)
  is compared with ``--max-rss-mb``; above it the kiosk refuses politely and
  forgets the conversation;
* a bounded conversation: at most ``--history-turns`` earlier exchanges are
  kept, and the oldest are dropped until the prompt (counted with
  ``model.tokenize``) plus the answer budget fits the context
  (`trim_history`);
* Ctrl-C during an answer stops that answer; Ctrl-C at the prompt (or end of
  input) leaves.

The default persona (`SYSTEM_PROMPT`) answers any question; ``--system`` gives
the kiosk its own instructions, for example to keep it to one subject.

Usage::

    python examples/kiosk.py                                   # SmolLM2-135M-Instruct
    python examples/kiosk.py --answer-seconds 20 --max-rss-mb 400 --history-turns 4
    python examples/kiosk.py --system "You are the guide of the city museum. Answer only questions about the museum and politely decline others."
    printf 'What is a robot?\\nName one.\\n' | python examples/kiosk.py -m model.gguf --backend numpy
"""

from __future__ import annotations

import argparse
import gc
import sys
from typing import Any, Callable, Sequence

from edge_sdk.errors import EdgeSDKError

SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly and politely."
Turn = tuple[str, str]  # (question, answer)


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------


def rss_bytes() -> int:
    """Resident memory of this process: VmRSS from /proc/self/status, else ru_maxrss (the peak)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# ---------------------------------------------------------------------------
# Conversation
# ---------------------------------------------------------------------------


def build_messages(history: Sequence[Turn], question: str, system: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    for q, a in history:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    msgs.append({"role": "user", "content": question})
    return msgs


def trim_history(history: Sequence[Turn], question: str, count_tokens: Callable[[list[dict[str, str]]], int],
                 budget: int, max_turns: int, system: str = SYSTEM_PROMPT) -> list[Turn] | None:
    """The most recent turns (at most `max_turns`) whose prompt with `question` fits in `budget` tokens.

    Drops the oldest turns first. Returns None when even the question alone
    does not fit. `count_tokens` gets the chat messages and returns the
    prompt's token count.

    Example::

        count = lambda msgs: sum(len(m["content"].split()) for m in msgs)
        trim_history([("a b", "c"), ("d", "e f")], "g", count, budget=5, max_turns=8, system="")
        # [('d', 'e f')]   (with both turns the prompt would be 7 tokens)
    """
    if max_turns < 0:
        raise ValueError(f"max_turns must be >= 0, got {max_turns}")
    kept = list(history[-max_turns:]) if max_turns else []
    while True:
        if count_tokens(build_messages(kept, question, system)) <= budget:
            return kept
        if not kept:
            return None
        kept.pop(0)


def prompt_tokens(model: Any) -> Callable[[list[dict[str, str]]], int]:
    """A `count_tokens` for `trim_history` that renders the model's chat template and tokenizes it."""
    return lambda msgs: len(model.tokenize(model.chat_prompt(msgs), special=True))


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------


class Kiosk:
    """Answers questions one at a time with a time limit, a memory guard and a bounded history.

    Example::

        kiosk = Kiosk(model, answer_seconds=20, max_rss_mb=400, history_turns=4, max_tokens=128)
        kiosk.ask("What is a robot?")   # streams the answer to stdout, returns it
    """

    def __init__(self, model: Any, answer_seconds: float, max_rss_mb: float | None, history_turns: int,
                 max_tokens: int, out: Any = None, system: str = SYSTEM_PROMPT) -> None:
        self.model = model
        self.system = system
        self.answer_seconds = answer_seconds
        self.max_rss_mb = max_rss_mb
        self.history_turns = history_turns
        self.max_tokens = max_tokens
        self.out = out if out is not None else sys.stdout
        self.history: list[Turn] = []
        self.count = prompt_tokens(model)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def ask(self, question: str) -> str | None:
        """Answer `question` (streamed to `out`); None when refused."""
        if self.max_rss_mb is not None:
            gc.collect()
            rss_mb = rss_bytes() / 2**20
            if rss_mb > self.max_rss_mb:
                self.history.clear()
                self.say(f"Sorry, I am short of memory right now ({rss_mb:.0f} MB in use, limit {self.max_rss_mb:g} MB). "
                         "I have cleared our conversation; please ask again in a moment.")
                return None
        budget = self.model.backend.ctx - self.max_tokens
        kept = trim_history(self.history, question, self.count, budget, self.history_turns, self.system)
        if kept is None:
            self.say("Sorry, that question is too long for me. Could you ask it in fewer words?")
            return None
        dropped = len(self.history) - len(kept)
        self.history = kept
        pieces: list[str] = []
        interrupted = False
        stream = self.model.chat(build_messages(kept, question, self.system), stream=True, max_tokens=self.max_tokens,
                                 timeout=self.answer_seconds)
        try:
            for piece in stream:
                pieces.append(piece)
                print(piece, end="", file=self.out, flush=True)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            stream.close()  # frees the model even when stopped between two pieces
        answer = "".join(pieces)
        if pieces:
            print(file=self.out, flush=True)
        reason = "interrupted" if interrupted else self.model.last_stats.get("stop_reason", "")
        if reason == "timeout":
            self.say(f"(I ran out of time: {self.answer_seconds:g} s per answer.)")
        elif reason == "interrupted":
            self.say("(stopped)")
        if dropped:
            print(f"kiosk: dropped the {dropped} oldest turn(s) to fit the context", file=sys.stderr)
        self.history.append((question, answer))
        return answer


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Answer questions typed on a terminal, one per line.")
    p.add_argument("-m", "--model", default=None, help="registered name (default smollm2-135m), .gguf file, Hugging Face directory or package")
    p.add_argument("--backend", default="auto", choices=("auto", "native", "numpy", "float", "onnx", "tflite"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--group-size", type=int, default=32, help="int8 weight scale per group of G inputs (0: per row)")
    p.add_argument("--answer-seconds", type=float, default=30.0, help="time limit per answer")
    p.add_argument("--max-rss-mb", type=float, default=None, help="refuse to answer while the process uses more memory than this")
    p.add_argument("--history-turns", type=int, default=4, help="earlier exchanges kept in the conversation")
    p.add_argument("--max-tokens", type=int, default=128, help="longest answer in tokens")
    p.add_argument("--system", default=SYSTEM_PROMPT,
                   help=f"the kiosk's instructions (default: {SYSTEM_PROMPT!r}); e.g. keep it to one subject")
    a = p.parse_args(argv)
    if a.answer_seconds < 0:
        p.error("--answer-seconds must be >= 0")
    if a.max_rss_mb is not None and a.max_rss_mb <= 0:
        p.error("--max-rss-mb must be > 0")
    if a.history_turns < 0:
        p.error("--history-turns must be >= 0")
    if a.max_tokens < 1:
        p.error("--max-tokens must be >= 1")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    import edge_sdk

    try:
        model = edge_sdk.load(a.model, backend=a.backend, threads=a.threads, group_size=a.group_size)
    except (EdgeSDKError, OSError, ValueError) as e:
        print(f"kiosk: cannot load the model: {e}", file=sys.stderr)
        return 2
    if a.max_tokens >= model.backend.ctx:
        print(f"kiosk: --max-tokens {a.max_tokens} leaves no room for a question in the {model.backend.ctx}-token context", file=sys.stderr)
        model.close()
        return 2
    kiosk = Kiosk(model, a.answer_seconds, a.max_rss_mb, a.history_turns, a.max_tokens, system=a.system)
    sys.stdin.reconfigure(errors="replace")  # a stray byte must not end the kiosk
    interactive = sys.stdin.isatty()
    try:
        while True:
            if interactive:
                print("> ", end="", flush=True)
            line = sys.stdin.readline()
            if not line:
                break
            question = line.strip()
            if not question:
                continue
            try:
                kiosk.ask(question)
            except EdgeSDKError as e:
                kiosk.history.clear()
                kiosk.say(f"Sorry, something went wrong ({e}). Let us start again.")
    except KeyboardInterrupt:
        print(file=sys.stdout)
    finally:
        model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
