"""Pick the next token from the logits: penalties, truncation, temperature, draw.

Order of operations (llama.cpp's default sampler chain, `common/sampling.cpp`):

1. repetition penalty over the last ``repeat_last_n`` tokens of the history,
   CTRL style as in llama.cpp's ``llama_sampler_penalties``: a positive logit
   is divided by the penalty, a negative one multiplied;
2. temperature 0: greedy argmax (ties go to the lowest id), stop here;
3. top-k: keep the k highest logits (ties at the cut go to the lowest ids);
4. top-p: keep the smallest set of most likely tokens whose probability
   (softmax over what top-k left) reaches p; the token that crosses p stays;
5. min-p: keep tokens whose probability is at least ``min_p`` times the
   largest one (``logit >= max_logit + log(min_p)``);
6. temperature: divide the surviving logits by it;
7. draw one token from their softmax by inverse CDF over the survivors in
   ascending id order, with a `numpy.random.Generator(PCG64(seed))` owned by
   the `Sampler` (same seed, same logits -> same tokens).

Because top-k/top-p/min-p run before temperature, temperature changes how
the survivors are weighted, not which tokens survive.

Example::

    sampler = Sampler(SamplingParams(temperature=0.7, top_p=0.9, seed=42))
    next_id = sampler.sample(logits, history=prompt_ids)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..errors import BackendError, InvalidArgumentError


class SamplingError(InvalidArgumentError):
    """A sampling parameter is out of range or of the wrong type (an `InvalidArgumentError`)."""


@dataclass(frozen=True)
class SamplingParams:
    """How to choose tokens and when to stop.

    temperature: 0 means greedy; otherwise > 0 (1.0 leaves logits unchanged).
    top_k: keep the k most likely tokens; 0 turns it off.
    top_p: nucleus sampling threshold in (0, 1]; 1.0 turns it off.
    min_p: drop tokens less likely than min_p * the most likely one; 0 turns it off.
    repetition_penalty: > 0; 1.0 turns it off.
    repeat_last_n: how many of the latest tokens the penalty looks at;
        0 turns it off, -1 means the whole history.
    seed: seed of the sampler's random generator; None draws one from the OS.
    max_tokens: most tokens to generate (>= 1).
    stop: strings that end generation (the text is cut before them);
        a single string is taken as one stop string.

    Example::

        SamplingParams(temperature=0.8, top_k=40, top_p=0.95, seed=1, stop=["\\n\\n"])
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    repeat_last_n: int = 64
    seed: int | None = None
    max_tokens: int = 128
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_real("temperature", self.temperature, lambda v: v >= 0, ">= 0 (0 means greedy)")
        _check_int("top_k", self.top_k, lambda v: v >= 0, ">= 0 (0 turns it off)")
        _check_real("top_p", self.top_p, lambda v: 0 < v <= 1, "in (0, 1] (1 turns it off)")
        _check_real("min_p", self.min_p, lambda v: 0 <= v <= 1, "in [0, 1] (0 turns it off)")
        _check_real("repetition_penalty", self.repetition_penalty, lambda v: v > 0, "> 0 (1 turns it off)")
        _check_int("repeat_last_n", self.repeat_last_n, lambda v: v >= -1, ">= -1 (-1: whole history, 0: off)")
        if self.seed is not None:
            _check_int("seed", self.seed, lambda v: v >= 0, ">= 0 or None")
        _check_int("max_tokens", self.max_tokens, lambda v: v >= 1, ">= 1")
        stop = (self.stop,) if isinstance(self.stop, str) else self.stop
        if isinstance(stop, (bytes, bytearray, Mapping)):
            raise SamplingError(f"stop must be a string or a sequence of strings, got {type(stop).__name__}")
        try:
            stop = tuple(stop)
        except TypeError:
            raise SamplingError(f"stop must be a string or a sequence of strings, got {type(self.stop).__name__}") from None
        for s in stop:
            if not isinstance(s, str) or not s:
                raise SamplingError(f"stop strings must be non-empty strings, got {s!r}")
        object.__setattr__(self, "stop", stop)


