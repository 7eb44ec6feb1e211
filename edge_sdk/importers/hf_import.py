"""Import a Hugging Face LLaMA directory: config.json + safetensors (sharded too).

Weights are read with `safetensors` into numpy (never torch). BF16 tensors are
widened to float32 from their raw bits when numpy lacks a bfloat16 dtype.

Example::

    cfg, weights = import_hf_dir("SmolLM2-135M-Instruct/")
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..config import ModelConfig, RopeScaling
from ..errors import ModelFileError, UnsupportedModelError
from ..weights import FloatWeights, LayerWeights, check_weights

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)

# LayerWeights field -> tensor name inside `model.layers.{i}.`
LAYER_TENSORS = {
    "attn_norm": "input_layernorm.weight",
    "wq": "self_attn.q_proj.weight",
    "wk": "self_attn.k_proj.weight",
    "wv": "self_attn.v_proj.weight",
    "wo": "self_attn.o_proj.weight",
    "ffn_norm": "post_attention_layernorm.weight",
    "w_gate": "mlp.gate_proj.weight",
    "w_up": "mlp.up_proj.weight",
    "w_down": "mlp.down_proj.weight",
}


def read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: not valid JSON ({e})") from e


def config_from_hf(c: dict[str, Any], source: str) -> ModelConfig:
    archs = c.get("architectures") or []
    if not any(a in SUPPORTED_ARCHITECTURES for a in archs) and c.get("model_type") != "llama":
        raise UnsupportedModelError(
            f"{source}: architecture {archs or c.get('model_type')!r} is not supported; "
            f"edge_sdk runs {', '.join(SUPPORTED_ARCHITECTURES)} (model_type 'llama') and GGUF files of architecture 'llama'"
        )
    for flag in ("attention_bias", "mlp_bias"):
        if c.get(flag):
            raise UnsupportedModelError(f"{source}: {flag}=true is not supported (LLaMA layers without biases only)")
    if c.get("hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"{source}: hidden_act {c.get('hidden_act')!r} is not supported (silu only)")
    try:
        n_heads = int(c["num_attention_heads"])
        dim = int(c["hidden_size"])
        rs = c.get("rope_scaling") or {}
        kind = rs.get("rope_type", rs.get("type", "none")) if rs else "none"
        if kind in ("default", None):
            kind = "none"
        if kind == "linear":
            scaling = RopeScaling(kind="linear", factor=float(rs["factor"]))
        elif kind == "llama3":
            scaling = RopeScaling(
                kind="llama3",
                factor=float(rs["factor"]),
                low_freq_factor=float(rs.get("low_freq_factor", 1.0)),
                high_freq_factor=float(rs.get("high_freq_factor", 4.0)),
                original_max_position=int(rs.get("original_max_position_embeddings", 8192)),
            )
        elif kind == "none":
            scaling = RopeScaling()
        else:
            raise UnsupportedModelError(f"{source}: rope_scaling type {kind!r} is not supported (supported: linear, llama3)")
        return ModelConfig(
            vocab_size=int(c["vocab_size"]),
            dim=dim,
            n_layers=int(c["num_hidden_layers"]),
            n_heads=n_heads,
            n_kv_heads=int(c.get("num_key_value_heads") or n_heads),
            ffn_dim=int(c["intermediate_size"]),
            head_dim=int(c.get("head_dim") or dim // n_heads),
            rope_theta=float(c.get("rope_theta", 10000.0)),
            rope_scaling=scaling,
            rms_eps=float(c.get("rms_norm_eps", 1e-6)),
            max_ctx=int(c.get("max_position_embeddings", 2048)),
            tied_embeddings=bool(c.get("tie_word_embeddings", False)),
            name=str(c.get("_name_or_path", "")),
        )
    except KeyError as e:
        raise ModelFileError(f"{source}: config.json lacks the key {e.args[0]!r}") from None


def _read_bf16(path: str, names: set[str]) -> dict[str, np.ndarray]:
    """Read BF16 tensors from a safetensors file by their raw bits (numpy has no bfloat16)."""
    out = {}
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
        base = 8 + header_len
        for name in names:
            info = header[name]
            start, end = info["data_offsets"]
            f.seek(base + start)
            raw = np.frombuffer(f.read(end - start), dtype=np.uint16)
            out[name] = (raw.astype(np.uint32) << 16).view(np.float32).reshape(info["shape"])
    return out


def _load_safetensors(path: str) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except (SafetensorError, TypeError, ValueError) as e:
        if "bf16" in str(e).lower() or "bfloat16" in str(e).lower():
            from safetensors import safe_open

            with safe_open(path, framework="np") as f:
                names = set(f.keys())
            return _read_bf16(path, names)
        raise ModelFileError(f"{path}: corrupt or truncated safetensors file ({e})") from e


def load_tensors(d: str) -> dict[str, np.ndarray]:
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ModelFileError(f"{index}: no weight_map")
        files = sorted(set(weight_map.values()))
    else:
        files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
        if not files:
            raise ModelFileError(f"{d}: no *.safetensors weights found (torch .bin checkpoints are not supported)")
    tensors: dict[str, np.ndarray] = {}
    for name in files:
        p = os.path.join(d, name)
        if not os.path.exists(p):
            raise ModelFileError(f"{p}: shard listed in the index is missing")
        tensors.update(_load_safetensors(p))
    return tensors


def import_hf_dir(path: str | os.PathLike) -> tuple[ModelConfig, FloatWeights]:
    d = os.fspath(path)
    cfg = config_from_hf(read_json(os.path.join(d, "config.json")), d)
    tensors = load_tensors(d)

    def get(name: str) -> np.ndarray:
        if name not in tensors:
            raise ModelFileError(f"{d}: required tensor {name!r} is missing")
        return np.ascontiguousarray(tensors[name], dtype=np.float32)

    layers = [LayerWeights(**{f: get(f"model.layers.{i}.{n}") for f, n in LAYER_TENSORS.items()}) for i in range(cfg.n_layers)]
    output = None
    if "lm_head.weight" in tensors and not cfg.tied_embeddings:
        output = get("lm_head.weight")
    elif not cfg.tied_embeddings:
        raise ModelFileError(f"{d}: lm_head.weight is missing and tie_word_embeddings is false")
    weights = FloatWeights(tok_embd=get("model.embed_tokens.weight"), layers=layers, out_norm=get("model.norm.weight"), output=output)
    check_weights(cfg, weights, d)
    return cfg, weights
