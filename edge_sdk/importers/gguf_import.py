"""Import a LLaMA-architecture GGUF file into float32 weights.

Every tensor type that the `gguf` package can dequantize is accepted (F32,
F16, BF16, Q8_0, Q4_0, Q4_1, Q5_x, the K-quants...). GGUF stores the rows of
the Q and K projections permuted for llama.cpp's interleaved RoPE; we undo that
permutation so that the weights are in Hugging Face's layout and the same
"rotate_half" RoPE serves both importers. The permutation is the one in
llama.cpp's `convert_hf_to_gguf.py` (`LlamaModel.permute`).

Example::

    cfg, weights, meta = import_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..model.config import ModelConfig, RopeScaling
from ..errors import ModelFileError, UnsupportedModelError
from ..model.weights import FloatWeights, LayerWeights, check_weights, expected_shapes
from .gguf_meta import open_gguf, reader_metadata

SUPPORTED_ARCHS = ("llama",)

# LayerWeights field -> GGUF tensor name inside `blk.{i}.`
LAYER_TENSORS = {
    "attn_norm": "attn_norm",
    "wq": "attn_q",
    "wk": "attn_k",
    "wv": "attn_v",
    "wo": "attn_output",
    "ffn_norm": "ffn_norm",
    "w_gate": "ffn_gate",
    "w_up": "ffn_up",
    "w_down": "ffn_down",
}


def f32_value(v: float) -> float:
    """A float32 metadata value as the shortest decimal that rounds to it (1e-05, not 9.99999974e-06)."""
    if not np.isfinite(v) or v == 0:
        return float(v)
    return float(np.format_float_positional(np.float32(v), unique=True, trim="-") if abs(v) >= 1e-4 else np.format_float_scientific(np.float32(v), unique=True))


def config_from_gguf_metadata(meta: dict[str, Any], source: str = "model") -> ModelConfig:
    """Build a ModelConfig from GGUF metadata; unsupported architectures raise UnsupportedModelError."""
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise UnsupportedModelError(
            f"{source}: architecture {arch!r} is not supported; edge_sdk runs LLaMA-architecture models "
            f"(GGUF general.architecture in {SUPPORTED_ARCHS}, or Hugging Face LlamaForCausalLM)"
        )

    def key(name: str, default: Any = None, required: bool = True) -> Any:
        k = f"{arch}.{name}"
        if k in meta:
            return meta[k]
        if required and default is None:
            raise ModelFileError(f"{source}: GGUF metadata key {k!r} is missing")
        return default

    def typed(name: str, kind: type, default: Any = None, required: bool = True) -> Any:
        """key() checked to be an integer (kind=int) or a number (kind=float)."""
        v = key(name, default, required)
        if isinstance(v, list):
            raise UnsupportedModelError(f"{source}: GGUF metadata key '{arch}.{name}' holds one value per layer "
                                        f"({len(v)} values); models whose layers differ are not supported")
        ok = isinstance(v, int) if kind is int else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok:
            what = "an integer" if kind is int else "a number"
            raise ModelFileError(f"{source}: GGUF metadata key '{arch}.{name}' should be {what}, got {v!r}")
        return v

    n_heads = typed("attention.head_count", int)
    dim = typed("embedding_length", int)
    if n_heads <= 0 or dim <= 0:
        raise ModelFileError(f"{source}: invalid LLaMA config: embedding_length={dim} and attention.head_count={n_heads} "
                             "must be positive")
    head_dim = typed("attention.key_length", int, dim // n_heads)
    rot = typed("rope.dimension_count", int, head_dim)
    if rot != head_dim:
        raise UnsupportedModelError(f"{source}: partial rotary embeddings (rope.dimension_count={rot} < head_dim={head_dim}) are not supported")
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = typed("vocab_size", int, len(tokens) if isinstance(tokens, list) and tokens else None)
    scaling_factor: Any = None
    kind = key("rope.scaling.type", "none", required=False)
    if kind == "linear":
        scaling_factor = float(typed("rope.scaling.factor", float, 1.0, required=False))
    elif kind not in ("none", None):
        raise UnsupportedModelError(f"{source}: RoPE scaling type {kind!r} is not supported (supported: none, linear, llama3)")
    fields = dict(
        vocab_size=vocab,
        dim=dim,
        n_layers=typed("block_count", int),
        n_heads=n_heads,
        n_kv_heads=typed("attention.head_count_kv", int, n_heads, required=False),
        ffn_dim=typed("feed_forward_length", int),
        head_dim=head_dim,
        rope_theta=f32_value(typed("rope.freq_base", float, 10000.0, required=False)),
        rms_eps=f32_value(typed("attention.layer_norm_rms_epsilon", float, 1e-5, required=False)),
        max_ctx=typed("context_length", int, 2048, required=False),
        name=str(meta.get("general.name", "")),
    )
    try:
        scaling = RopeScaling() if scaling_factor is None else RopeScaling(kind="linear", factor=scaling_factor)
        return ModelConfig(rope_scaling=scaling, **fields)
    except UnsupportedModelError as e:
        # the header holds impossible values: a broken file rather than a model we do not run
        raise ModelFileError(f"{source}: {e} (from the GGUF metadata keys '{arch}.*')") from None


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation: interleaved pairs -> rotate_half halves, per head."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _dequantize(t: Any, source: str) -> np.ndarray:
    from gguf.quants import dequantize

    try:
        arr = dequantize(t.data, t.tensor_type)
    except NotImplementedError as e:
        raise UnsupportedModelError(f"{source}: tensor {t.name} has type {t.tensor_type.name}, which cannot be dequantized ({e})") from e
    except Exception as e:
        raise ModelFileError(f"{source}: tensor {t.name} could not be read, the file may be truncated ({type(e).__name__}: {e})") from e
    return np.ascontiguousarray(arr, dtype=np.float32)


def import_gguf(path: str | os.PathLike, quiet: bool = True) -> tuple[ModelConfig, FloatWeights, dict[str, Any]]:
    """Read a GGUF file: its config, float32 weights and metadata (for the tokenizer).

    `quiet=False` shows progress on standard error (`progress.Progress`)."""
    from ..progress import Progress

    source = os.fspath(path)
    with Progress(f"reading {os.path.basename(source)}", 1, enabled=False if quiet else None) as p:
        return _import_gguf(source, p)


def _import_gguf(source: str, p: Any) -> tuple[ModelConfig, FloatWeights, dict[str, Any]]:
    reader = open_gguf(source)
    meta = reader_metadata(reader)
    cfg = config_from_gguf_metadata(meta, source)
    p.total = 2 * cfg.n_layers + 1  # the header (done: about as long as all the layers), the layers, the rest
    p.update(cfg.n_layers)

    file_size = os.path.getsize(source)
    tensors = {}
    for t in reader.tensors:
        end = int(t.data_offset) + int(t.n_bytes)
        if end > file_size:
            raise ModelFileError(f"{source}: tensor {t.name} ends at byte {end} but the file has {file_size} bytes (truncated)")
        tensors[t.name] = t

    def get(name: str) -> np.ndarray:
        if name not in tensors:
            raise ModelFileError(f"{source}: required tensor {name!r} is missing")
        return _dequantize(tensors[name], source)

    shapes = expected_shapes(cfg)
    layers = []
    for i in range(cfg.n_layers):
        fields = {f: get(f"blk.{i}.{g}.weight") for f, g in LAYER_TENSORS.items()}
        for f in ("wq", "wk"):  # the un-permutation needs the head layout; check_weights checks the rest
            if fields[f].shape != shapes[f]:
                raise ModelFileError(f"{source}: tensor layer {i} {f} (blk.{i}.{LAYER_TENSORS[f]}.weight) has shape "
                                     f"{fields[f].shape}, expected {shapes[f]} from the config")
        fields["wq"] = unpermute_rope_rows(fields["wq"], cfg.n_heads)
        fields["wk"] = unpermute_rope_rows(fields["wk"], cfg.n_kv_heads)
        layers.append(LayerWeights(**fields))
        p.update(1)

    output = get("output.weight") if "output.weight" in tensors else None
    if "rope_freqs.weight" in tensors:
        factors = tuple(float(v) for v in get("rope_freqs.weight").ravel())
        if len(factors) != cfg.head_dim // 2:
            raise ModelFileError(f"{source}: rope_freqs has {len(factors)} values, expected head_dim/2={cfg.head_dim // 2}")
        bad = [v for v in factors if not np.isfinite(v) or v <= 0]
        if bad:
            raise ModelFileError(f"{source}: tensor rope_freqs.weight holds {len(bad)} values that are not finite "
                                 f"numbers > 0 (first: {bad[0]}); RoPE frequency factors divide the frequencies")
        cfg = ModelConfig.from_dict({**cfg.to_dict(), "rope_scaling": {"kind": "freq_factors", "freq_factors": factors}})
    weights = FloatWeights(tok_embd=get("token_embd.weight"), layers=layers, out_norm=get("output_norm.weight"), output=output)
    if output is None:
        cfg = ModelConfig.from_dict({**cfg.to_dict(), "tied_embeddings": True})
    check_weights(cfg, weights, source)
    p.update(1)
    return cfg, weights, meta