def _check_real(name: str, value: object, ok, rule: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not ok(value):
        raise SamplingError(f"{name} must be a finite number {rule}, got {value!r}")


def _check_int(name: str, value: object, ok, rule: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not ok(value):
        raise SamplingError(f"{name} must be an integer {rule}, got {value!r}")


class Sampler:
    """Applies `SamplingParams` to logits, one token at a time.

    Owns its random generator: create one Sampler per generation so that a
    seeded run is reproducible.

    Example::

        sampler = Sampler(SamplingParams(temperature=0.8, top_k=40, seed=7))
        tok = sampler.sample(logits, history)     # logits: (vocab,) float32
    """

    def __init__(self, params: SamplingParams) -> None:
        if not isinstance(params, SamplingParams):
            raise SamplingError(f"Sampler takes SamplingParams, got {type(params).__name__}")
        self.params = params
        self._rng = np.random.Generator(np.random.PCG64(params.seed))

    def penalized(self, logits: np.ndarray, history: Sequence[int] = ()) -> np.ndarray:
        """A float32 copy of `logits` (vocab,) with the repetition penalty applied."""
        x = np.array(logits, dtype=np.float32, copy=True)
        if x.ndim != 1 or x.size == 0:
            raise SamplingError(f"logits must be a non-empty 1-D array (vocab,), got shape {x.shape}")
        if np.isnan(x).any() or np.isposinf(x).any():
            raise BackendError("logits contain NaN or +inf; the forward pass produced invalid numbers")
        p = self.params
        if p.repetition_penalty != 1.0 and p.repeat_last_n != 0 and len(history):
            window = list(history) if p.repeat_last_n < 0 else list(history)[-p.repeat_last_n :]
            seen = np.unique(np.asarray(window, dtype=np.int64))
            if seen[0] < 0 or seen[-1] >= x.size:
                bad = int(seen[0]) if seen[0] < 0 else int(seen[-1])
                raise SamplingError(f"history holds token id {bad}, outside the {x.size} logits")
            v = x[seen]
            x[seen] = np.where(v <= 0, v * np.float32(p.repetition_penalty), v / np.float32(p.repetition_penalty))
        return x

    def candidates(self, logits: np.ndarray, history: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
        """The tokens `sample` may draw and their probabilities, in ascending id order.

        Returns (ids (n,) int64, probs (n,) float64 summing to 1).
        """
        x = self.penalized(logits, history)
        p = self.params
        if p.temperature == 0:
            ids = np.array([int(np.argmax(x))], dtype=np.int64)
            if not np.isfinite(x[ids[0]]):
                raise BackendError("every logit is -inf; no token can be chosen")
            return ids, np.ones(1)
        ids = np.flatnonzero(np.isfinite(x)).astype(np.int64)
        if ids.size == 0:
            raise BackendError("every logit is -inf; no token can be chosen")
        lg = x[ids].astype(np.float64)  # (n,)
        if 0 < p.top_k < ids.size:
            ids, lg = _top_k(ids, lg, p.top_k)
        if p.top_p < 1.0:
            ids, lg = _top_p(ids, lg, p.top_p)
        if p.min_p > 0.0:
            keep = lg >= lg.max() + math.log(p.min_p)
            ids, lg = ids[keep], lg[keep]
        with np.errstate(over="ignore"):  # shifted first: a tiny temperature sends the others to -inf, never to NaN
            return ids, _softmax((lg - lg.max()) / p.temperature)

    def sample(self, logits: np.ndarray, history: Sequence[int] = ()) -> int:
        """The next token id for `logits` (vocab,) given the tokens so far."""
        ids, probs = self.candidates(logits, history)
        if ids.size == 1:
            return int(ids[0])
        cdf = np.cumsum(probs)
        i = int(np.searchsorted(cdf, self._rng.random() * cdf[-1], side="right"))
        return int(ids[min(i, ids.size - 1)])


def _softmax(lg: np.ndarray) -> np.ndarray:
    e = np.exp(lg - lg.max())
    return e / e.sum()


def _top_k(ids: np.ndarray, lg: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the k largest logits; among equal logits at the cut, the lowest ids."""
    kth = np.partition(lg, lg.size - k)[lg.size - k]  # the k-th largest value
    keep = lg > kth
    ties = np.flatnonzero(lg == kth)
    keep[ties[: k - int(keep.sum())]] = True
    return ids[keep], lg[keep]


def _top_p(ids: np.ndarray, lg: np.ndarray, top_p: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep the most likely tokens until their probability reaches top_p (that token included).

    Equivalent to a stable sort of all logits (ties by lower id) and a cumulative
    sum, but sorts only the best m candidates (all ties at the cut included),
    growing m until the sum crosses top_p: the nucleus is usually small.
    """
    probs = _softmax(lg)
    m = 64
    while True:
        if m >= lg.size:
            cand = np.arange(lg.size)
        else:
            cand = np.flatnonzero(lg >= np.partition(lg, lg.size - m)[lg.size - m])
        order = cand[np.argsort(-lg[cand], kind="stable")]  # most likely first; ties by lower id
        cum = np.cumsum(probs[order])
        last = int(np.searchsorted(cum, top_p, side="left"))
        if last < order.size or cand.size == lg.size:
            keep = np.sort(order[: min(last, order.size - 1) + 1])
            return ids[keep], lg[keep]
        m *= 8


# ---------------------------------------------------------------------------
# A model's own sampling defaults
# ---------------------------------------------------------------------------

GENERATION_DEFAULT_KEYS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "repeat_last_n")
"""The sampling fields a model file may set defaults for (the rest: `SamplingParams`'s own defaults)."""

GGUF_SAMPLING_KEYS: Mapping[str, str] = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_k": "top_k",
    "general.sampling.top_p": "top_p",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repetition_penalty",
    "general.sampling.penalty_last_n": "repeat_last_n",
}
"""GGUF metadata keys (llama.cpp's `general.sampling.*`, gguf-py `Keys.General.SAMPLING_*`) -> our fields."""

HF_SAMPLING_DEFAULTS: Mapping[str, float] = {"temperature": 1.0, "top_k": 50, "top_p": 1.0}
"""What `transformers.GenerationConfig` samples with when `do_sample` is true and a field is absent."""


def checked_generation_defaults(d: Mapping[str, object], source: str) -> dict[str, object]:
    """`d` restricted to sampling fields, each valid for `SamplingParams`; else an error naming `source`."""
    from ..errors import ModelFileError

    unknown = sorted(set(d) - set(GENERATION_DEFAULT_KEYS))
    if unknown:
        raise ModelFileError(f"{source}: unknown sampling defaults {unknown}; known: {', '.join(GENERATION_DEFAULT_KEYS)}")
    try:
        SamplingParams(**d)  # type: ignore[arg-type]
    except SamplingError as e:
        raise ModelFileError(f"{source}: invalid sampling default: {e}") from None
    return dict(d)


def generation_defaults_from_gguf(meta: Mapping[str, object], source: str) -> dict[str, object]:
    """Sampling defaults a GGUF file carries (`general.sampling.*`); {} when it carries none.

    Example::

        generation_defaults_from_gguf({"general.sampling.temp": 0.6, "general.sampling.top_p": 0.9}, "m.gguf")
        # {'temperature': 0.6, 'top_p': 0.9}
    """
    out: dict[str, object] = {}
    for key, name in GGUF_SAMPLING_KEYS.items():
        if key in meta:
            v = meta[key]
            if name not in ("top_k", "repeat_last_n") and isinstance(v, numbers.Real) and not isinstance(v, bool):
                v = float(str(np.float32(v)))  # GGUF stores float32: the shortest decimal of it (0.9, not 0.8999...)
            out[name] = v
    return checked_generation_defaults(out, f"{source}: GGUF general.sampling")


def generation_defaults_from_hf(gen: Mapping[str, object], source: str) -> dict[str, object]:
    """Sampling defaults of a Hugging Face `generation_config.json`, read as `transformers` reads them.

    Without `do_sample: true` transformers decodes greedily and ignores temperature, top-k and top-p (a
    repetition penalty still applies); with it, absent fields take `HF_SAMPLING_DEFAULTS`. An empty or absent
    file gives {} (the SDK's own defaults).

    Example::

        generation_defaults_from_hf({"do_sample": True, "temperature": 0.6, "top_p": 0.9}, "dir")
        # {'temperature': 0.6, 'top_k': 50, 'top_p': 0.9}
    """
    out: dict[str, object] = {}
    sampling_keys = ("do_sample", "temperature", "top_k", "top_p", "min_p")
    if gen.get("do_sample") is True:
        for name in ("temperature", "top_k", "top_p", "min_p"):
            v = gen.get(name, HF_SAMPLING_DEFAULTS.get(name))
            if v is not None:
                out[name] = v
        if out.get("top_k") == 0:
            out.pop("top_k")
    elif any(k in gen for k in sampling_keys):
        out["temperature"] = 0.0  # transformers: greedy unless do_sample
    if gen.get("repetition_penalty") is not None:
        out["repetition_penalty"] = gen["repetition_penalty"]
    return checked_generation_defaults(out, f"{source}: generation_config.json")
