"""Token generation: prefill, decode loop, sampling, streaming text, stop rules.

`Generator` drives one backend. It remembers which tokens its KV cache holds,
so a new prompt that starts with the previous conversation (a chat turn)
re-uses those positions instead of recomputing them. The cache record is
updated only after a forward pass completes, so a cancelled or interrupted
generation leaves it consistent and the next request just works. With a
`PromptCache` (`prompt_cache.py`) the cache's content is also kept in slots
after each generation, and a prompt that shares a longer prefix with a slot
than with the live cache gets that prefix restored from it
(`stats.cached_tokens`: prompt tokens not computed, from either).

With a constraint (`constraints.ConstraintState`) the logits are masked here,
before sampling, for every backend alike; tokens the constraint forces are fed
to the backend as one chunk (counted in `forced_tokens`, the rest in
`sampled_tokens`), and a constraint that admits nothing but the end finishes
the generation without another forward pass.

Example::

    gen = Generator(backend, tokenizer)
    for piece in gen.stream_text(tokenizer.encode("Once upon"), SamplingParams(max_tokens=20)):
        print(piece, end="")
    gen.stats  # GenerationStats(prompt_tokens=..., decode_tok_s=..., stop_reason="length")
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from ..backends.base import Backend
from ..errors import ContextOverflowError, InvalidArgumentError
from ..plan.budget import DEFAULT_PREFILL_CHUNK
from .constraints import ConstraintState
from .prompt_cache import PromptCache, common_prefix
from .sampling import Sampler, SamplingParams
from ..text.streaming import StopMatcher, TextStreamer
from ..text.tokenizer import Tokenizer


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens whose cache entries were kept from the previous request
    restored_tokens: int = 0  # prompt tokens whose cache entries were copied back from a prompt-cache slot
    cached_tokens: int = 0  # reused + restored: prompt tokens not computed (OpenAI's prompt_tokens_details)
    generated_tokens: int = 0  # sampled + forced
    sampled_tokens: int = 0  # chosen by the sampler
    forced_tokens: int = 0  # the only continuation a constraint admitted, fed to the model as chunks
    prefill_s: float = 0.0
    decode_s: float = 0.0
    stop_reason: str = ""  # eos | stop | length | context | cancelled | timeout
    constraint: str | None = None  # None (no constraint), "satisfied" or "incomplete"

    @property
    def finish_reason(self) -> str:
        """OpenAI's word for how it ended: "stop" (the end of text, a stop string, the constraint complete),
        "length" (max_tokens or the context), else "cancelled" or "timeout"; never "stop" for a constraint
        left incomplete."""
        if self.stop_reason in ("eos", "stop") and self.constraint != "incomplete":
            return "stop"
        if self.stop_reason in ("length", "context", "eos", "stop"):
            return "length"
        return self.stop_reason

    @property
    def prefill_tok_s(self) -> float:
        n = self.prompt_tokens - self.cached_tokens
        return n / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tok_s(self) -> float:
        # the first generated token comes from the prefill's logits
        n = max(self.generated_tokens - 1, 0)
        return n / self.decode_s if self.decode_s > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prefill_tok_s"] = self.prefill_tok_s
        d["decode_tok_s"] = self.decode_tok_s
        d["finish_reason"] = self.finish_reason
        return d


class Generator:
    """Runs prompts through a backend; one sequence at a time (the caller serializes)."""

    def __init__(self, backend: Backend, tokenizer: Tokenizer, prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
                 prompt_cache: PromptCache | None = None) -> None:
        """`prefill_chunk`: prompt tokens per forward call (`settings.RunSettings.prefill_chunk`, the plan's);
        `prompt_cache`: slots of recent prompts' KV rows for this backend, or None."""
        self.backend = backend
        self.tokenizer = tokenizer
        self.prefill_chunk = prefill_chunk
        self.prompt_cache = prompt_cache
        self.cached: list[int] = []  # tokens whose K/V sit at positions 0..len-1
        self.stats = GenerationStats()

    def reset(self) -> None:
        self.cached = []

    def check_prompt(self, prompt_ids: Sequence[int]) -> None:
        if len(prompt_ids) == 0:
            raise InvalidArgumentError("the prompt is empty (no tokens); give some text or set add_bos")
        ctx = self.backend.ctx
        if len(prompt_ids) > ctx:
            raise ContextOverflowError(
                f"the prompt has {len(prompt_ids)} tokens but the context holds {ctx}; "
                "shorten the prompt or load the model with a larger ctx"
            )

    def _prefill(self, prompt_ids: list[int], stopped: Callable[[], str]) -> np.ndarray | None:
        """The last prompt token's logits, or None when `stopped()` names a reason between two chunks."""
        # recompute at least the last token for its logits
        common = min(common_prefix(self.cached, prompt_ids), len(prompt_ids) - 1)
        restored = 0
        if self.prompt_cache is not None:  # a slot sharing more of the prompt: its rows replace the live ones
            common, restored = self.prompt_cache.restore(self.backend, self.cached, prompt_ids, common)
        self.stats.reused_tokens = common
        self.stats.restored_tokens = restored
        common += restored
        self.stats.cached_tokens = common
        self.cached = list(prompt_ids[:common])
        logits = None
        for start in range(common, len(prompt_ids), self.prefill_chunk):
            reason = stopped()
            if reason:  # the chunks done so far stay cached: a retry of the same prompt resumes here
                self.stats.stop_reason = reason
                return None
            chunk = prompt_ids[start : start + self.prefill_chunk]
            logits = self.backend.forward(np.asarray(chunk, dtype=np.int64), start, last_only=True)
            self.cached = list(prompt_ids[: start + len(chunk)])
        assert logits is not None
        return logits[-1]

    def stream_tokens(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
        constraint: ConstraintState | None = None,
    ) -> Iterator[int]:
        """Yield generated token ids (EOS excluded); `self.stats` is final when the iterator ends.

        `cancel` and `timeout` (seconds, from this call) are checked between prefill chunks and before
        each new token; a stop leaves the cache consistent (see the module's docstring). `constraint`: the
        state of a compiled constraint for this generation (`constraints.ConstraintState`).
        """
        self.stats = GenerationStats()
        yield from self._tokens(list(prompt_ids), params, cancel, timeout, constraint)

    def _tokens(self, prompt_ids: list[int], params: SamplingParams, cancel: threading.Event | None,
                timeout: float | None, constraint: ConstraintState | None = None) -> Iterator[int]:
        """stream_tokens of a prompt as a list. Ids, `params` and `timeout` are the caller's, already checked
        (`api.Model`); the backend checks every forward call's ids against the vocabulary. However it ends,
        the cache's content is then kept in a prompt-cache slot."""
        try:
            yield from self._generate(prompt_ids, params, cancel, timeout, constraint)
        finally:
            if self.prompt_cache is not None:
                self.prompt_cache.save(self.backend, self.cached)

    def _generate(self, prompt_ids: list[int], params: SamplingParams, cancel: threading.Event | None,
                  timeout: float | None, constraint: ConstraintState | None = None) -> Iterator[int]:
        st = self.stats
        deadline = None if timeout is None else time.perf_counter() + timeout
        self.check_prompt(prompt_ids)
        st.prompt_tokens = len(prompt_ids)
        sampler = Sampler(params)

        def stopped() -> str:
            if cancel is not None and cancel.is_set():
                return "cancelled"
            if deadline is not None and time.perf_counter() > deadline:
                return "timeout"
            return ""

        t0 = time.perf_counter()
        prefilled = self._prefill(prompt_ids, stopped)
        st.prefill_s = time.perf_counter() - t0
        if prefilled is None:
            if constraint is not None:
                st.constraint = "satisfied" if constraint.complete else "incomplete"
            return
        logits = prefilled
        history = list(prompt_ids)
        t1 = time.perf_counter()
        try:
            while True:
                reason = stopped()
                if reason:
                    st.stop_reason = reason
                    return
                if st.generated_tokens >= params.max_tokens:
                    st.stop_reason = "length"
                    return
                if constraint is not None:
                    if constraint.finished:  # nothing can follow but the end: no need to ask the model
                        st.stop_reason = "eos"
                        return
                    forced = constraint.forced()[: params.max_tokens - st.generated_tokens]
                    if forced:
                        pos = len(self.cached)
                        forced = forced[: self.backend.ctx - pos]
                        if not forced:
                            st.stop_reason = "context"
                            return
                        constraint.consume(forced)
                        st.generated_tokens += len(forced)
                        st.forced_tokens += len(forced)
                        history += forced
                        yield from forced
                        logits = self.backend.forward(np.asarray(forced, dtype=np.int64), pos, last_only=True)[-1]
                        self.cached += forced
                        continue
                    logits = constraint.mask(logits)
                tok = sampler.sample(logits, history)
                if tok in self.tokenizer.eos_ids:
                    st.stop_reason = "eos"
                    return
                if constraint is not None:
                    constraint.consume([tok])
                st.generated_tokens += 1
                st.sampled_tokens += 1
                history.append(tok)
                yield tok
                pos = len(self.cached)
                if pos >= self.backend.ctx:
                    st.stop_reason = "context"
                    return
                if constraint is not None and constraint.finished:
                    st.stop_reason = "eos"
                    return
                logits = self.backend.forward(np.asarray([tok], dtype=np.int64), pos, last_only=True)[-1]
                self.cached.append(tok)
        finally:
            if not st.stop_reason:
                st.stop_reason = "cancelled"
            if constraint is not None:
                st.constraint = "satisfied" if constraint.complete else "incomplete"
            st.decode_s = time.perf_counter() - t1

    def stream_text(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
        constraint: ConstraintState | None = None,
    ) -> Iterator[str]:
        """Yield text pieces; never splits a UTF-8 character; cuts at the first stop string."""
        self.stats = GenerationStats()
        prompt_ids = list(prompt_ids)
        streamer = TextStreamer(self.tokenizer, context=prompt_ids)
        stops = StopMatcher(params.stop)
        tokens = self._tokens(prompt_ids, params, cancel, timeout, constraint)
        try:
            for tok in tokens:
                text, hit = stops.feed(streamer.push(tok))
                if text:
                    yield text
                if hit:
                    self.stats.stop_reason = "stop"
                    return
            # a generation that was stopped (cancel, timeout) ends where it was, as a closed stream does: a
            # character still unfinished is dropped, not shown as U+FFFD
            stopped = self.stats.stop_reason in ("cancelled", "timeout")
            text, hit = stops.feed("" if stopped else streamer.flush())
            tail = text + ("" if hit else stops.flush())
            if tail:
                yield tail
            if hit:
                self.stats.stop_reason = "stop"
        finally:
            tokens.close()
