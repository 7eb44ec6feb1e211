"""Rotary position embedding tables.

The cos/sin tables are computed once in float64 and stored as float32
(ctx, head_dim/2); every backend (numpy, native, ONNX) reads the same table, so
RoPE scaling variants live in this one place. Rotation uses Hugging Face's
"rotate_half" pairing: element i rotates with element i + head_dim/2.

Scaling: "linear" divides positions by `factor`; "llama3" smooths the inverse
frequencies as in Llama 3.1 (transformers `_compute_llama3_parameters`);
"freq_factors" divides each inverse frequency by a stored factor (GGUF
`rope_freqs`, which is how llama3 scaling reaches GGUF files).
"""

from __future__ import annotations

import math

import numpy as np

from .config import ModelConfig
from ..errors import InvalidArgumentError


def inv_frequencies(cfg: ModelConfig) -> np.ndarray:
    """(head_dim/2,) float64 inverse frequencies after scaling."""
    hd = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    s = cfg.rope_scaling
    if s.kind == "linear":
        inv = inv / s.factor
    elif s.kind == "llama3":
        low_wavelen = s.original_max_position / s.low_freq_factor
        high_wavelen = s.original_max_position / s.high_freq_factor
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / s.factor, inv)
        smooth = (s.original_max_position / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
        smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv = np.where(medium, smoothed, scaled)
    elif s.kind == "freq_factors":
        inv = inv / np.asarray(s.freq_factors, dtype=np.float64)
    elif s.kind != "none":
        raise InvalidArgumentError(f"unknown RoPE scaling kind {s.kind!r}")
    return inv


def rope_table(cfg: ModelConfig, ctx: int) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin: (ctx, head_dim/2) float32 for positions 0..ctx-1."""
    angles = np.arange(ctx, dtype=np.float64)[:, None] * inv_frequencies(cfg)[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate x (T, n_heads, head_dim) by cos/sin (T, head_dim/2) of its positions."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)
