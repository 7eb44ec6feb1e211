"""The device budget: fits, peak, max_ctx, streaming, estimates, picture and CLI, with hand-computed numbers."""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET

import pytest

from edge_sdk.plan.boards import board_from_dict, load_board, resolve_board_dict
from edge_sdk.model.config import ModelConfig, QuantConfig
from edge_sdk.errors import PlanError
from edge_sdk.plan.budget import BACKEND_RUNTIME_BYTES, RUNTIME_BASE_BYTES, SDK_API_IMPORT_BYTES, TOKENIZER_BYTES_PER_VOCAB_ENTRY, plan_device
from edge_sdk.plan.estimates import DECODE_BANDWIDTH_EFFICIENCY, PREFILL_COMPUTE_EFFICIENCY
from edge_sdk.plan.picture import plan_svg, write_png

MiB = 1 << 20
SMOLLM2 = ModelConfig(vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3, ffn_dim=1536,
                      rope_theta=100000.0, max_ctx=8192, tied_embeddings=True, name="SmolLM2-135M-Instruct")
Q = QuantConfig(group_size=0)  # per-row weight scales: the hand numbers below assume it

# SmolLM2 pieces by hand (per-row int8 + one f32 scale per row):
EMBED = 49152 * 576 + 49152 * 4  # 28,508,160
LAYER = 3_564_288  # sizes.py docstring
HEAD_NORM = 576 * 4
ALL_WEIGHTS = EMBED + 30 * LAYER + HEAD_NORM  # 135,439,104
RUNTIME_NATIVE = 27_600 * 1024 + 8_520 * 1024 + 7_600 * 1024  # 44,769,280
TOKENIZER = 49152 * 343  # 16,859,136


def test_constants_are_what_the_hand_numbers_assume():
    assert RUNTIME_BASE_BYTES + SDK_API_IMPORT_BYTES + BACKEND_RUNTIME_BYTES["native"] == RUNTIME_NATIVE
    assert TOKENIZER_BYTES_PER_VOCAB_ENTRY == 343
    assert ALL_WEIGHTS == 135_439_104


def test_a_large_vocabulary_peaks_while_its_tokenizer_is_parsed():
    # The tokenizer is parsed before any weight is read: its passing peak (930 B per vocabulary entry) stands
    # beside the runtime alone. With a 262,144-token vocabulary and tiny layers it is the higher one:
    # 44,769,280 + 262,144 * 930 = 288,563,200, whatever the rest of the model holds.
    big_vocab = ModelConfig(vocab_size=262_144, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, max_ctx=128,
                            tied_embeddings=True)
    p = plan_device(big_vocab, Q, load_board("raspberry-pi-5-8gb"), ctx=128)
    assert p.peak_bytes == RUNTIME_NATIVE + 262_144 * 930 == 288_563_200 == sum(p.breakdown.values())
    assert p.breakdown["tokenizer"] == 262_144 * 343  # kept once parsed: 89,915,392
    assert p.breakdown["tokenizer_parse"] == 288_563_200 - sum(v for k, v in p.breakdown.items() if k != "tokenizer_parse")
    # SmolLM2: the parse (44.8 + 43.6 MiB) stays far below the loaded model, and the breakdown has no such entry
    assert "tokenizer_parse" not in plan_device(SMOLLM2, Q, load_board("raspberry-pi-5-8gb"), ctx=512).breakdown


