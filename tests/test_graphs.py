"""Graph records: split, tensors and their byte ranges, ops, K/V inputs and outputs, serialization."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge_sdk.model.config import ModelConfig, QuantConfig
from edge_sdk.errors import PackageError, PlanError
from edge_sdk.graphs import GraphSpec, SplitPolicy, build_graphs, specs_from_manifest
from edge_sdk.graphs.layout import weight_table
from edge_sdk.export.package import flatten_weights, write_weights_bin
from edge_sdk.model.quantize import quantize_weights
from edge_sdk.model.sizes import embed_weight_bytes, layer_weight_bytes
from tiny_models import tiny_weights

SMOLLM2 = ModelConfig(vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3, ffn_dim=1536,
                      rope_theta=100000.0, max_ctx=8192, tied_embeddings=True)
LAYER_OPS = ["rmsnorm", "linear_q8", "linear_q8", "linear_q8", "attention", "linear_q8", "add", "rmsnorm",
             "linear_q8", "linear_q8", "swiglu", "linear_q8", "add"]


def test_smollm2_split_by_layer_count():
    specs = build_graphs(SMOLLM2, QuantConfig(), SplitPolicy(layers_per_graph=8))
    assert [s.name for s in specs] == ["embed", "layers_0_8", "layers_8_16", "layers_16_24", "layers_24_30", "head"]
    assert [(s.first_layer, s.end_layer) for s in specs[1:-1]] == [(0, 8), (8, 16), (16, 24), (24, 30)]
    # one layer, groups of 32: norms 2*576*4 + wq 576*576 + 576*18*4 + wk,wv 2*(192*576 + 192*18*4)
    # + wo 373248 + gate,up 2*(1536*576 + 1536*18*4) + down 576*1536 + 576*48*4 = 3,985,920 bytes
    assert layer_weight_bytes(SMOLLM2, QuantConfig()) == 3_985_920
    assert [s.weight_bytes for s in specs] == [
        31_850_496, 8 * 3_985_920, 8 * 3_985_920, 8 * 3_985_920, 6 * 3_985_920, 31_850_496 + 2304]
    assert specs[0].weight_bytes == embed_weight_bytes(SMOLLM2, QuantConfig())  # 49152*576 + 49152*18*4
    assert [len(s.ops) for s in specs] == [1, 104, 104, 104, 78, 2]


def test_split_by_bytes_and_single_graph():
    per_layer = layer_weight_bytes(SMOLLM2, QuantConfig())
    specs = build_graphs(SMOLLM2, QuantConfig(), SplitPolicy(max_graph_bytes=3 * per_layer + 5))
    assert [s.name for s in specs[1:-1]] == [f"layers_{a}_{a + 3}" for a in range(0, 30, 3)]
    assert [s.name for s in build_graphs(SMOLLM2, QuantConfig(), SplitPolicy())] == ["embed", "layers_0_30", "head"]
    with pytest.raises(PlanError, match="3985920 weight bytes"):
        build_graphs(SMOLLM2, QuantConfig(), SplitPolicy(max_graph_bytes=per_layer - 1))


def test_weight_offsets_of_smollm2():
    t = weight_table(SMOLLM2, QuantConfig())
    assert (t["tok_embd.q"].offset, t["tok_embd.q"].nbytes) == (0, 28_311_552)  # 49152 * 576
    assert (t["tok_embd.scale"].offset, t["tok_embd.scale"].shape) == (28_311_552, (49152, 18))
    assert t["layers.0.attn_norm"].offset == 31_850_496  # + 49152 * 18 * 4
    assert t["layers.0.ffn_norm"].offset == 31_852_800  # + 576 * 4
    assert t["layers.0.wq.q"].offset == 31_855_104
    assert t["layers.0.wq.scale"].offset == 31_855_104 + 576 * 576
    assert t["layers.1.attn_norm"].offset == 31_850_496 + 3_985_920
    assert t["out_norm"].offset == 151_428_096 and "output.q" not in t  # tied head: no own matrix
    per_row = weight_table(SMOLLM2, QuantConfig(group_size=0))
    assert per_row["layers.0.wq.scale"].shape == (576, 1)
    assert per_row["layers.0.wq.q"].offset == 28_311_552 + 49152 * 4 + 2 * 2304


def test_weight_table_matches_the_package_writer(tmp_path, tiny_cfg):
    cfg = dataclasses.replace(tiny_cfg, ffn_dim=128)  # groups of 64 need 64 | ffn_dim
    weights = tiny_weights(cfg, seed=1)
    for q in (QuantConfig(), QuantConfig(group_size=0), QuantConfig(group_size=64)):
        written = write_weights_bin(str(tmp_path / "w.bin"), flatten_weights(quantize_weights(cfg, weights, q)))
        table = weight_table(cfg, q)
        assert list(table) == list(written)
        for name, e in written.items():
            assert (table[name].offset, list(table[name].shape), np.dtype(table[name].dtype).str) == \
                   (e["offset"], e["shape"], e["dtype"]), name


def test_layer_ops_and_cache_values(tiny_cfg):
    embed, layers, head = build_graphs(tiny_cfg, QuantConfig(), SplitPolicy())
    assert [op.kind for op in layers.ops] == LAYER_OPS * 2
    assert [v.name for v in layers.inputs] == ["x", "pos", "cos", "sin", "past_key.0", "past_value.0",
                                               "past_key.1", "past_value.1"]
    assert [v.name for v in layers.outputs] == ["x_out", "present_key.0", "present_value.0",
                                                "present_key.1", "present_value.1"]
    assert layers.inputs[4].shape == (1, 2, "ctx", 16) and layers.inputs[2].shape == ("ctx", 8)
    attn = layers.ops[4 + 13]
    assert attn.inputs == ("l1.q", "l1.k", "l1.v", "past_key.1", "past_value.1", "pos", "cos", "sin")
    assert attn.outputs == ("l1.attn", "present_key.1", "present_value.1")
    assert attn.attrs == {"n_heads": 4, "n_kv_heads": 2, "head_dim": 16, "rope": "rotate_half"}
    assert layers.ops[0].inputs == ("x", "layers.0.attn_norm") and layers.ops[-1].outputs == ("x_out",)
    assert layers.ops[12].outputs == ("l0.out",) and layers.ops[13].inputs[0] == "l0.out"
    assert layers.ops[11].attrs == {"rows": 64, "cols": 96, "group_size": 32, "act_block": 32}
    # every value an op reads is a graph input, a tensor, or an earlier op's output
    for spec in (embed, layers, head):
        known = {v.name for v in spec.inputs} | {t.name for t in spec.tensors}
        for op in spec.ops:
            assert set(op.inputs) <= known, (spec.name, op)
            known |= set(op.outputs)
        assert {v.name for v in spec.outputs} <= known
    assert [t.name for t in embed.tensors] == ["tok_embd.q", "tok_embd.scale"]
    assert [t.name for t in head.tensors] == ["out_norm", "output.q", "output.scale"]  # tiny_cfg is untied
    assert embed.outputs[0].shape == (1, "T", 64) and head.outputs[0].shape == (1, "T", 306)


def test_tied_head_reads_the_embedding_table(tiny_cfg):
    cfg = dataclasses.replace(tiny_cfg, tied_embeddings=True)
    embed, _, head = build_graphs(cfg, QuantConfig(), SplitPolicy())
    assert [t.name for t in head.tensors] == ["tok_embd.q", "tok_embd.scale", "out_norm"]
    assert head.tensors[0] == embed.tensors[0]  # the same bytes of weights.bin


def test_records_round_trip_and_reject_bad_entries(tiny_cfg):
    specs = build_graphs(tiny_cfg, QuantConfig(group_size=0), SplitPolicy(layers_per_graph=1))
    assert specs_from_manifest([s.to_dict() for s in specs]) == specs
    bad = specs[1].to_dict()
    bad["ops"][0]["kind"] = "conv2d"
    with pytest.raises(PackageError, match="conv2d"):
        GraphSpec.from_dict(bad)
    incomplete = specs[1].to_dict()
    del incomplete["tensors"]
    with pytest.raises(PackageError, match="layers_0_1.*incomplete"):
        GraphSpec.from_dict(incomplete)
