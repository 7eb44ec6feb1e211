"""Import a Hugging Face LLaMA directory: config.json + safetensors (sharded too).

Weights are read with `safetensors` into numpy (never torch), each tensor by its
header dtype; BF16 tensors are widened to float32 from their raw bits (numpy has
no bfloat16). Only float weights (F32, F16, BF16) are accepted.

Example::

    cfg, weights = import_hf_dir("SmolLM2-135M-Instruct/")
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model.config import ModelConfig, RopeScaling
from ..errors import ModelFileError, UnsupportedModelError
from ..model.weights import FloatWeights, LayerWeights, check_weights

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


def _int_field(c: dict[str, Any], key: str, default: Any = None) -> int:
    """An integer config.json field (a float is accepted when it is a whole number: 2048.0).
    Absent or null: `default`, or KeyError when there is none."""
    v = c.get(key)
    if v is None:
        v = default if default is not None else c[key]
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**63:
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"field {key!r} should be an integer, got {v!r}")
    return v


def _float_field(d: dict[str, Any], key: str, default: float | None = None, where: str = "") -> float:
    v = d.get(key)
    if v is None:
        v = default if default is not None else d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"field {where}{key!r} should be a number, got {v!r}")
    return float(v)


def _rope_scaling(c: dict[str, Any], source: str) -> RopeScaling:
    rs = c.get("rope_scaling") or {}
    if not isinstance(rs, dict):
        raise ValueError(f"field 'rope_scaling' should be an object or null, got {rs!r}")
    kind = rs.get("rope_type", rs.get("type", "none")) if rs else "none"
    if kind in ("default", None):
        kind = "none"
    if kind == "linear":
        return RopeScaling(kind="linear", factor=_float_field(rs, "factor", where="rope_scaling."))
    if kind == "llama3":
        return RopeScaling(
            kind="llama3",
            factor=_float_field(rs, "factor", where="rope_scaling."),
            low_freq_factor=_float_field(rs, "low_freq_factor", 1.0, "rope_scaling."),
            high_freq_factor=_float_field(rs, "high_freq_factor", 4.0, "rope_scaling."),
            original_max_position=_int_field(rs, "original_max_position_embeddings", 8192),
        )
    if kind == "none":
        return RopeScaling()
    raise UnsupportedModelError(f"{source}: rope_scaling type {kind!r} is not supported (supported: linear, llama3)")


def config_from_hf(c: dict[str, Any], source: str) -> ModelConfig:
    """ModelConfig of a Hugging Face config.json (`c`); `source` is the model directory.

    A missing or malformed field raises ModelFileError naming `<source>/config.json` and the field;
    a config with values no LLaMA model has (0 heads, 10**9 layers, NaN rope_theta) likewise."""
    where = os.path.join(source, "config.json")
    if not isinstance(c, dict):
        raise ModelFileError(f"{where}: expected a JSON object, got {type(c).__name__}")
    archs = c.get("architectures") or []
    if not isinstance(archs, list):
        archs = [archs]
    if not any(a in SUPPORTED_ARCHITECTURES for a in archs if isinstance(a, str)) and c.get("model_type") != "llama":
        raise UnsupportedModelError(
            f"{source}: architecture {archs or c.get('model_type')!r} is not supported; "
            f"edge_sdk runs {', '.join(SUPPORTED_ARCHITECTURES)} (model_type 'llama') and GGUF files of architecture 'llama'"
        )
    for flag in ("attention_bias", "mlp_bias"):
        if c.get(flag):
            raise UnsupportedModelError(f"{source}: {flag}=true is not supported (LLaMA layers without biases only)")
    if c.get("hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"{source}: hidden_act {c.get('hidden_act')!r} is not supported (silu only)")
    if c.get("quantization_config"):
        qc = c["quantization_config"]
        method = qc.get("quant_method", "?") if isinstance(qc, dict) else qc
        raise UnsupportedModelError(f"{where}: pre-quantized checkpoints (quantization_config, quant_method {method!r}) "
                                    "are not supported; convert the float (F32/F16/BF16) checkpoint")
    try:
        n_heads = _int_field(c, "num_attention_heads")
        dim = _int_field(c, "hidden_size")
        if n_heads <= 0:
            raise ValueError(f"field 'num_attention_heads' should be positive, got {n_heads}")
        head_dim = _int_field(c, "head_dim") if c.get("head_dim") is not None else dim // n_heads
        n_kv = _int_field(c, "num_key_value_heads") if c.get("num_key_value_heads") is not None else n_heads
        tied = c.get("tie_word_embeddings", False)
        if not isinstance(tied, bool):
            raise ValueError(f"field 'tie_word_embeddings' should be true or false, got {tied!r}")
        return ModelConfig(
            vocab_size=_int_field(c, "vocab_size"),
            dim=dim,
            n_layers=_int_field(c, "num_hidden_layers"),
            n_heads=n_heads,
            n_kv_heads=n_kv,
            ffn_dim=_int_field(c, "intermediate_size"),
            head_dim=head_dim,
            rope_theta=_float_field(c, "rope_theta", 10000.0),
            rope_scaling=_rope_scaling(c, source),
            rms_eps=_float_field(c, "rms_norm_eps", 1e-6),
            max_ctx=_int_field(c, "max_position_embeddings", 2048),
            tied_embeddings=tied,
            name=str(c.get("_name_or_path", "")),
        )
    except KeyError as e:
        raise ModelFileError(f"{source}: config.json lacks the key {e.args[0]!r}") from None
    except ValueError as e:
        raise ModelFileError(f"{where}: {e}") from None
    except UnsupportedModelError as e:
        if str(e).startswith(source):
            raise
        raise ModelFileError(f"{where}: {e}") from None


# -- safetensors --------------------------------------------------------------------------------
# The `safetensors` library opens each file and checks its header (offsets that cover the data
# exactly, shapes that match them). Each tensor is then decoded by its own header dtype: the
# library reads F32 and F16; numpy has no bfloat16, so BF16 tensors are widened to float32 from
# their raw bits at the offsets of the header the library has just checked. A file may mix them.

STORED_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}  # the float dtypes read; BF16 as its raw bits


@dataclass(frozen=True)
class StoredTensor:
    """One tensor of a safetensors file; `read()` decodes it to float32."""

    path: str
    name: str
    dtype: str  # safetensors dtype name: F32, F16, BF16, I8, ...
    shape: tuple[int, ...]
    start: int  # absolute byte offset of its data in the file
    nbytes: int

    def read(self) -> np.ndarray:
        if self.dtype not in STORED_DTYPES:
            raise UnsupportedModelError(
                f"{self.path}: tensor {self.name} is stored as {self.dtype}; only float weights (F32, F16, BF16) "
                "are supported (integer, bool and FP8 tensors are quantized or not weights)")
        stored = np.dtype(STORED_DTYPES[self.dtype])
        raw = np.fromfile(self.path, dtype=stored, count=self.nbytes // stored.itemsize, offset=self.start)
        if raw.nbytes != self.nbytes:
            raise ModelFileError(f"{self.path}: tensor {self.name} is cut short (the file changed while it was read)")
        if self.dtype == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        return np.ascontiguousarray(raw, dtype=np.float32).reshape(self.shape)


def read_safetensors_header(path: str) -> dict[str, StoredTensor]:
    """The tensor table of a safetensors file, nothing read yet. The `safetensors` library checks the header
    (offsets that cover the data exactly and match the shapes); the offsets are then taken from that header
    (an 8-byte little-endian length, the JSON header, the data), parsed once per file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="np") as f:
            kinds = {name: (str(f.get_slice(name).get_dtype()), tuple(f.get_slice(name).get_shape())) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: corrupt or truncated safetensors file ({e})") from None
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    out = {}
    for name, (dtype, shape) in kinds.items():
        begin, end = header[name]["data_offsets"]
        out[name] = StoredTensor(path, name, dtype, shape, 8 + n + begin, end - begin)
    return out


def _shard_names(d: str) -> list[str]:
    index = os.path.join(d, "model.safetensors.index.json")
    if not os.path.exists(index):
        files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
        if not files:
            raise ModelFileError(f"{d}: no *.safetensors weights found (torch .bin checkpoints are not supported)")
        return files
    doc = read_json(index)
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict):
        raise ModelFileError(f"{index}: no weight_map object")
    for tensor, fname in weight_map.items():
        if not isinstance(fname, str) or os.path.basename(fname) != fname or fname in ("", ".", ".."):
            raise ModelFileError(f"{index}: weight_map entry {tensor!r} names {fname!r}, not a file name in the directory")
    return sorted(set(weight_map.values()))