def test_smollm2_ctx_8192_f32_does_not_fit_a_pi_zero_2w():
    p = plan_device(SMOLLM2, Q, load_board("raspberry-pi-zero-2w"), ctx=8192, kv_dtype="f32")
    assert not p.fits
    kv = 2 * 30 * 3 * 8192 * 64 * 4  # 377,487,360
    # gate + up + h + hq + hs of a 64-token prefill chunk: 3 * 393,216 + 98,304 + 12,288 = 1,290,240
    arena = 3 * 64 * 1536 * 4 + 64 * 1536 + 64 * 48 * 4
    io = 64 * 576 * 4 + 49152 * 4  # residual of the chunk + one row of logits: 344,064
    rope = 2 * 8192 * 32 * 4  # cos and sin tables: 2,097,152
    # Weights cannot all stay (room is negative), so the plan tries streaming: the biggest graph is the
    # tied head (embedding table + norm), plus one embedding row (576 + 4 bytes).
    weights = EMBED + HEAD_NORM + 580  # 28,511,044
    assert dict(p.breakdown) == {"weights": weights, "runtime": RUNTIME_NATIVE, "tokenizer": TOKENIZER,
                                 "kv_cache": kv, "activations": arena, "io_buffers": io, "rope_table": rope}
    assert p.peak_bytes == 471_358_276 == sum(p.breakdown.values())
    # budget 320 MiB = 335,544,320; over by 135,813,956 bytes = 129.52 MiB
    assert p.reasons[0] == (
        "needs 449.5 MiB but raspberry-pi-zero-2w leaves 320.0 MiB to the SDK: over by 129.5 MiB "
        "(kv_cache 360.0 MiB, runtime 42.7 MiB, weights 27.2 MiB, tokenizer 16.1 MiB, rope_table 2.0 MiB, "
        "activations 1.2 MiB, io_buffers 0.3 MiB)"
    )
    assert p.reasons[1].startswith("the KV cache alone is 360.0 MiB at ctx 8192 with f32 values; "
                                   f"the largest context that fits with f32 is {p.max_ctx}")
    assert p.reasons[2] == "weights cannot be arranged: not even one decoder layer (3.4 MiB) fits next to the rest"
    # max_ctx is the edge: it fits, one more token does not
    assert plan_device(SMOLLM2, Q, load_board("raspberry-pi-zero-2w"), ctx=p.max_ctx, kv_dtype="f32").fits
    assert not plan_device(SMOLLM2, Q, load_board("raspberry-pi-zero-2w"), ctx=p.max_ctx + 1, kv_dtype="f32").fits


def test_smollm2_fits_resident_on_a_pi_4_1gb():
    p = plan_device(SMOLLM2, Q, load_board("raspberry-pi-4b-1gb"), ctx=2048, kv_dtype="f16")
    assert p.fits and p.weights_mode == "resident"
    assert p.layer_ranges == ((0, 30),) and p.split.describe() == "all layers in one graph"
    assert p.breakdown["weights"] == ALL_WEIGHTS
    assert p.breakdown["kv_cache"] == 2 * 30 * 3 * 2048 * 64 * 2  # 47,185,920
    assert p.peak_bytes == sum(p.breakdown.values())
    assert (p.backend, p.threads, p.max_ctx, p.max_ctx_resident) == ("native", 4, 8192, 8192)
    assert p.reasons == ()


def test_weights_stream_when_they_do_not_fit():
    # On the Zero 2 W at ctx 8192 with f16 values the KV cache (188.7 MiB) leaves no room for all weights.
    p = plan_device(SMOLLM2, Q, load_board("raspberry-pi-zero-2w"), ctx=8192, kv_dtype="f16")
    assert p.fits and p.weights_mode == "streamed"
    per_graph = p.split.layers_per_graph
    assert per_graph >= 1 and p.layer_ranges[0] == (0, per_graph)
    assert p.breakdown["weights"] == max(per_graph * LAYER, EMBED + HEAD_NORM) + 580
    assert p.max_ctx_resident < 8192 <= p.max_ctx
    assert any("streamed from storage one graph at a time" in r for r in p.reasons)
    # Every token re-reads all weights from the 25 MB/s card: about 5.4 s per token.
    assert p.decode_tok_s_est < 1 / (ALL_WEIGHTS / 25e6)


def _tiny_board(budget: int) -> object:
    d = resolve_board_dict("generic-x86_64")
    d["cpu"]["clusters"][0]["count"] = 1
    d["sdk_budget_bytes"] = budget
    return board_from_dict(d)


