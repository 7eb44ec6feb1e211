"""Speed estimates from a board's data: decode is bandwidth-bound, prefill compute-bound.

Decode (one token at a time) reads every weight once per token, so its speed
is memory bandwidth divided by bytes read per token (`sizes.decode_bytes_per_token`
plus the KV cache read by attention), times an efficiency factor. When the
weights do not fit in memory and are streamed from storage, every token also
re-reads them from the boot medium: a cyclic scan over more data than the
page cache holds gets no hits under LRU, so all weight bytes count.

Prefill (a chunk of prompt tokens at once) is matrix-matrix work: cores x
clock x int8 multiply-accumulates per cycle for the best ISA feature present,
times an efficiency factor, divided by MACs per token.

Example::

    decode_tok_s(cfg, q, board, threads=4, kv_dtype="f16", position=256, streamed=False)
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from ..model.config import ModelConfig, QuantConfig
from ..model.sizes import decode_bytes_per_token, model_weight_bytes
from .boards import BoardProfile

DECODE_BANDWIDTH_EFFICIENCY = 1.0
"""Decode bytes per second over the board's recorded read bandwidth, for the SDK's
native core. On the reference x86-64 VM (1 thread, SmolLM2-135M, per-row int8,
f16 KV) it decoded 85.3 tok/s = 11.6 GB/s against a 12.0 GB/s numpy read
(0.97), and 1.05-1.08 of a read measured right before runs on a loaded machine
(python -m edge_sdk.bench.plan --fresh-bandwidth). llama.cpp reaches about 0.7 of a numpy
read on a 2-core AVX-512 VM (102 and 133 tok/s at Q8_0 on 1 and 2 threads
against 140 and 192 tok/s ceilings). Board figures from tinymembench are
single-core peaks; decode on several cores can exceed them, which this factor
does not model."""

PREFILL_COMPUTE_EFFICIENCY = 0.25
"""Fraction of peak int8 MAC throughput a prefill reaches. The same llama.cpp
build reached pp64 = 708 tok/s (Q8_0, 2 threads), about 28% of 2 cores x
2.1 GHz x 64 MACs/cycle (VNNI) over ~106 M MACs per token."""

INT8_MACS_PER_CYCLE: Mapping[str, int] = MappingProxyType({
    # Best first; the first feature the board has is used. Peak per core:
    "avx512_vnni": 64,  # one 512-bit VPDPBUSD (64 u8 x s8 MACs) per cycle; Intel Intrinsics Guide, _mm512_dpbusd_epi32
    "i8mm": 64,  # SMMLA = 32 MACs (2x8 by 8x2), two 128-bit SIMD pipes; Arm Neoverse N2 / Cortex-A710 optimization guides; 8x NEON
    "dotprod": 32,  # SDOT = 16 MACs, two per cycle; Arm Cortex-A76 Software Optimization Guide; 4x NEON
    "avx2": 32,  # VPMADDUBSW (32 MACs into s16 pairs) + VPMADDWD on two ports; Intel Intrinsics Guide
    "neon": 8,  # SMULL/SMULL2 (8 MACs each) + 2 SADALP: 16 MACs per 4 instructions, two pipes
})
"""int8 multiply-accumulates per cycle per core for the best ISA feature present.
Peaks: in-order cores (Cortex-A53) issue 128-bit NEON at half rate, which the
efficiency factor does not capture, so estimates for them are optimistic."""

SCALAR_MACS_PER_CYCLE = 1


def macs_per_cycle(isa: Mapping[str, bool]) -> tuple[str, int]:
    """The ISA feature used for int8 matmuls and its MACs/cycle/core."""
    for feature, macs in INT8_MACS_PER_CYCLE.items():
        if isa.get(feature):
            return feature, macs
    return "scalar", SCALAR_MACS_PER_CYCLE


def kv_bytes_read_per_token(cfg: ModelConfig, position: int, kv_dtype: str) -> int:
    """K and V of `position` earlier tokens, read once by attention for one new token."""
    per_value = {"f32": 4, "f16": 2, "int8": 1}[kv_dtype]
    scales = 4 if kv_dtype == "int8" else 0  # one float scale per (layer, head, position) for K and for V
    per_pos = 2 * cfg.n_layers * (cfg.n_kv_heads * cfg.head_dim * per_value + cfg.n_kv_heads * scales)
    return per_pos * position


def macs_per_prefill_token(cfg: ModelConfig, position: int) -> int:
    """Matmul MACs for one prompt token at `position` (logits are computed for the last token only)."""
    d, f = cfg.dim, cfg.ffn_dim
    matmuls = d * cfg.q_dim + 2 * d * cfg.kv_dim + cfg.q_dim * d + 3 * d * f
    attention = 2 * cfg.n_heads * cfg.head_dim * position
    return cfg.n_layers * (matmuls + attention)


def cores_for_threads(board: BoardProfile, threads: int) -> list[tuple[int, int]]:
    """(count, clock MHz) of the cores `threads` threads run on: fastest cluster first."""
    left, out = threads, []
    for c in sorted(board.clusters, key=lambda c: -c.max_clock_mhz):
        n = min(left, c.count)
        if n:
            out.append((n, c.max_clock_mhz))
        left -= n
    return out


def decode_tok_s(
    cfg: ModelConfig,
    q: QuantConfig,
    board: BoardProfile,
    threads: int,
    kv_dtype: str,
    position: int,
    streamed: bool,
) -> tuple[float, dict[str, float]]:
    """Estimated decode tokens/s and the numbers it came from."""
    weight_bytes = decode_bytes_per_token(cfg, q)
    kv_bytes = kv_bytes_read_per_token(cfg, position, kv_dtype)
    bw = board.bandwidth_gbps(threads) * 1e9 * DECODE_BANDWIDTH_EFFICIENCY
    seconds = (weight_bytes + kv_bytes) / bw
    storage_bytes = model_weight_bytes(cfg, q) if streamed else 0
    if streamed:
        seconds += storage_bytes / (board.storage_read_mbps * 1e6)
    details = {
        "bandwidth_gbps": board.bandwidth_gbps(threads),
        "efficiency": DECODE_BANDWIDTH_EFFICIENCY,
        "weight_bytes_per_token": weight_bytes,
        "kv_bytes_per_token": kv_bytes,
        "position": position,
        "storage_bytes_per_token": storage_bytes,
        "storage_read_mbps": board.storage_read_mbps,
    }
    return 1.0 / seconds, details


def prefill_tok_s(cfg: ModelConfig, board: BoardProfile, threads: int, chunk: int) -> tuple[float, dict[str, float | str]]:
    """Estimated prefill tokens/s for a prompt of `chunk` tokens, and the numbers it came from."""
    feature, macs = macs_per_cycle(board.isa)
    peak = sum(n * mhz * 1e6 * macs for n, mhz in cores_for_threads(board, threads))
    per_token = macs_per_prefill_token(cfg, position=chunk // 2)
    details = {
        "isa_feature": feature,
        "int8_macs_per_cycle_per_core": macs,
        "peak_macs_per_s": peak,
        "efficiency": PREFILL_COMPUTE_EFFICIENCY,
        "macs_per_token": per_token,
    }
    return peak * PREFILL_COMPUTE_EFFICIENCY / per_token, details
