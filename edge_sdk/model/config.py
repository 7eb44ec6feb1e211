"""Plain configuration records shared by every stage of the pipeline.

`ModelConfig` describes a LLaMA-architecture model (what the importers produce
and every later stage reads); `QuantConfig` says how weights are quantized.
Both are frozen dataclasses that round-trip through JSON (the package manifest
stores them).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgumentError, UnsupportedModelError

# Upper bounds of a ModelConfig. No LLaMA-family model comes near them (Llama 3.1 405B has
# 126 layers, dim 16384, FFN 53248, 128 heads, vocab 128256 and 131072 positions), and they keep
# every size computed from a config (parameter counts, layer lists, memory plans) small enough to
# compute at once, so a corrupt header fails here instead of hanging a later stage.
MAX_LAYERS = 4096
MAX_DIM = 2**20  # dim, ffn_dim, head_dim
MAX_HEADS = 2**14  # n_heads, n_kv_heads
MAX_VOCAB = 2**22
MAX_CTX = 2**24  # max_ctx, rope_scaling.original_max_position
ROPE_KINDS = ("none", "linear", "llama3", "freq_factors")

_INT_LIMITS = {
    "vocab_size": MAX_VOCAB, "dim": MAX_DIM, "n_layers": MAX_LAYERS, "n_heads": MAX_HEADS,
    "n_kv_heads": MAX_HEADS, "ffn_dim": MAX_DIM, "head_dim": MAX_DIM, "max_ctx": MAX_CTX,
}


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _positive_float(name: str, v: Any, problems: list[str]) -> float:
    """`v` as a float when it is a finite number > 0; else a problem is recorded (and `v` returned as is)."""
    if not _is_real(v):
        problems.append(f"{name}={v!r} must be a number")
        return v
    f = float(v)
    if not math.isfinite(f) or f <= 0:
        problems.append(f"{name}={v!r} must be a finite number > 0")
    return f


@dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling. `kind` is "none", "linear", "llama3" or "freq_factors".

    linear: positions are divided by `factor`.
    llama3: the per-frequency smoothing of Llama 3.1
    (https://github.com/meta-llama/llama-models, `apply_scaling`).
    freq_factors: each inverse frequency is divided by its factor (GGUF `rope_freqs`).

    Every factor must be a finite number > 0 (UnsupportedModelError otherwise).
    """

    kind: str = "none"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 8192
    freq_factors: tuple[float, ...] = ()  # per-frequency divisors (GGUF `rope_freqs`), head_dim/2 values

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise UnsupportedModelError("invalid RoPE scaling: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """What is wrong with this scaling (empty when valid); normalizes the number fields to float."""
        problems: list[str] = []
        if self.kind not in ROPE_KINDS:
            problems.append(f"kind={self.kind!r} is not one of {', '.join(ROPE_KINDS)}")
        for name in ("factor", "low_freq_factor", "high_freq_factor"):
            object.__setattr__(self, name, _positive_float(f"rope_scaling.{name}", getattr(self, name), problems))
        if self.kind == "llama3" and not problems and self.high_freq_factor <= self.low_freq_factor:
            problems.append(f"rope_scaling.high_freq_factor={self.high_freq_factor} must exceed "
                            f"low_freq_factor={self.low_freq_factor}")
        p = self.original_max_position
        if not _is_int(p) or not 0 < p <= MAX_CTX:
            problems.append(f"rope_scaling.original_max_position={p!r} must be an integer in 1..{MAX_CTX}")
        if not isinstance(self.freq_factors, tuple):
            problems.append("rope_scaling.freq_factors must be a sequence of numbers")
        else:
            bad = [v for v in self.freq_factors if not _is_real(v) or not math.isfinite(v) or v <= 0]
            if bad:
                problems.append(f"rope_scaling.freq_factors holds {len(bad)} values that are not finite numbers > 0 "
                                f"(first: {bad[0]!r})")
        if self.kind == "freq_factors" and not self.freq_factors:
            problems.append("rope_scaling kind 'freq_factors' needs freq_factors")
        return problems


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
        """Check every field: integers in 1..limit (see MAX_LAYERS and the other bounds above), finite
        positive floats, a known architecture; raise UnsupportedModelError listing every problem."""
        problems = []
        for name, limit in _INT_LIMITS.items():
            v = getattr(self, name)
            if name == "head_dim" and _is_int(v) and v == 0:
                continue  # derived below
            if not _is_int(v):
                problems.append(f"{name}={v!r} must be an integer")
            elif v <= 0:
                problems.append(f"{name}={v} must be positive")
            elif v > limit:
                problems.append(f"{name}={v} exceeds the limit {limit}")
            else:
                object.__setattr__(self, name, int(v))
        if not problems and self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)
            if self.head_dim <= 0:
                problems.append(f"head_dim={self.head_dim} must be positive (dim={self.dim} < n_heads={self.n_heads})")
        if not problems:
            if self.n_heads % self.n_kv_heads:
                problems.append(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
            if self.head_dim % 2:
                problems.append(f"head_dim={self.head_dim} must be even for RoPE")
        object.__setattr__(self, "rope_theta", _positive_float("rope_theta", self.rope_theta, problems))
        object.__setattr__(self, "rms_eps", _positive_float("rms_eps", self.rms_eps, problems))
        if not isinstance(self.rope_scaling, RopeScaling):
            problems.append(f"rope_scaling must be a RopeScaling, got {type(self.rope_scaling).__name__}")
        elif (self.rope_scaling.kind == "freq_factors" and _is_int(self.head_dim)
              and len(self.rope_scaling.freq_factors) != self.head_dim // 2):
            problems.append(f"rope_scaling.freq_factors has {len(self.rope_scaling.freq_factors)} values, "
                            f"expected head_dim/2={self.head_dim // 2}")
        if not isinstance(self.tied_embeddings, bool):
            problems.append(f"tied_embeddings={self.tied_embeddings!r} must be true or false")
        if self.arch != "llama":
            problems.append(f"arch={self.arch!r} is not supported (llama only)")
        if not isinstance(self.name, str):
            problems.append(f"name={self.name!r} must be a string")
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
        """The inverse of `to_dict`. Unknown or missing keys raise TypeError, a non-dict
        `rope_scaling` or `freq_factors` TypeError, invalid values UnsupportedModelError."""
        if not isinstance(d, dict):
            raise TypeError(f"a model config must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        rs = d.get("rope_scaling", {})
        if not isinstance(rs, dict):
            raise TypeError(f"rope_scaling must be a JSON object, got {type(rs).__name__}")
        rs = dict(rs)
        ff = rs.get("freq_factors", ())
        if not isinstance(ff, (list, tuple)):
            raise TypeError(f"rope_scaling.freq_factors must be a list, got {type(ff).__name__}")
        rs["freq_factors"] = tuple(ff)
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
