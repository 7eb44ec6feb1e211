"""Plain configuration records shared by every stage of the pipeline.

`ModelConfig` describes a LLaMA-architecture model (what the importers produce
and every later stage reads); `QuantConfig` says how weights are quantized.
Both are frozen dataclasses that round-trip through JSON (the package manifest
stores them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidArgumentError, UnsupportedModelError


@dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling. `kind` is "none", "linear" or "llama3".

    linear: positions are divided by `factor`.
    llama3: the per-frequency smoothing of Llama 3.1
    (https://github.com/meta-llama/llama-models, `apply_scaling`).
    """

    kind: str = "none"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 8192
    freq_factors: tuple[float, ...] = ()  # per-frequency divisors (GGUF `rope_freqs`), head_dim/2 values


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a LLaMA-architecture decoder.

    Example::

        cfg = ModelConfig(vocab_size=49152, dim=576, n_layers=30, n_heads=9,
                          n_kv_heads=3, ffn_dim=1536)
        cfg.head_dim  # 64
    """

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    head_dim: int = 0  # 0 means dim // n_heads
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling = field(default_factory=RopeScaling)
    rms_eps: float = 1e-5
    max_ctx: int = 2048
    tied_embeddings: bool = False
    arch: str = "llama"
    name: str = ""

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.dim // max(self.n_heads, 1))
        problems = []
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "head_dim", "max_ctx"):
            if int(getattr(self, name)) <= 0:
                problems.append(f"{name}={getattr(self, name)} must be positive")
        if self.n_kv_heads > 0 and self.n_heads % self.n_kv_heads:
            problems.append(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            problems.append(f"head_dim={self.head_dim} must be even for RoPE")
        if problems:
            raise UnsupportedModelError("invalid LLaMA config: " + "; ".join(problems))

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def n_params(self) -> int:
        per_layer = (
            2 * self.dim
            + self.dim * self.q_dim * 2
            + self.dim * self.kv_dim * 2
            + 3 * self.dim * self.ffn_dim
        )
        head = 0 if self.tied_embeddings else self.vocab_size * self.dim
        return self.vocab_size * self.dim + self.n_layers * per_layer + self.dim + head

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        d = dict(d)
        rs = dict(d.get("rope_scaling", {}))
        rs["freq_factors"] = tuple(rs.get("freq_factors", ()))
        d["rope_scaling"] = RopeScaling(**rs)
        return cls(**d)


@dataclass(frozen=True)
class QuantConfig:
    """How weights and activations are quantized to int8.

    Weights: symmetric int8 with one float32 scale per output row
    (`group_size=0`) or per group of `group_size` consecutive input values.
    Activations: symmetric int8 computed at run time for each token, with one
    scale per block of `act_block` consecutive values (as llama.cpp's Q8_0
    does with 32). One scale for a whole token row costs SmolLM2-135M about 5%
    perplexity, because a few channels carry outliers; blocks of 32 cost
    under 0.5%. `group_size` must be 0 or a multiple of `act_block`.

    Example::

        QuantConfig(group_size=64)
    """

    group_size: int = 32  # 0 = per output row
    act_block: int = 32  # activation values per dynamic scale
    bits: int = 8

    def __post_init__(self) -> None:
        if self.bits != 8:
            raise InvalidArgumentError(f"only 8-bit weights are supported, got bits={self.bits}")
        if self.act_block < 1 or self.act_block % 4:
            raise InvalidArgumentError(f"act_block must be a positive multiple of 4, got {self.act_block}")
        if self.group_size < 0 or (self.group_size and self.group_size % self.act_block):
            raise InvalidArgumentError(
                f"group_size must be 0 (per row) or a positive multiple of act_block={self.act_block}, got {self.group_size}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "QuantConfig":
        return cls(**d)
