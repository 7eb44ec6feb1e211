"""Accuracy of the int8 model against the float model: perplexity and top-1 agreement.

The text is tokenized once and cut into non-overlapping windows of `window`
tokens; in each window every token after the first is predicted from the ones
before it (a fresh cache per window). Perplexity is exp(mean negative log
likelihood) over all predicted tokens. Top-1 agreement is the fraction of
positions where the int8 model's most likely next token equals the float
model's.

Example::

    r = evaluate(imported, text, QuantConfig(), window=512)
    r.perplexity, r.float_perplexity, r.top1_agreement
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .config import QuantConfig
from .int8_reference import Int8Forward
from .quantize import quantize_weights
from .reference import FloatForward, FloatOps
from ..errors import InvalidArgumentError

if TYPE_CHECKING:
    from ..importers import ImportedModel


class Int8Eval(Int8Forward):
    """The int8 products exactly, with numpy's own float reductions between them.

    Perplexity over thousands of tokens is about the cost of int8 against float, not about
    matching the native core bit for bit, and numpy's reductions are several times faster
    than the core's fixed order (`canonical.py`); the two differ at float rounding.
    """

    ops = FloatOps


@dataclass
class AccuracyReport:
    perplexity: float  # of the evaluated model (int8, or float with float_only)
    tokens: int  # predicted tokens
    top1_agreement: float | None  # int8 vs float; None with float_only
    float_perplexity: float | None
    window: int
    quant: dict | None
    backend: str = "numpy"
    kv_dtype: str = "f32"

    def to_dict(self) -> dict:
        return asdict(self)


def log_softmax_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Negative log likelihood (float64) of `targets` under each row of `logits`."""
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=-1))
    return lse - z[np.arange(len(targets)), targets]


EVAL_STEP = 64
"""Tokens per forward call inside a window (the cache carries the window's earlier tokens); progress is
reported after each step."""

Int8Runner = Callable[[Any, int], Any]
"""Makes the int8 model that is scored: (QWeights, ctx) -> an object with `forward(tokens, pos)` -> logits
(T, vocab), and optionally `close()`. A backend (`backends.native.backend.NativeBackend`) is one."""


def numpy_int8(cfg: Any, kv_dtype: str = "f32") -> Int8Runner:
    """The int8 products exactly, with numpy's float reductions (`Int8Eval`)."""
    return lambda qweights, ctx: Int8Eval(cfg, qweights, ctx=ctx, kv_dtype=kv_dtype)


def evaluate(m: ImportedModel, text: str, qcfg: QuantConfig | None = QuantConfig(), window: int = 512,
             max_tokens: int | None = None, float_only: bool = False, int8: Int8Runner | None = None,
             backend: str = "numpy", kv_dtype: str = "f32", quiet: bool = True) -> AccuracyReport:
    """Perplexity of the float model and of its int8 version, and their top-1 agreement.

    `int8`: what runs the int8 model (default `numpy_int8(cfg, kv_dtype)`); `backend` and `kv_dtype` name it
    in the report (the float model keeps an f32 cache). `quiet=False`: progress on stderr.
    """
    from ..progress import Progress

    ids = np.asarray(m.tokenizer.encode(text, add_bos=False), dtype=np.int64)
    if max_tokens:
        ids = ids[:max_tokens]
    window = min(window, m.config.max_ctx)
    if len(ids) < 2:
        raise InvalidArgumentError("the text is too short to measure perplexity (fewer than 2 tokens)")
    ffwd = FloatForward(m.config, m.weights, ctx=window)
    if int8 is None:
        int8 = numpy_int8(m.config, kv_dtype)
    qfwd = None if float_only else int8(quantize_weights(m.config, m.weights, qcfg, quiet=quiet), window)
    windows = [ids[s : s + window] for s in range(0, len(ids) - 1, window)]
    windows = [w for w in windows if len(w) >= 2]
    n_pred = sum(len(w) - 1 for w in windows)
    nll_f, nll_q, agree, n = 0.0, 0.0, 0, 0
    passes = [ffwd] if qfwd is None else [ffwd, qfwd]
    try:
        with Progress("perplexity", n_pred * len(passes), enabled=False if quiet else None) as p:
            for chunk in windows:
                inputs, targets = chunk[:-1], chunk[1:]
                logits = []
                for fwd in passes:
                    parts = []
                    for s in range(0, len(inputs), EVAL_STEP):
                        parts.append(np.array(fwd.forward(inputs[s : s + EVAL_STEP], s), dtype=np.float32))
                        p.update(len(parts[-1]))
                    logits.append(np.concatenate(parts))
                nll_f += float(log_softmax_nll(logits[0], targets).sum())
                if qfwd is not None:
                    nll_q += float(log_softmax_nll(logits[1], targets).sum())
                    agree += int((logits[1].argmax(-1) == logits[0].argmax(-1)).sum())
                n += len(targets)
    finally:
        if qfwd is not None and hasattr(qfwd, "close"):
            qfwd.close()
    fppl = float(np.exp(nll_f / n))
    if qfwd is None:
        return AccuracyReport(perplexity=fppl, tokens=n, top1_agreement=None, float_perplexity=fppl, window=window, quant=None)
    return AccuracyReport(perplexity=float(np.exp(nll_q / n)), tokens=n, top1_agreement=agree / n,
                          float_perplexity=fppl, window=window, quant=qcfg.to_dict(), backend=backend, kv_dtype=kv_dtype)
