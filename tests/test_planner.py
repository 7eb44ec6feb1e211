"""Arena planners with hand-computed offsets; the verifier on every plan and on broken ones."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from edge_sdk.plan.native_buffers import layer_buffers
from edge_sdk.model.config import ModelConfig
from edge_sdk.errors import PlanError
from edge_sdk.plan.arena import ArenaPlan, ArenaReport, PLANNERS, lower_bound, plan, plan_naive, report
from edge_sdk.plan.records import Buffer
from edge_sdk.plan.verify import verify

SMOLLM2 = ModelConfig(vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3, ffn_dim=1536,
                      rope_theta=100000.0, max_ctx=8192, tied_embeddings=True)


def planned(buffers, alignment, algorithm="greedy_by_size"):
    p = plan(buffers, alignment, algorithm)
    verify(buffers, p, alignment)
    return p


# Four buffers in a chain: a(100) ops 0-1, b(50) ops 1-2, c(200) ops 2-3, d(30) ops 3-4.
CHAIN = [Buffer("a", 100, 0, 1), Buffer("b", 50, 1, 2), Buffer("c", 200, 2, 3), Buffer("d", 30, 3, 4)]


def test_greedy_chain_alignment_1():
    # Size order c, a, b, d.
    # c -> 0.  a (ops 0-1) never meets c (2-3) -> 0.
    # b (1-2) meets a [0,100) and c [0,200): lowest free offset is 200.
    # d (3-4) meets only c [0,200) -> 200 (b at 200 is dead by op 3).
    p = planned(CHAIN, 1)
    assert dict(p.offsets) == {"a": 0, "b": 200, "c": 0, "d": 200}
    assert p.arena_bytes == 250  # b ends at 250
    assert p.offsets_for(CHAIN) == [0, 200, 0, 200]


def test_greedy_chain_alignment_64():
    # c -> 0, a -> 0; b must clear c's end 200 -> align 256; d clears c -> 256.
    p = planned(CHAIN, 64)
    assert dict(p.offsets) == {"a": 0, "b": 256, "c": 0, "d": 256}
    assert p.arena_bytes == 306  # b: 256 + 50


def test_naive_chain():
    # a 0..100, b at align(100)=128..178, c at 192..392, d at 448..478.
    p = planned(CHAIN, 64, "naive")
    assert dict(p.offsets) == {"a": 0, "b": 128, "c": 192, "d": 448}
    assert p.arena_bytes == 478
    assert planned(CHAIN, 1, "naive").arena_bytes == 380  # 100 + 50 + 200 + 30


def test_lower_bound_and_report_chain():
    # Live bytes per op: 0: a=100, 1: a+b=150, 2: b+c=250, 3: c+d=230, 4: d=30.
    assert lower_bound(CHAIN) == 250
    assert report(CHAIN, 1) == ArenaReport(arena_bytes=250, naive_bytes=380, lower_bound_bytes=250)
    assert report(CHAIN, 64) == ArenaReport(arena_bytes=306, naive_bytes=478, lower_bound_bytes=250)


def test_greedy_uses_the_gap_below_a_placed_buffer():
    # a(100) op 0, b(100) ops 0-2, c(80) ops 1-2.  a -> 0; b meets a -> 100;
    # c meets only b [100,200), and 0 + 80 <= 100: c goes below b at 0.
    bufs = [Buffer("a", 100, 0, 0), Buffer("b", 100, 0, 2), Buffer("c", 80, 1, 2)]
    p = planned(bufs, 1)
    assert dict(p.offsets) == {"a": 0, "b": 100, "c": 0}
    assert p.arena_bytes == 200 == lower_bound(bufs)


def test_greedy_is_a_heuristic_not_optimal():
    # a(40) op 1, b(30) ops 1-2, c(30) op 3, d(30) ops 2-3.  Ties keep input order: a, b, c, d.
    # a -> 0; b meets a -> 40; c meets nobody placed -> 0; d meets b [40,70) and c [0,30)
    # -> 30 collides with b, so 70.  Arena 100.
    # Lower bound 70 (op 1: a+b) is reachable: d at 0, c at 30 -- greedy misses it.
    bufs = [Buffer("a", 40, 1, 1), Buffer("b", 30, 1, 2), Buffer("c", 30, 3, 3), Buffer("d", 30, 2, 3)]
    p = planned(bufs, 1)
    assert dict(p.offsets) == {"a": 0, "b": 40, "c": 0, "d": 70}
    assert p.arena_bytes == 100
    assert lower_bound(bufs) == 70
    better = ArenaPlan("by hand", 1, MappingProxyType({"a": 0, "b": 40, "c": 30, "d": 0}), 70)
    verify(bufs, better, 1)


def test_zero_size_buffers_take_no_room():
    bufs = [Buffer("z", 0, 0, 5), Buffer("x", 64, 0, 5), Buffer("y", 64, 1, 2)]
    p = planned(bufs, 64)
    assert dict(p.offsets) == {"z": 0, "x": 0, "y": 64}
    assert p.arena_bytes == 128


def test_empty_plan():
    assert planned([], 64).arena_bytes == 0
    assert lower_bound([]) == 0


def test_every_planner_on_the_real_smollm2_trace():
    # Decode, ctx 512, 1 thread, one activation scale per 32 values. Sizes (bytes): xn/q/attn_out/o/fxn/d
    # 2304, xq/aq/fxq 576, k/v 768, att 512*4=2048, gate/up/h 1536*4=6144, hq 1536,
    # scales xs/as/fxs 576/32*4 = 72 and hs 1536/32*4 = 192.
    bufs = layer_buffers(SMOLLM2, 1, 512, 1, act_block=32)
    # Op 12 (h_quant) holds gate + up + h + hq + hs = 3 * 6144 + 1536 + 192 = 20160: the most bytes live
    # at once (gate and up stay live through op 12 because swiglu and h_quant run fused per token).
    assert lower_bound(bufs) == 20160
    greedy = planned(bufs, 64)
    assert greedy.arena_bytes == 20160  # everything else fits below or beside the FFN buffers
    # Naive: every size rounded up to 64 except the last one (d, 2304, already aligned):
    # 6*2304 + 3*576 + 3*128 + 192 + 2*768 + 2048 + 3*6144 + 1536 = 39680
    naive = planned(bufs, 64, "naive")
    assert naive.arena_bytes == 39680


@pytest.mark.parametrize("n_tokens", [1, 7, 64])
@pytest.mark.parametrize("ctx", [512, 2048, 8192])
@pytest.mark.parametrize("threads", [1, 4])
def test_bounds_hold_on_real_traces(n_tokens, ctx, threads):
    bufs = layer_buffers(SMOLLM2, n_tokens, ctx, threads, act_block=32)
    r = report(bufs, 64)
    assert r.lower_bound_bytes <= r.arena_bytes <= r.naive_bytes
    for name in PLANNERS:
        planned(bufs, 64, name)


def test_prefill_64_tokens_arena_is_the_ffn_peak():
    # gate, up and h are 64 * 1536 * 4 = 393216 bytes each, hq 64 * 1536 and hs 64 * 48 * 4; all live at op 12.
    r = report(layer_buffers(SMOLLM2, 64, 2048, 4, act_block=32), 64)
    assert r.lower_bound_bytes == r.arena_bytes == 3 * 393216 + 98304 + 12288


# ---------------------------------------------------------------------------
# The verifier catches broken plans
# ---------------------------------------------------------------------------


def test_verifier_catches_overlap():
    bad = ArenaPlan("by hand", 1, MappingProxyType({"a": 0, "b": 60, "c": 0, "d": 200}), 260)
    with pytest.raises(PlanError) as e:
        verify(CHAIN, bad, 1)
    assert str(e.value) == (
        "buffers 'a' [0, 100) ops 0-1 and 'b' [60, 110) ops 1-2 overlap in memory while both are alive"
    )


def test_verifier_allows_shared_bytes_when_lifetimes_do_not_meet():
    clash = ArenaPlan("by hand", 1, MappingProxyType({"a": 0, "b": 200, "c": 0, "d": 0}), 250)
    with pytest.raises(PlanError, match=r"'c' \[0, 200\) ops 2-3 and 'd' \[0, 30\) ops 3-4 overlap"):
        verify(CHAIN, clash, 1)  # c and d share op 3
    fine = ArenaPlan("by hand", 1, MappingProxyType({"a": 0, "b": 200, "c": 0, "d": 200}), 250)
    verify(CHAIN, fine, 1)  # a/c and b/d share bytes but never live together


def test_verifier_catches_misalignment():
    bad = ArenaPlan("by hand", 64, MappingProxyType({"a": 0, "b": 200, "c": 0, "d": 256}), 306)
    with pytest.raises(PlanError, match=r"buffer 'b' at offset 200 is not a multiple of the alignment 64"):
        verify(CHAIN, bad, 64)


def test_verifier_catches_small_arena_and_missing_buffers():
    small = ArenaPlan("by hand", 1, MappingProxyType({"a": 0, "b": 200, "c": 0, "d": 200}), 249)
    with pytest.raises(PlanError, match=r"buffer 'b' ends at 250, past the arena of 249 bytes"):
        verify(CHAIN, small, 1)
    partial = ArenaPlan("by hand", 1, MappingProxyType({"a": 0, "e": 0}), 100)
    with pytest.raises(PlanError, match=r"missing offsets for \['b', 'c', 'd'\], offsets for unknown buffers \['e'\]"):
        verify(CHAIN, partial, 1)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def test_bad_input_is_rejected():
    with pytest.raises(PlanError, match=r"unknown planner 'best'; choose one of \['greedy_by_size', 'naive'\]"):
        plan(CHAIN, 64, "best")
    with pytest.raises(PlanError, match=r"buffer name 'a' appears twice"):
        plan([Buffer("a", 1, 0, 0), Buffer("a", 1, 1, 1)])
    with pytest.raises(PlanError, match=r"negative size"):
        plan([Buffer("a", -1, 0, 0)])
    with pytest.raises(PlanError, match=r"lifetime \[3, 1\]"):
        plan_naive([Buffer("a", 1, 3, 1)])
    with pytest.raises(PlanError, match=r"alignment must be a positive"):
        plan(CHAIN, 0)
    with pytest.raises(PlanError, match=r"buffer 'zz' is not in this plan"):
        plan(CHAIN, 1).offsets_for([Buffer("zz", 1, 0, 0)])
