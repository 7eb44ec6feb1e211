"""Tiny random LLaMA models written as GGUF files and Hugging Face directories.

Both writers take the same float weights (Hugging Face layout), so a test can
check that the two importers agree. The GGUF writer applies llama.cpp's Q/K
row permutation, exactly as llama.cpp's converter does.
"""

from __future__ import annotations

import json
import os

import gguf
import numpy as np
from safetensors.numpy import save_file

from edge_sdk.model.config import ModelConfig
from edge_sdk.model.weights import FloatWeights, LayerWeights

TINY_DIMS = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, max_ctx=128, rope_theta=10000.0, rms_eps=1e-5)


def tiny_config(vocab_size: int, tied: bool = False, **over) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, tied_embeddings=tied, **{**TINY_DIMS, **over})


def tiny_weights(cfg: ModelConfig, seed: int = 0) -> FloatWeights:
    """Random weights with scales that keep activations O(1) through the layers."""
    rng = np.random.default_rng(seed)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm() -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(cfg.dim)).astype(np.float32)

    layers = [
        LayerWeights(
            attn_norm=norm(),
            wq=mat(cfg.q_dim, cfg.dim),
            wk=mat(cfg.kv_dim, cfg.dim),
            wv=mat(cfg.kv_dim, cfg.dim),
            wo=mat(cfg.dim, cfg.q_dim),
            ffn_norm=norm(),
            w_gate=mat(cfg.ffn_dim, cfg.dim),
            w_up=mat(cfg.ffn_dim, cfg.dim),
            w_down=mat(cfg.dim, cfg.ffn_dim),
        )
        for _ in range(cfg.n_layers)
    ]
    emb = rng.standard_normal((cfg.vocab_size, cfg.dim)).astype(np.float32)
    out = None if cfg.tied_embeddings else mat(cfg.vocab_size, cfg.dim)
    return FloatWeights(tok_embd=emb, layers=layers, out_norm=norm(), output=out)


def permute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's converter permutation (convert_hf_to_gguf.py, LlamaModel.permute)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: str, cfg: ModelConfig, w: FloatWeights, vocab: dict | None, qtype: str = "F32", arch: str = "llama",
               extra_kv: dict | None = None) -> str:
    """Write a GGUF file; qtype is a gguf.GGMLQuantizationType name for the 2-D weights (F32, F16, Q8_0, ...).

    `extra_kv`: more metadata, key -> float (written as float32) or int (uint32)."""
    from tiny_vocab import write_tiny_gguf_tokenizer

    qt = gguf.GGMLQuantizationType[qtype]
    wr = gguf.GGUFWriter(path, arch)
    wr.add_name("tiny-llama")
    wr.add_block_count(cfg.n_layers)
    wr.add_context_length(cfg.max_ctx)
    wr.add_embedding_length(cfg.dim)
    wr.add_feed_forward_length(cfg.ffn_dim)
    wr.add_head_count(cfg.n_heads)
    wr.add_head_count_kv(cfg.n_kv_heads)
    wr.add_rope_freq_base(cfg.rope_theta)
    wr.add_rope_dimension_count(cfg.head_dim)
    wr.add_layer_norm_rms_eps(cfg.rms_eps)
    wr.add_vocab_size(cfg.vocab_size)
    if vocab is not None:
        write_tiny_gguf_tokenizer(wr, vocab)
    for key, value in (extra_kv or {}).items():
        (wr.add_float32 if isinstance(value, float) else wr.add_uint32)(key, value)

    def add(name: str, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim == 1 or qt == gguf.GGMLQuantizationType.F32:
            wr.add_tensor(name, arr)
        elif qt == gguf.GGMLQuantizationType.F16:
            wr.add_tensor(name, arr.astype(np.float16))
        else:
            wr.add_tensor(name, gguf.quants.quantize(arr, qt), raw_dtype=qt)  # shape derived from the bytes

    add("token_embd.weight", w.tok_embd)
    for i, lw in enumerate(w.layers):
        add(f"blk.{i}.attn_norm.weight", lw.attn_norm)
        add(f"blk.{i}.attn_q.weight", permute_rope_rows(lw.wq, cfg.n_heads))
        add(f"blk.{i}.attn_k.weight", permute_rope_rows(lw.wk, cfg.n_kv_heads))
        add(f"blk.{i}.attn_v.weight", lw.wv)
        add(f"blk.{i}.attn_output.weight", lw.wo)
        add(f"blk.{i}.ffn_norm.weight", lw.ffn_norm)
        add(f"blk.{i}.ffn_gate.weight", lw.w_gate)
        add(f"blk.{i}.ffn_up.weight", lw.w_up)
        add(f"blk.{i}.ffn_down.weight", lw.w_down)
    add("output_norm.weight", w.out_norm)
    if w.output is not None:
        add("output.weight", w.output)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path


def write_hf_dir(d: str, cfg: ModelConfig, w: FloatWeights, vocab: dict | None, shards: int = 1) -> str:
    """Write config.json, (sharded) model.safetensors and the tokenizer files."""
    from tiny_vocab import write_tiny_hf_tokenizer

    os.makedirs(d, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "max_position_embeddings": cfg.max_ctx,
        "rms_norm_eps": cfg.rms_eps,
        "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": cfg.tied_embeddings,
        "hidden_act": "silu",
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    tensors = {"model.embed_tokens.weight": w.tok_embd, "model.norm.weight": w.out_norm}
    if w.output is not None:
        tensors["lm_head.weight"] = w.output
    names = {"attn_norm": "input_layernorm", "wq": "self_attn.q_proj", "wk": "self_attn.k_proj", "wv": "self_attn.v_proj",
             "wo": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm", "w_gate": "mlp.gate_proj",
             "w_up": "mlp.up_proj", "w_down": "mlp.down_proj"}
    for i, lw in enumerate(w.layers):
        for field, n in names.items():
            tensors[f"model.layers.{i}.{n}.weight"] = getattr(lw, field)
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    if shards == 1:
        save_file(tensors, os.path.join(d, "model.safetensors"))
    else:
        keys = sorted(tensors)
        weight_map = {}
        for s in range(shards):
            part = keys[s::shards]
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            save_file({k: tensors[k] for k in part}, os.path.join(d, fname))
            weight_map.update({k: fname for k in part})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f)
    if vocab is not None:
        write_tiny_hf_tokenizer(d, vocab)
    return d