def load_tensors(d: str) -> dict[str, StoredTensor]:
    """Every tensor of the directory's safetensors files (by the index when there is one), not yet read."""
    tensors: dict[str, StoredTensor] = {}
    for name in _shard_names(d):
        p = os.path.join(d, name)
        if not os.path.isfile(p):
            raise ModelFileError(f"{p}: shard listed in the index is missing")
        tensors.update(read_safetensors_header(p))
    return tensors


def import_hf_dir(path: str | os.PathLike, quiet: bool = True) -> tuple[ModelConfig, FloatWeights]:
    """Read a Hugging Face directory: its config and float32 weights (`quiet=False`: progress on stderr)."""
    from ..progress import Progress

    d = os.fspath(path)
    cfg = config_from_hf(read_json(os.path.join(d, "config.json")), d)
    tensors = load_tensors(d)

    def get(name: str) -> np.ndarray:
        if name not in tensors:
            raise ModelFileError(f"{d}: required tensor {name!r} is missing")
        return tensors[name].read()

    layers = []
    with Progress(f"reading {os.path.basename(os.path.abspath(d))}", cfg.n_layers, enabled=False if quiet else None) as p:
        for i in range(cfg.n_layers):
            layers.append(LayerWeights(**{f: get(f"model.layers.{i}.{n}") for f, n in LAYER_TENSORS.items()}))
            p.update(1)
    output = None
    if "lm_head.weight" in tensors and not cfg.tied_embeddings:
        output = get("lm_head.weight")
    elif not cfg.tied_embeddings:
        raise ModelFileError(f"{d}: lm_head.weight is missing and tie_word_embeddings is false")
    weights = FloatWeights(tok_embd=get("model.embed_tokens.weight"), layers=layers, out_norm=get("model.norm.weight"), output=output)
    check_weights(cfg, weights, d)
    return cfg, weights