def test_max_ctx_by_hand():
    # vocab 256, dim 64, 2 layers, 4 heads / 2 KV heads (head_dim 16), ffn 128, tied.
    cfg = ModelConfig(vocab_size=256, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128,
                      max_ctx=4096, tied_embeddings=True)
    # Weights: layer = 2*64*4 + q 4352 + k,v 2*2176 + o 4352 + gate,up 2*8704 + down 8448 = 39,424;
    # embed 256*64 + 256*4 = 17,408; head norm 256.  All weights: 2*39,424 + 17,408 + 256 = 96,512.
    # Fixed: R = runtime + tokenizer (measured constants) and io (1*64*4 + 256*4) = 1,280.
    # Per position: KV f16 2 * 2 layers * 2 heads * 16 * 2 bytes = 256, RoPE cos+sin 2 * 8 * 4 = 64: 320.
    # Arena with 1 token, 1 thread, ctx >= 256: att (round_up(4*ctx, 64)) is the largest buffer and goes
    # to 0; q and attn_out (256 each) live with it at op 4 and stack above it; nothing else reaches higher
    # (gate/up/h end at 1536 <= att).  Arena = round_up(4*ctx, 64) + 512.
    # Resident peak(ctx) = R + 96,512 + 1,280 + 512 + 320*ctx + round_up(4*ctx, 64)
    #                    = R + 98,304 + 320*ctx + round_up(4*ctx, 64):
    #   peak(1000) = R + 98,304 + 320,000 + 4,032 = R + 422,336
    #   peak(1001) = R + 98,304 + 320,320 + 4,032 = R + 422,656
    r = RUNTIME_NATIVE + 256 * TOKENIZER_BYTES_PER_VOCAB_ENTRY
    board = _tiny_board(r + 422_400)
    p = plan_device(cfg, Q, board, ctx=1000, threads=1, prefill_chunk=1)
    assert p.peak_bytes == r + 422_336 and p.fits and p.weights_mode == "resident"
    assert p.arena.arena_bytes == 4032 + 512
    assert p.max_ctx_resident == 1000
    # Streaming keeps only the biggest graph resident plus one 68-byte embedding row, with as many layers
    # per graph as fit.  Without the weights the rest is R + 1,792 + 320*ctx + round_up(4*ctx, 64).
    # At ctx 1054 (rest R + 1,792 + 337,280 + 4,224 = R + 343,296) two layers still fit
    # (room 79,104 >= 2*39,424 + 68): peak = rest + 78,916 = R + 422,212.
    s = plan_device(cfg, Q, board, ctx=1054, threads=1, prefill_chunk=1)
    assert s.weights_mode == "streamed" and s.peak_bytes == r + 422_212 and s.fits
    assert s.layer_ranges == ((0, 2),)
    # With one layer per graph the resident part is max(39,424, head 17,408 + 256) + 68 = 39,492, so
    # 320*ctx + round_up(4*ctx, 64) may reach 422,400 - 1,792 - 39,492 = 381,116:
    #   ctx 1176: 376,320 + 4,736 = 381,056 fits (peak R + 422,340); ctx 1177: 376,640 + 4,736 = 381,376 does not.
    assert p.max_ctx == 1176
    s = plan_device(cfg, Q, board, ctx=1176, threads=1, prefill_chunk=1)
    assert s.peak_bytes == r + 422_340 and s.fits
    assert s.layer_ranges == ((0, 1), (1, 2)) and s.split.describe() == "1 layer per graph"
    assert not plan_device(cfg, Q, board, ctx=1177, threads=1, prefill_chunk=1).fits


def test_decode_and_prefill_estimates_by_hand():
    p = plan_device(SMOLLM2, Q, load_board("raspberry-pi-5-4gb"), ctx=2048, kv_dtype="f16")
    # Decode bytes: one embedding row 580 + 30 layers 106,928,640 + head (table + norm) 28,510,464
    # = 135,439,684; KV read at position 256: 2 * 30 * (3*64*2) * 256 = 5,898,240.
    per_token = 135_439_684 + 5_898_240
    assert p.decode_tok_s_est == pytest.approx(13.976e9 * DECODE_BANDWIDTH_EFFICIENCY / per_token)
    assert p.decode_tok_s_est == pytest.approx(98.88, abs=0.01)
    # Prefill: dotprod 32 MACs/cycle x 4 cores x 2.4 GHz = 307.2 G MAC/s peak.  MACs per token at
    # position 32 (middle of a 64-token chunk): 30 * (576*576*2 + 2*576*192 + 3*576*1536 + 2*9*64*32) = 107,274,240.
    assert p.prefill_tok_s_est == pytest.approx(307.2e9 * PREFILL_COMPUTE_EFFICIENCY / 107_274_240)
    assert p.estimate_details["prefill"]["isa_feature"] == "dotprod"
    zero = plan_device(SMOLLM2, Q, load_board("raspberry-pi-zero-2w"), ctx=512)
    assert zero.estimate_details["prefill"]["isa_feature"] == "neon"
    assert zero.estimate_details["prefill"]["int8_macs_per_cycle_per_core"] == 8


