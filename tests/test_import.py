"""Importers: GGUF and Hugging Face give the same model; bad input gives a clear error."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import gguf
import numpy as np
import pytest

from edge_sdk.errors import ModelFileError, UnsupportedModelError
from edge_sdk.importers import import_model
from edge_sdk.importers.gguf_import import unpermute_rope_rows
from edge_sdk.model.reference import FloatForward
from tiny_models import permute_rope_rows, tiny_config, tiny_weights, write_gguf, write_hf_dir

# GGUF quantized types lose precision: worst element error allowed, relative to the tensor's max |w|
TYPE_TOLERANCE = {"F32": 0.0, "F16": 1e-3, "BF16": 8e-3, "Q8_0": 1e-2, "Q4_0": 0.15, "Q4_1": 0.1}


def test_rope_permutation_round_trips():
    w = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    p = permute_rope_rows(w, n_heads=2)
    # head 0 rows [0,1,2,3] -> interleaved halves [0,2,1,3]; head 1 likewise
    assert p[:, 0].tolist() == [0, 6, 3, 9, 12, 18, 15, 21]
    assert np.array_equal(unpermute_rope_rows(p, 2), w)


def test_gguf_and_hf_give_identical_weights_and_logits(tiny_gguf, tiny_hf_dir, tiny_float_weights):
    g = import_model(tiny_gguf)
    h = import_model(tiny_hf_dir)
    assert dataclasses.replace(g.config, name="") == h.config
    for a, b, orig in zip(g.weights.layers, h.weights.layers, tiny_float_weights.layers):
        for name in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down", "attn_norm", "ffn_norm"):
            assert np.array_equal(getattr(a, name), getattr(orig, name)), name
            assert np.array_equal(getattr(b, name), getattr(orig, name)), name
    toks = np.array([5, 17, 200, 3, 99])
    lg = FloatForward(g.config, g.weights, ctx=16).forward(toks, 0)
    lh = FloatForward(h.config, h.weights, ctx=16).forward(toks, 0)
    assert np.array_equal(lg, lh)
    assert g.tokenizer.encode("Hello world") == h.tokenizer.encode("Hello world")


@pytest.mark.parametrize("qtype", ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1"])
def test_gguf_quantized_types_dequantize(tmp_path, tiny_cfg, tiny_float_weights, tiny_vocab, qtype):
    path = write_gguf(str(tmp_path / f"m-{qtype}.gguf"), tiny_cfg, tiny_float_weights, tiny_vocab, qtype=qtype)
    m = import_model(path)
    types = {t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert qtype in types
    tol = TYPE_TOLERANCE[qtype]
    for a, b in zip(m.weights.layers, tiny_float_weights.layers):
        for name in ("wq", "wk", "w_down"):
            ref = getattr(b, name)
            err = np.abs(getattr(a, name) - ref).max() / np.abs(ref).max()
            assert err <= tol, (name, err)


def test_sharded_hf_dir(tmp_path, tiny_cfg, tiny_float_weights, tiny_vocab):
    d = write_hf_dir(str(tmp_path / "sharded"), tiny_cfg, tiny_float_weights, tiny_vocab, shards=3)
    assert len([f for f in os.listdir(d) if f.endswith(".safetensors")]) == 3
    m = import_model(d)
    assert np.array_equal(m.weights.layers[1].w_up, tiny_float_weights.layers[1].w_up)


def test_tied_embeddings_use_the_table_as_head(tmp_path, tiny_vocab):
    cfg = tiny_config(len(tiny_vocab["tokens"]), tied=True)
    w = tiny_weights(cfg, seed=1)
    m = import_model(write_gguf(str(tmp_path / "tied.gguf"), cfg, w, tiny_vocab))
    assert m.config.tied_embeddings and m.weights.output is None
    assert m.weights.head is m.weights.tok_embd


# -- bad input --------------------------------------------------------------------------------------

def test_missing_path():
    with pytest.raises(ModelFileError, match="no such file or directory"):
        import_model("/nonexistent/model.gguf")


def test_not_a_gguf_file(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelFileError, match=r"not a GGUF file .* supported inputs are GGUF files and Hugging Face directories"):
        import_model(p)


def test_truncated_gguf(tmp_path, tiny_gguf):
    data = open(tiny_gguf, "rb").read()
    for cut in (len(data) - 1000, 2000, 30):
        p = tmp_path / f"trunc{cut}.gguf"
        p.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match="truncated"):
            import_model(p)


@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_other_architecture_refused(tmp_path, tiny_cfg, tiny_float_weights, tiny_vocab, arch):
    p = write_gguf(str(tmp_path / f"{arch}.gguf"), tiny_cfg, tiny_float_weights, tiny_vocab, arch=arch)
    with pytest.raises(UnsupportedModelError, match=f"architecture '{arch}' is not supported; edge_sdk runs LLaMA"):
        import_model(p)


def test_missing_tensor(tmp_path, tiny_gguf, tiny_cfg):
    reader = gguf.GGUFReader(tiny_gguf)
    w = gguf.GGUFWriter(str(tmp_path / "missing.gguf"), "llama")
    for name, f in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        from edge_sdk.importers.gguf_meta import field_value

        val = field_value(f)
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_array(name, val)
        else:
            w.add_key_value(name, val, vtype)
    for t in reader.tensors:
        if t.name != "blk.1.ffn_up.weight":
            w.add_tensor(t.name, np.array(t.data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFileError, match="required tensor 'blk.1.ffn_up.weight' is missing"):
        import_model(tmp_path / "missing.gguf")


def test_wrong_shape_hf(tmp_path, tiny_hf_dir, tiny_cfg):
    d = tmp_path / "bad"
    shutil.copytree(tiny_hf_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 128
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match=r"tensor layer 0 w_gate has shape \(96, 64\), expected \(128, 64\)"):
        import_model(d)


def test_hf_other_architecture(tmp_path, tiny_hf_dir):
    d = tmp_path / "qwen"
    shutil.copytree(tiny_hf_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(architectures=["Qwen2ForCausalLM"], model_type="qwen2")
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match=r"\['Qwen2ForCausalLM'\].* is not supported"):
        import_model(d)


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelFileError, match="a directory without config.json"):
        import_model(tmp_path)


def test_corrupt_safetensors(tmp_path, tiny_hf_dir):
    d = tmp_path / "corrupt"
    shutil.copytree(tiny_hf_dir, d)
    st = d / "model.safetensors"
    st.write_bytes(st.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="corrupt or truncated safetensors"):
        import_model(d)
