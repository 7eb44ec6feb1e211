"""What one round of `edge-sdk bench` measures, for our backends and for llama.cpp alike.

A round gives every player (each backend's worker, then the peer) one turn, in an order rotated by the round
number. A turn measures, in this order:

- `base`: a prefill of the run's prompt and its greedy decode (`--prompt-tokens`, `--gen-tokens`), then the
  machine's read bandwidth with the run's thread count (`machine.BandwidthProbe`);
- `depth` (`--depth N`): decode after a `BASE_DEPTH`-token context and after an N-token one;
- `sweep` (`--sweep 16,64,...`): a prefill of each prompt length.

Every measurement carries the 1-minute load average before and after it (`busy.measured`). llama.cpp's turn
runs `llama-bench` once for the prompt, the sweep and the decode (one test per length, each warmed up by
llama-bench) and, for depth, `llama-cli` on a text of as many tokens (see `peer.run_llama_cli_depth`).

Example::

    m = Measures(prompt_tokens=64, gen_tokens=32, depth=1500, sweep=(16, 512))
    turn = ours_turn(worker, m, probe)     # {"base": {...}, "depth": {...}, "sweep": {16: {...}, 512: {...}}}
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError
from .busy import measured
from .machine import BandwidthProbe
from .peer import run_llama_bench_rows, run_llama_cli_depth, text_of_tokens
from .summary import BASE_DEPTH

MAX_TOKENS = 1 << 20


@dataclass(frozen=True)
class Measures:
    """What each turn measures (checked: every length >= 1)."""

    prompt_tokens: int
    gen_tokens: int
    depth: int | None = None
    sweep: tuple[int, ...] = ()
    base_depth: int = BASE_DEPTH

    def __post_init__(self) -> None:
        lengths = [self.prompt_tokens, self.gen_tokens, *self.sweep] + ([self.depth] if self.depth is not None else [])
        if any(not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_TOKENS for n in lengths):
            raise InvalidArgumentError(f"prompt, generation, depth and sweep lengths must be from 1 to {MAX_TOKENS}, "
                                       f"got {lengths}")
        if len(set(self.sweep)) != len(self.sweep):
            raise InvalidArgumentError(f"the sweep lists a length twice: {list(self.sweep)}")

    @property
    def peer_prompts(self) -> list[int]:
        """Prompt lengths of the peer's llama-bench run: the run's prompt, then the sweep's."""
        return [self.prompt_tokens] + [n for n in self.sweep if n != self.prompt_tokens]


def ours_turn(worker: Any, m: Measures, probe: BandwidthProbe) -> dict[str, Any]:
    """One turn of a backend's worker (`backends._Worker`)."""
    turn: dict[str, Any] = {"base": measured(worker.round)}
    turn["base"]["bandwidth_gbps"] = probe.measure()
    if m.depth:
        def depth() -> dict[str, float]:
            base = worker.depth(m.base_depth)["decode_tok_s"]
            return {"base_decode_tok_s": base, "depth_decode_tok_s": worker.depth(m.depth)["decode_tok_s"]}

        turn["depth"] = measured(depth)
    if m.sweep:
        turn["sweep"] = {n: measured(lambda n=n: worker.prefill(n)) for n in m.sweep}
    return turn


@dataclass
class PeerRunner:
    """llama.cpp (`llama-bench`, and `llama-cli` for depth) on the Q8_0 copy, with the run's threads."""

    bench: str
    q8: str
    threads: int
    m: Measures
    cli: str | None = None
    tokenizer: Any = None  # ours, which gives llama.cpp's token ids: the depth prompts' texts
    _files: dict[int, Path] = field(default_factory=dict)
    _dir: Any = None

    def _prompt_file(self, n: int) -> Path:
        if n not in self._files:
            if self._dir is None:
                self._dir = tempfile.TemporaryDirectory(prefix="edge-sdk-bench-")
            path = Path(self._dir.name) / f"prompt-{n}.txt"
            path.write_text(text_of_tokens(self.tokenizer, n))
            self._files[n] = path
        return self._files[n]

    def _depth(self, n: int) -> dict[str, Any]:
        assert self.cli is not None
        return run_llama_cli_depth(self.cli, self.q8, self.threads, self._prompt_file(n), self.m.gen_tokens,
                                   ctx=n + self.m.gen_tokens + 16)

    def depth_turn(self) -> dict[str, Any]:
        """Decode after `BASE_DEPTH` and after `depth` tokens (llama-cli, once each)."""
        def depth() -> dict[str, Any]:
            base, at = self._depth(self.m.base_depth), self._depth(self.m.depth)
            self.depth_command = at["command"]
            return {"base_decode_tok_s": base["decode_tok_s"], "depth_decode_tok_s": at["decode_tok_s"],
                    "base_prompt_tokens_read": base["prompt_tokens"], "prompt_tokens_read": at["prompt_tokens"]}

        return measured(depth)

    def turn(self, repeats: int = 1, probe: BandwidthProbe | None = None) -> dict[str, Any]:
        """One turn; `repeats` > 1 (the sequential schedule) has llama-bench repeat each test itself."""
        m = self.m
        rows = measured(lambda: run_llama_bench_rows(self.bench, self.q8, self.threads, m.peer_prompts,
                                                     m.gen_tokens, repeats))
        self.command = rows["command"]
        turn: dict[str, Any] = {"base": {"prefill_tok_s": rows["prefill"][m.prompt_tokens],
                                         "decode_tok_s": rows["decode"][m.gen_tokens], "loadavg": rows["loadavg"]}}
        if probe is not None:
            turn["base"]["bandwidth_gbps"] = probe.measure()
        if m.depth:
            turn["depth"] = self.depth_turn()
        if m.sweep:
            turn["sweep"] = {n: {"prefill_tok_s": rows["prefill"][n], "loadavg": rows["loadavg"]} for n in m.sweep}
        return turn

    def close(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
