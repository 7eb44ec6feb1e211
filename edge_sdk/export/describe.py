"""What a model is, read from its metadata alone (no weights): a GGUF file, a Hugging Face directory or a
converted package.

`edge-sdk info`, the planner (`model_config`) and the benchmarks read models through it; it sits with the
package code because it reads every format the SDK writes or imports.

Example::

    d = describe("smollm2-135m")        # resolves a registered name (downloading it once)
    d["kind"], d["config"].n_layers, d["float_reference"]
"""

from __future__ import annotations

import os

from ..importers.registry import resolve


def describe(model: str | os.PathLike | None) -> dict:
    """What a model is, read from metadata only (no weights loaded): kind, path, config, quantization."""
    from ..model.config import QuantConfig
    from .package import is_package, package_config, package_graphs, read_manifest

    path = resolve(model)
    p = str(path)
    if is_package(p):
        from .package import package_generation

        m = read_manifest(p)
        cfg, qcfg = package_config(p, m)
        return {"kind": "package", "path": p, "config": cfg, "quant": qcfg, "graphs": package_graphs(p, m),
                "format_version": m["format_version"], "generation_defaults": package_generation(p, m),
                "source": m.get("source", "")}
    if path.is_dir():
        from ..importers import hf_generation_defaults
        from ..importers.hf_import import config_from_hf, read_json

        return {"kind": "huggingface", "path": p, "config": config_from_hf(read_json(os.path.join(p, "config.json")), p),
                "quant": QuantConfig(), "generation_defaults": hf_generation_defaults(p)}
    from ..importers.gguf_import import config_from_gguf_metadata
    from ..importers.gguf_meta import open_gguf, reader_metadata

    reader = open_gguf(p)
    meta = reader_metadata(reader)
    cfg = config_from_gguf_metadata(meta, p)
    names = {t.name for t in reader.tensors}
    if "output.weight" not in names:
        from ..model.config import ModelConfig

        cfg = ModelConfig.from_dict({**cfg.to_dict(), "tied_embeddings": True})
    from ..model.sampling_params import generation_defaults_from_gguf

    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return {"kind": "gguf", "path": p, "config": cfg, "quant": QuantConfig(), "tensor_types": types,
            "tokenizer_model": meta.get("tokenizer.ggml.model"), "tokenizer_pre": meta.get("tokenizer.ggml.pre"),
            "has_chat_template": "tokenizer.chat_template" in meta,
            "generation_defaults": generation_defaults_from_gguf(meta, p),
            "float_reference": float_reference_note(types)}


FLOAT_TENSOR_TYPES = ("F32", "F16", "BF16", "F64")


def float_reference_note(tensor_types: dict[str, int]) -> str:
    """What "float" means for a GGUF file: its weights as stored, or a quantized file's values dequantized.

    Example::

        float_reference_note({"Q4_1": 210, "Q8_0": 1, "F32": 61})
        # 'the Q4_1 and Q8_0 values dequantized to float32 (int8 re-quantizes them)'
    """
    quantized = sorted(t for t in tensor_types if t not in FLOAT_TENSOR_TYPES)
    if not quantized:
        return "the file's float weights"
    return f"the {' and '.join(quantized)} values dequantized to float32 (int8 re-quantizes them)"


def model_config(model: str | os.PathLike | None):
    """(ModelConfig, QuantConfig) of a model without loading its weights."""
    d = describe(model)
    return d["config"], d["quant"]
