"""Float weights of a LLaMA model, as the importers produce them.

All matrices are float32 in (out_features, in_features) order, the layout of
Hugging Face checkpoints; Q and K rows are in Hugging Face's "rotate_half"
RoPE order (GGUF files store them permuted and the GGUF importer undoes it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import ModelConfig
from ..errors import ModelFileError

LINEAR_NAMES = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


@dataclass
class LayerWeights:
    attn_norm: np.ndarray  # (dim,)
    wq: np.ndarray  # (n_heads * head_dim, dim)
    wk: np.ndarray  # (n_kv_heads * head_dim, dim)
    wv: np.ndarray  # (n_kv_heads * head_dim, dim)
    wo: np.ndarray  # (dim, n_heads * head_dim)
    ffn_norm: np.ndarray  # (dim,)
    w_gate: np.ndarray  # (ffn_dim, dim)
    w_up: np.ndarray  # (ffn_dim, dim)
    w_down: np.ndarray  # (dim, ffn_dim)


@dataclass
class FloatWeights:
    tok_embd: np.ndarray  # (vocab_size, dim)
    layers: list[LayerWeights]
    out_norm: np.ndarray  # (dim,)
    output: np.ndarray | None  # (vocab_size, dim); None when tied to tok_embd

    @property
    def head(self) -> np.ndarray:
        """The output projection: `output`, or the embedding table when tied."""
        return self.tok_embd if self.output is None else self.output


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Shape of each per-layer tensor, by LayerWeights field name."""
    d, f = cfg.dim, cfg.ffn_dim
    return {
        "attn_norm": (d,),
        "wq": (cfg.q_dim, d),
        "wk": (cfg.kv_dim, d),
        "wv": (cfg.kv_dim, d),
        "wo": (d, cfg.q_dim),
        "ffn_norm": (d,),
        "w_gate": (f, d),
        "w_up": (f, d),
        "w_down": (d, f),
    }


def check_weights(cfg: ModelConfig, w: FloatWeights, source: str) -> None:
    """Raise ModelFileError naming the first tensor whose shape disagrees with the config."""

    def need(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
        if tuple(arr.shape) != shape:
            raise ModelFileError(f"{source}: tensor {name} has shape {tuple(arr.shape)}, expected {shape} from the config")
        if not np.all(np.isfinite(arr)):
            raise ModelFileError(f"{source}: tensor {name} holds NaN or infinite values")

    need("token embedding", w.tok_embd, (cfg.vocab_size, cfg.dim))
    need("output norm", w.out_norm, (cfg.dim,))
    if w.output is not None:
        need("output", w.output, (cfg.vocab_size, cfg.dim))
    if len(w.layers) != cfg.n_layers:
        raise ModelFileError(f"{source}: found {len(w.layers)} layers, config says {cfg.n_layers}")
    shapes = expected_shapes(cfg)
    for i, layer in enumerate(w.layers):
        for name, shape in shapes.items():
            need(f"layer {i} {name}", getattr(layer, name), shape)
