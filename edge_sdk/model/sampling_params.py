"""How tokens are chosen, as a checked record (`SamplingParams`), and the defaults a model file gives for it.

A record of settings, like `config.QuantConfig`: every stage may hold one; `generate.sampling.Sampler` applies
it. The model files' own defaults (GGUF `general.sampling.*`, Hugging Face `generation_config.json`) are read
by the importers and kept in packages; a call's own arguments win over them.

Example::

    SamplingParams(temperature=0.8, top_k=40, top_p=0.95, seed=1, stop=["\\n\\n"])
    generation_defaults_from_gguf({"general.sampling.temp": 0.6}, "m.gguf")   # {'temperature': 0.6}
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import SamplingError


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
