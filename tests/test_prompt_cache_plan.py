"""The memory plan counts prompt-cache slots: a whole context of KV rows each; defaults from the memory left."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import edge_sdk
from edge_sdk.errors import PlanError
from edge_sdk.model.config import ModelConfig, QuantConfig
from edge_sdk.model.sizes import kv_cache_bytes
from edge_sdk.plan.boards import load_board
from edge_sdk.plan.budget import MAX_BOARD_SLOTS, plan_device

SMOLLM2 = ModelConfig(vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3, ffn_dim=1536,
                      rope_theta=100000.0, max_ctx=8192, tied_embeddings=True, name="SmolLM2-135M-Instruct")
Q = QuantConfig()
ZERO, PI5 = load_board("raspberry-pi-zero-2w"), load_board("raspberry-pi-5-8gb")
KV_2048 = 2 * 30 * 3 * 2048 * 64 * 2  # K and V, 30 layers, 3 kv heads, head_dim 64, f16: 45 MiB


def test_slots_are_planned_as_whole_contexts_of_kv_rows():
    bare = plan_device(SMOLLM2, Q, PI5, ctx=2048)
    three = plan_device(SMOLLM2, Q, PI5, ctx=2048, slots=3)
    assert kv_cache_bytes(SMOLLM2, 2048, "f16") == KV_2048 == 47_185_920
    assert (bare.slots, "prompt_cache" in bare.breakdown) == (0, False)
    assert (three.slots, three.slot_bytes, three.breakdown["prompt_cache"]) == (3, KV_2048, 3 * KV_2048)
    assert three.peak_bytes == bare.peak_bytes + 3 * KV_2048 == sum(three.breakdown.values())
    assert three.to_dict()["slots"] == 3 and three.to_dict()["breakdown"]["prompt_cache"] == 3 * KV_2048


def test_default_slots_come_from_the_memory_left():
    assert MAX_BOARD_SLOTS == 4
    assert plan_device(SMOLLM2, Q, PI5, ctx=2048, slots=None).slots == 4  # room for many more: capped
    zero = plan_device(SMOLLM2, Q, ZERO, ctx=1024, slots=None)
    # 320 MiB of budget; with the tokenizer planned at the 16 MiB it keeps, the rest at ctx 1024 leaves room for
    # more than four slots of 22.5 MiB: capped at MAX_BOARD_SLOTS
    assert (zero.slots, zero.slot_bytes, zero.fits) == (4, KV_2048 // 2, True)
    assert zero.peak_bytes == 332_920_064 <= zero.budget_bytes == 335_544_320
    # the default context takes the memory for itself: no slot is left on a Pi Zero 2 W
    assert (plan_device(SMOLLM2, Q, ZERO, slots=None).ctx, plan_device(SMOLLM2, Q, ZERO, slots=None).slots) == (5187, 0)


def test_asked_slots_shrink_the_default_context_or_do_not_fit():
    two = plan_device(SMOLLM2, Q, ZERO, slots=2)
    assert (two.ctx, two.slots, two.fits) == (1741, 2, True)  # against 5187 without slots
    over = plan_device(SMOLLM2, Q, ZERO, ctx=2048, slots=10)
    assert not over.fits
    assert over.reasons[0] == ("10 prompt-cache slot(s) need 450.0 MiB (45.0 MiB each: a whole context of f16 KV "
                               "rows at ctx 2048); 1 fit at this context")
    with pytest.raises(PlanError, match="slots must be an int >= 0"):
        plan_device(SMOLLM2, Q, ZERO, slots=-1)


def test_load_on_a_board_takes_the_plans_slots(tiny_gguf):
    from edge_sdk.export.describe import model_config

    cfg, _ = model_config(tiny_gguf)
    p = plan_device(cfg, QuantConfig(), ZERO, slots=None)
    with edge_sdk.load(tiny_gguf, board="raspberry-pi-zero-2w", backend="native") as m:
        assert len(m.prompt_cache.slots) == p.slots == 4  # the tiny model's KV takes next to nothing
    with pytest.raises(PlanError, match=r"100000 prompt-cache slot\(s\) need 3125.0 MiB \(32.0 KiB each: a whole context "
                                        r"of f16 KV rows at ctx 128\); 8862 fit at this context"):
        edge_sdk.load(tiny_gguf, board="raspberry-pi-zero-2w", backend="native", ctx=128, slots=100_000)
    with edge_sdk.load(tiny_gguf, board="raspberry-pi-zero-2w", backend="native", slots=0) as m:
        assert m.prompt_cache is None


def test_cli_plan_counts_slots(tiny_gguf):
    r = subprocess.run([sys.executable, "-m", "edge_sdk", "plan", "-m", tiny_gguf, "--board", "raspberry-pi-zero-2w",
                        "--slots", "3", "--json"], capture_output=True, text=True, timeout=120)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["slots"] == 3 and out["breakdown"]["prompt_cache"] == 3 * out["slot_bytes"]
    r = subprocess.run([sys.executable, "-m", "edge_sdk", "plan", "-m", tiny_gguf, "--board", "raspberry-pi-zero-2w"],
                       capture_output=True, text=True, timeout=120)
    assert "prompt cache  4 slot(s) of 32.0 KiB (a whole context of KV rows each)" in r.stdout