def test_threads_and_backend_come_from_board_fields():
    opi = plan_device(SMOLLM2, Q, load_board("orange-pi-5"), ctx=1024)
    assert opi.threads == 4  # the Cortex-A76 cluster, not all 8 cores
    assert plan_device(SMOLLM2, Q, load_board("jetson-nano-4gb"), ctx=1024, backend="tflite").backend == "tflite"
    with pytest.raises(PlanError, match=r"backend 'onnx' does not run on jetson-nano-4gb; it supports native, tflite"):
        plan_device(SMOLLM2, Q, load_board("jetson-nano-4gb"), ctx=1024, backend="onnx")
    with pytest.raises(PlanError, match=r"threads must be between 1 and the board's 4 cores, got 9"):
        plan_device(SMOLLM2, Q, load_board("raspberry-pi-5-8gb"), ctx=1024, threads=9)
    ort = plan_device(SMOLLM2, Q, load_board("raspberry-pi-5-8gb"), ctx=1024, backend="onnx", kv_dtype="f32")
    assert ort.fits
    assert ort.breakdown["runtime"] == RUNTIME_BASE_BYTES + SDK_API_IMPORT_BYTES + BACKEND_RUNTIME_BYTES["onnx"]
    assert ort.breakdown["weight_copies"] == int(ALL_WEIGHTS * 1.5)  # ONNX Runtime's folded and packed copies
    lite = plan_device(SMOLLM2, Q, load_board("raspberry-pi-5-8gb"), ctx=1024, backend="tflite")
    assert lite.breakdown["weight_copies"] == int(ALL_WEIGHTS * 1.15)  # the .tflite files' weights and XNNPACK's
    assert "weight_copies" not in plan_device(SMOLLM2, Q, load_board("raspberry-pi-5-8gb"), ctx=1024).breakdown


def test_non_streaming_backend_says_so_when_over_budget():
    d = resolve_board_dict("raspberry-pi-3b-plus")
    d["sdk_budget_bytes"] = 150 * MiB
    p = plan_device(SMOLLM2, Q, board_from_dict(d), ctx=2048, backend="onnx", kv_dtype="f32")
    assert not p.fits and p.weights_mode == "resident"
    assert p.reasons[0] == "backend onnx loads every weight at once; native can stream them from storage"


def test_bad_requests():
    board = load_board("raspberry-pi-5-8gb")
    with pytest.raises(PlanError, match=r"ctx must be between 1 and the model's maximum context 8192, got 8193"):
        plan_device(SMOLLM2, Q, board, ctx=8193)
    with pytest.raises(PlanError, match=r"kv dtype must be f32, f16 or int8, got 'bf16'"):
        plan_device(SMOLLM2, Q, board, ctx=512, kv_dtype="bf16")
    with pytest.raises(PlanError, match=r"prefill_chunk must be positive"):
        plan_device(SMOLLM2, Q, board, ctx=512, prefill_chunk=0)
    int8 = plan_device(SMOLLM2, Q, board, ctx=512, kv_dtype="int8", backend="onnx")
    assert not int8.fits
    assert int8.reasons[0] == "the onnx backend keeps the KV cache in f32, not int8; the numbers are for int8 values"


def test_int8_kv_is_planned_with_its_scales():
    board = load_board("raspberry-pi-zero-2w")
    int8 = plan_device(SMOLLM2, Q, board, ctx=2048, kv_dtype="int8")
    f16 = plan_device(SMOLLM2, Q, board, ctx=2048, kv_dtype="f16")
    assert int8.fits and int8.reasons == ()
    # int8 values + one f32 scale per (layer, kv head, position), for K and for V: 68 of f16's 128 bytes
    assert int8.breakdown["kv_cache"] == 2 * 30 * 3 * 2048 * 64 + 2 * 30 * 3 * 2048 * 4 == 25_067_520
    assert f16.breakdown["kv_cache"] == 2 * 30 * 3 * 2048 * 64 * 2 == 47_185_920
    assert int8.peak_bytes - f16.peak_bytes == 25_067_520 - 47_185_920
    # every weight resident: f16 up to 5874 positions (the tokenizer planned at the 16 MiB it keeps), int8 to
    # the model's whole 8192
    assert (int8.max_ctx_resident, f16.max_ctx_resident) == (8192, 5874)
    assert int8.estimate_details["decode"]["kv_bytes_per_token"] == 2 * 30 * 3 * (64 + 4) * 256 == 3_133_440


def test_default_ctx_is_max_ctx_and_json_has_the_fields():
    p = plan_device(SMOLLM2, Q, load_board("raspberry-pi-4b-2gb"), kv_dtype="f16")
    assert p.ctx == p.max_ctx == 8192
    d = json.loads(json.dumps(p.to_dict()))
    for key in ("fits", "peak_bytes", "max_ctx", "decode_tok_s_est", "prefill_tok_s_est", "breakdown", "split",
                "threads", "backend", "reasons"):
        assert key in d
    assert d["arena"]["lower_bound_bytes"] <= d["arena"]["arena_bytes"] <= d["arena"]["naive_bytes"]
    assert list(d["arena"]["prefill_offsets"])[:3] == ["xn", "xq", "xs"]


