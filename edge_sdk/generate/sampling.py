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
from typing import Sequence

import numpy as np

from ..errors import BackendError, SamplingError
from ..model.sampling_params import SamplingParams

__all__ = ["Sampler", "SamplingError", "SamplingParams"]


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
