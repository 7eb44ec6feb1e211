"""The layer buffer trace of the native core, as seen from Python."""

from __future__ import annotations

import doctest

import pytest

from edge_sdk.plan import native_buffers
from edge_sdk.plan.native_buffers import BUFFER_NAMES, N_OPS, arena_bytes, layer_buffers, sequential_offsets
from edge_sdk.model.config import ModelConfig
from edge_sdk.errors import PlanError

SMOLLM2 = ModelConfig(vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3, ffn_dim=1536)


def test_smollm2_decode_sizes_and_lifetimes():
    bufs = layer_buffers(SMOLLM2, n_tokens=1, ctx=512, n_threads=2)
    assert [b.name for b in bufs] == list(BUFFER_NAMES)
    # act_block 32: 576/32 = 18 scales per token for xs, as, fxs; 1536/32 = 48 for hs
    assert [b.size_bytes for b in bufs] == [
        2304, 576, 72, 2304, 768, 768, 4096, 2304, 576, 72, 2304,
        2304, 576, 72, 6144, 6144, 6144, 1536, 192, 2304,
    ]
    assert [(b.first_use, b.last_use) for b in bufs] == [
        (0, 1), (1, 2), (1, 2), (2, 4), (2, 3), (2, 3), (4, 4), (4, 5), (5, 6), (5, 6), (6, 9),
        (8, 9), (9, 10), (9, 10), (10, 12), (10, 12), (11, 12), (12, 13), (12, 13), (13, 14),
    ]
    assert all(0 <= b.first_use <= b.last_use < N_OPS for b in bufs)


def test_prefill_sizes_scale_with_tokens_and_att_with_threads():
    bufs = {b.name: b.size_bytes for b in layer_buffers(SMOLLM2, n_tokens=64, ctx=100, n_threads=3, act_block=0)}
    assert bufs["gate"] == 64 * 1536 * 4
    assert bufs["hq"] == 64 * 1536
    assert bufs["xs"] == 64 * 4  # act_block 0: one scale per token
    # one row of 100 floats per thread, each row padded to 64 bytes (400 -> 448)
    assert bufs["att"] == 3 * 448


def test_sequential_offsets_exact():
    bufs = layer_buffers(SMOLLM2, n_tokens=1, ctx=512, n_threads=2)
    offs = sequential_offsets(bufs)
    assert offs == [
        0, 2304, 2880, 3008, 5312, 6080, 6848, 10944, 13248, 13824, 13952,
        16256, 18560, 19136, 19264, 25408, 31552, 37696, 39232, 39424,
    ]
    assert all(o % 64 == 0 for o in offs)
    assert arena_bytes(bufs, offs) == 41728


def test_bad_arguments_raise():
    with pytest.raises(PlanError, match="n_tokens"):
        layer_buffers(SMOLLM2, 0, 512, 1)
    with pytest.raises(PlanError, match="n_threads"):
        layer_buffers(SMOLLM2, 1, 512, 0)
    with pytest.raises(PlanError, match="act_block=40"):
        layer_buffers(SMOLLM2, 1, 512, 1, act_block=40)
    with pytest.raises(PlanError, match="2 buffers but 1 offsets"):
        arena_bytes(layer_buffers(SMOLLM2, 1, 8, 1)[:2], [0])


def test_docstring_examples():
    assert doctest.testmod(native_buffers).failed == 0