def test_svg_draws_every_buffer_and_budget_part(tmp_path):
    p = plan_device(SMOLLM2, Q, load_board("raspberry-pi-zero-2w"), ctx=8192, kv_dtype="f32")
    root = ET.fromstring(plan_svg(p))
    ns = "{http://www.w3.org/2000/svg}"
    titles = [t.text for t in root.iter(f"{ns}title")]
    assert len(titles) == len(p.prefill_buffers) + len(p.breakdown)
    assert "gate: 393216 bytes at offset 0, ops 10-12" in titles
    assert "kv_cache: 360.0 MiB" in titles
    texts = " ".join(t.text or "" for t in root.iter(f"{ns}text"))
    assert "does NOT fit" in texts and "budget 320 MiB" in texts


def test_png_needs_matplotlib(tmp_path):
    p = plan_device(SMOLLM2, Q, load_board("raspberry-pi-5-8gb"), ctx=512)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(PlanError, match=r"--png needs matplotlib, which is not installed; use --svg FILE instead"):
            write_png(p, str(tmp_path / "p.png"))
    else:
        write_png(p, str(tmp_path / "p.png"))
        assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plan_json_and_svg(tmp_path, capsys, monkeypatch):
    from edge_sdk.cli import plan as cli_plan

    monkeypatch.setattr(cli_plan, "model_config", lambda model: (SMOLLM2, Q))
    parser = argparse.ArgumentParser(prog="edge-sdk")
    cli_plan.register(parser.add_subparsers(dest="command"))
    svg = tmp_path / "plan.svg"
    args = parser.parse_args(["plan", "--board", "raspberry-pi-zero-2w", "--ctx", "8192", "--kv", "f32",
                              "--json", "--svg", str(svg)])
    assert args.func(args) == 1  # does not fit
    out = json.loads(capsys.readouterr().out)
    assert out["fits"] is False and out["peak_bytes"] == 471_358_276
    assert out["board"] == "raspberry-pi-zero-2w" and out["ctx"] == 8192
    assert svg.read_text().startswith("<svg")
    args = parser.parse_args(["plan", "--board", "raspberry-pi-5-8gb", "--ctx", "2048"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "fits          yes" in text and "decode 98.9 tok/s" in text
    args = parser.parse_args(["plan", "--board", "raspberry-pi-5-8gb", "--svg", str(tmp_path / "no" / "dir" / "p.svg")])
    with pytest.raises(PlanError, match=r"cannot write .*/no/dir/p.svg: No such file or directory"):
        args.func(args)


def test_a_kv_dtype_the_backend_cannot_store_fits_at_no_context():
    p = plan_device(SMOLLM2, Q, load_board("raspberry-pi-5-8gb"), ctx=1024, backend="onnx", kv_dtype="f16")
    assert not p.fits and p.max_ctx == 0 and p.max_ctx_resident == 0
    assert p.reasons[0].startswith("the onnx backend keeps the KV cache in f32, not f16")


def test_grouped_weight_scales_cost_one_eighth_more():
    # group_size 32 (the default): one f32 scale per 32 int8 values, i.e. +1/8 on every matrix.
    # Layer: 3,538,944 int8 + 442,368 scales + 2 norms 4,608 = 3,985,920.
    # Embedding: 28,311,552 + 49152*18*4 = 31,850,496.  Head norm 2,304.
    p = plan_device(SMOLLM2, QuantConfig(group_size=32), load_board("raspberry-pi-4b-1gb"), ctx=512)
    assert p.breakdown["weights"] == 31_850_496 + 30 * 3_985_920 + 2_304 == 151_430_400


def test_bench_tool_replaces_the_bandwidth_it_measured():
    from edge_sdk.bench import plan as tool

    board = load_board("generic-x86_64")
    faster = tool.with_bandwidth(board, 2, 2 * board.bandwidth_gbps(2))
    assert faster.bandwidth_gbps(2) == pytest.approx(2 * board.bandwidth_gbps(2), abs=0.01)
    assert faster.bandwidth_gbps(1) == board.bandwidth_gbps(1)
    slow = plan_device(SMOLLM2, Q, board, ctx=512, threads=2)
    fast = plan_device(SMOLLM2, Q, faster, ctx=512, threads=2)
    assert fast.decode_tok_s_est == pytest.approx(2 * slow.decode_tok_s_est, rel=1e-3)
