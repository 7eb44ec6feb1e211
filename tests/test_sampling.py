"""Sampler: parameter checks, greedy, truncation sets, seeded draws, penalties."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from edge_sdk.errors import BackendError, EdgeSDKError
from edge_sdk.generate.sampling import Sampler, SamplingError, SamplingParams

# probabilities 0.1, 0.2, 0.3, 0.4 for ids 0..3
LOGITS_1234 = np.log(np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32))
# probabilities 0.5, 0.25, 0.15, 0.1 (no cumulative sum lands on a test threshold)
LOGITS_HALF = np.log(np.array([0.5, 0.25, 0.15, 0.1], dtype=np.float32))
PROB_TOL = 1e-6  # float32 logits -> float64 probabilities


def _sampler(**kw) -> Sampler:
    return Sampler(SamplingParams(**kw))


# ---------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"temperature": -0.1}, "temperature must be a finite number >= 0 (0 means greedy), got -0.1"),
        ({"temperature": float("nan")}, "temperature must be a finite number"),
        ({"top_k": -1}, "top_k must be an integer >= 0 (0 turns it off), got -1"),
        ({"top_k": 2.5}, "top_k must be an integer"),
        ({"top_p": 0.0}, "top_p must be a finite number in (0, 1] (1 turns it off), got 0.0"),
        ({"top_p": 1.5}, "top_p must be a finite number in (0, 1]"),
        ({"min_p": -0.01}, "min_p must be a finite number in [0, 1]"),
        ({"repetition_penalty": 0.0}, "repetition_penalty must be a finite number > 0"),
        ({"repeat_last_n": -2}, "repeat_last_n must be an integer >= -1"),
        ({"seed": -5}, "seed must be an integer >= 0 or None, got -5"),
        ({"seed": True}, "seed must be an integer"),
        ({"max_tokens": 0}, "max_tokens must be an integer >= 1, got 0"),
        ({"stop": ["ok", ""]}, "stop strings must be non-empty strings, got ''"),
        ({"stop": [3]}, "stop strings must be non-empty strings, got 3"),
        ({"stop": 3}, "stop must be a string or a sequence of strings, got int"),
        ({"stop": b"x"}, "stop must be a string or a sequence of strings, got bytes"),
        ({"stop": {"a": 1}}, "stop must be a string or a sequence of strings, got dict"),
    ],
)
def test_bad_params(kw, message):
    with pytest.raises(SamplingError, match=re.escape(message)):
        SamplingParams(**kw)


def test_param_error_is_value_error_and_sdk_error():
    with pytest.raises(ValueError):
        SamplingParams(top_p=2.0)
    with pytest.raises(EdgeSDKError):
        SamplingParams(top_p=2.0)


def test_stop_is_a_tuple():
    assert SamplingParams(stop="\n").stop == ("\n",)
    assert SamplingParams(stop=["a", "b"]).stop == ("a", "b")
    assert SamplingParams().stop == ()


# ---------------------------------------------------------------------------
# greedy
# ---------------------------------------------------------------------------


def test_greedy_argmax_lowest_id_on_ties():
    s = _sampler()
    assert s.sample(np.array([0.1, 2.0, 2.0, -1.0], dtype=np.float32)) == 1
    assert s.sample(np.array([-np.inf, -3.0, -2.5], dtype=np.float32)) == 2
    assert s.sample(LOGITS_1234) == 3


def test_top_k_1_equals_greedy():
    rng = np.random.default_rng(3)
    greedy = _sampler()
    for _ in range(20):
        logits = np.round(rng.standard_normal(500), 1).astype(np.float32)  # rounding makes ties
        history = rng.integers(0, 500, 30).tolist()
        top1 = _sampler(temperature=1.3, top_k=1, seed=int(rng.integers(1000)), repetition_penalty=1.2)
        greedy_pen = _sampler(repetition_penalty=1.2)
        assert top1.sample(logits, history) == greedy_pen.sample(logits, history)
        assert greedy.sample(logits) == int(np.argmax(logits))


# ---------------------------------------------------------------------------
# seeded draws
# ---------------------------------------------------------------------------


def test_seeded_draws_are_pinned():
    s = _sampler(temperature=1.0, seed=1234)
    assert [s.sample(LOGITS_1234) for _ in range(20)] == [3, 2, 3, 1, 2, 1, 1, 2, 3, 1, 2, 3, 3, 3, 3, 3, 3, 1, 1, 3]
    again = _sampler(temperature=1.0, seed=1234)
    other = _sampler(temperature=1.0, seed=1235)
    first = [again.sample(LOGITS_1234) for _ in range(20)]
    assert first == [3, 2, 3, 1, 2, 1, 1, 2, 3, 1, 2, 3, 3, 3, 3, 3, 3, 1, 1, 3]
    assert [other.sample(LOGITS_1234) for _ in range(20)] == [1, 1, 2, 3, 3, 1, 1, 2, 0, 3, 2, 1, 2, 1, 1, 0, 3, 2, 3, 2]


def test_draw_is_inverse_cdf_of_pcg64():
    # Each draw is searchsorted(cdf, u) with u from Generator(PCG64(seed)).random().
    u = np.random.Generator(np.random.PCG64(99)).random(200)
    expected = np.searchsorted(np.cumsum([0.1, 0.2, 0.3, 0.4]), u, side="right").tolist()
    s = _sampler(temperature=1.0, seed=99)
    assert [s.sample(LOGITS_1234) for _ in range(200)] == expected


def test_draw_frequencies():
    s = _sampler(temperature=1.0, seed=7)
    counts = np.bincount([s.sample(LOGITS_1234) for _ in range(20000)], minlength=4) / 20000
    # binomial standard deviation at n=20000 is <= 0.0035; 4 sigma
    assert np.abs(counts - [0.1, 0.2, 0.3, 0.4]).max() < 0.014


def test_masked_tokens_are_never_drawn():
    logits = np.array([0.0, -np.inf, 0.0, -np.inf], dtype=np.float32)
    s = _sampler(temperature=2.0, seed=0)
    assert set(s.sample(logits) for _ in range(200)) == {0, 2}


# ---------------------------------------------------------------------------
# truncation: exactly which tokens survive
# ---------------------------------------------------------------------------


def _survivors(logits, history=(), **kw):
    ids, probs = _sampler(temperature=kw.pop("temperature", 1.0), **kw).candidates(logits, history)
    return ids.tolist(), probs


@pytest.mark.parametrize(
    "top_p,ids",
    [(0.4, [0]), (0.7, [0, 1]), (0.76, [0, 1, 2]), (0.95, [0, 1, 2, 3]), (1.0, [0, 1, 2, 3])],
)
def test_top_p_keeps_tokens_until_the_threshold_is_crossed(top_p, ids):
    got, probs = _survivors(LOGITS_HALF, top_p=top_p)
    assert got == ids
    expected = np.array([0.5, 0.25, 0.15, 0.1])[ids]
    np.testing.assert_allclose(probs, expected / expected.sum(), atol=PROB_TOL)


@pytest.mark.parametrize("min_p,ids", [(0.1, [0, 1, 2, 3]), (0.25, [0, 1, 2]), (0.35, [0, 1]), (0.6, [0])])
def test_min_p_keeps_tokens_at_least_min_p_times_the_best(min_p, ids):
    assert _survivors(LOGITS_HALF, min_p=min_p)[0] == ids


def test_top_k_ties_at_the_cut_go_to_the_lowest_ids():
    logits = np.array([1.0, 3.0, 2.0, 2.0, 2.0], dtype=np.float32)
    assert _survivors(logits, top_k=2)[0] == [1, 2]
    assert _survivors(logits, top_k=3)[0] == [1, 2, 3]
    assert _survivors(logits, top_k=9)[0] == [0, 1, 2, 3, 4]


def test_order_top_k_then_top_p_then_min_p():
    # top_k=3 renormalises 0.5/0.25/0.15 to 0.556/0.278/0.167; top_p=0.8 then stops at id 1.
    assert _survivors(LOGITS_HALF, top_k=3, top_p=0.8)[0] == [0, 1]
    # without top_k, 0.75 < 0.8 and id 2 is needed
    assert _survivors(LOGITS_HALF, top_p=0.8)[0] == [0, 1, 2]
    # min_p is applied to what top_p left, and is not changed by temperature
    assert _survivors(LOGITS_HALF, top_p=0.95, min_p=0.35, temperature=5.0)[0] == [0, 1]


def test_temperature_reweights_survivors():
    logits = np.array([0.0, math.log(2.0)], dtype=np.float32)
    _, probs = _survivors(logits, temperature=0.5)  # weights 1 : 2**2
    np.testing.assert_allclose(probs, [0.2, 0.8], atol=PROB_TOL)
    _, probs = _survivors(logits, temperature=2.0)  # weights 1 : 2**0.5
    np.testing.assert_allclose(probs, [1 / (1 + 2**0.5), 2**0.5 / (1 + 2**0.5)], atol=PROB_TOL)


# ---------------------------------------------------------------------------
# repetition penalty
# ---------------------------------------------------------------------------


def test_repetition_penalty_divides_positive_multiplies_negative():
    logits = np.array([2.0, -2.0, 0.0, 1.5, 3.0], dtype=np.float32)
    history = [0, 1, 2, 0]
    s = _sampler(repetition_penalty=2.0)
    np.testing.assert_array_equal(s.penalized(logits, history), [1.0, -4.0, 0.0, 1.5, 3.0])
    np.testing.assert_array_equal(logits, [2.0, -2.0, 0.0, 1.5, 3.0])  # caller's array untouched
    last1 = _sampler(repetition_penalty=2.0, repeat_last_n=1)
    np.testing.assert_array_equal(last1.penalized(logits, history), [1.0, -2.0, 0.0, 1.5, 3.0])
    last2 = _sampler(repetition_penalty=1.25, repeat_last_n=2)  # ids 2 and 0
    np.testing.assert_array_equal(last2.penalized(logits, history), np.float32([2.0 / 1.25, -2.0, 0.0, 1.5, 3.0]))  # float32 math
    whole = _sampler(repetition_penalty=2.0, repeat_last_n=-1)
    np.testing.assert_array_equal(whole.penalized(logits, [4] + [0] * 100), [1.0, -2.0, 0.0, 1.5, 1.5])
    off = _sampler(repetition_penalty=2.0, repeat_last_n=0)
    np.testing.assert_array_equal(off.penalized(logits, history), logits)


def test_repetition_penalty_changes_the_greedy_choice():
    logits = np.array([3.0, 2.0], dtype=np.float32)
    assert _sampler().sample(logits, [0]) == 0
    assert _sampler(repetition_penalty=2.0).sample(logits, [0]) == 1


# ---------------------------------------------------------------------------
# bad logits / history
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "logits,history,error,message",
    [
        # numbers a forward pass produced: a backend fault, not an argument error
        (np.array([0.0, np.nan], dtype=np.float32), (), BackendError, "logits contain NaN or +inf"),
        (np.array([0.0, np.inf], dtype=np.float32), (), BackendError, "logits contain NaN or +inf"),
        (np.full(3, -np.inf, dtype=np.float32), (), BackendError, "every logit is -inf"),
        (np.zeros((2, 3), dtype=np.float32), (), SamplingError,
         "logits must be a non-empty 1-D array (vocab,), got shape (2, 3)"),
        (np.zeros(3, dtype=np.float32), (0, 3), SamplingError, "history holds token id 3, outside the 3 logits"),
    ],
)
def test_bad_logits(logits, history, error, message):
    for temperature in (0.0, 1.0):
        with pytest.raises(error, match=re.escape(message)):
            _sampler(temperature=temperature, repetition_penalty=1.1).sample(logits, history)


def test_sampling_errors_are_argument_errors():
    """A bad sampling parameter is an InvalidArgumentError (and a ValueError), exported from edge_sdk."""
    import edge_sdk

    assert issubclass(SamplingError, edge_sdk.InvalidArgumentError) and issubclass(SamplingError, ValueError)
    for bad in ({"max_tokens": -1}, {"temperature": -1}, {"top_p": 2}):
        with pytest.raises(edge_sdk.InvalidArgumentError):
            SamplingParams(**bad)


@pytest.mark.parametrize("temperature", [1e-308, 5e-324])
def test_tiny_temperatures_pick_the_best_token(temperature):
    """Logits are shifted by their maximum before the division: the others go to -inf, never NaN."""
    s = Sampler(SamplingParams(temperature=temperature, seed=1))
    with np.errstate(all="raise"):
        assert [s.sample(np.array([0.0, 10.0, 3.0, -2.0], dtype=np.float32)) for _ in range(5)] == [1] * 5
