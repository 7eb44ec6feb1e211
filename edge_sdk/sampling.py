"""Moved: `edge_sdk.generate.sampling`. This module keeps `from edge_sdk.sampling import SamplingParams` (and
the other names) working for one release."""

from __future__ import annotations

from .generate.sampling import Sampler, SamplingError, SamplingParams

__all__ = ["Sampler", "SamplingError", "SamplingParams"]
