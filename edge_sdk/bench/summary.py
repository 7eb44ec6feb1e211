"""The arithmetic of a benchmark report: medians of rounds and ratios of rounds run side by side.

Every figure of `edge-sdk bench` is a median over its rounds, and every ratio between two players (our
backends, llama.cpp) is the median of their per-round ratios: round r of both ran in the same minutes of the
machine, so a drift of the machine over the run cancels in each ratio. Measurements are plain dicts (a round's
`prefill_tok_s`, `decode_tok_s`, `loadavg` [before, after], ...); these functions only count.

Example::

    paired_ratio([60.0, 66.0, 50.0], [50.0, 60.0, 25.0])           # 1.2 (median of 1.2, 1.1, 2.0)
    summarize_depth([{"depth_decode_tok_s": 45.0, "base_decode_tok_s": 50.0, "loadavg": [1.0, 1.2]}], 1500)
"""

from __future__ import annotations

import statistics
from typing import Any, Sequence

from .busy import load_range

BASE_DEPTH = 64
"""The short context that decode at `--depth N` is compared with (our own slowdown with context length)."""


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """The median of a[r] / b[r] over rounds r (a and b measured side by side, round by round)."""
    if not a or len(a) != len(b):
        raise ValueError(f"paired rounds differ in number: {len(a)} and {len(b)}")
    return statistics.median(x / y for x, y in zip(a, b))


def ratio(a: dict[str, Any], b: dict[str, Any], key: str, paired: bool) -> float:
    """a / b for the figure `key` (`decode_tok_s`, ...): paired, the median of per-round ratios of
    `a[key runs]`; else the ratio of the medians (rounds not side by side)."""
    runs = key.replace("_tok_s", "_runs")
    return paired_ratio(a[runs], b[runs]) if paired else a[key] / b[key]


def summarize_base(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the rounds' prefill and decode (the prompt and generation of the run), their load averages and
    the probe's bandwidth read in each round."""
    prefill, decode = [r["prefill_tok_s"] for r in runs], [r["decode_tok_s"] for r in runs]
    out: dict[str, Any] = {"prefill_tok_s": statistics.median(prefill), "decode_tok_s": statistics.median(decode),
                           "prefill_runs": prefill, "decode_runs": decode,
                           "loadavg_runs": [r.get("loadavg") for r in runs], "loadavg_range": load_range(list(runs))}
    if runs and "bandwidth_gbps" in runs[0]:
        out["bandwidth_runs"] = [r["bandwidth_gbps"] for r in runs]
    if runs and "constrained_decode_tok_s" in runs[0]:
        ratios = [r["constrained_decode_tok_s"] / r["unconstrained_decode_tok_s"] for r in runs]
        out["constrained"] = {
            "decode_tok_s": statistics.median(r["constrained_decode_tok_s"] for r in runs),
            "unconstrained_decode_tok_s": statistics.median(r["unconstrained_decode_tok_s"] for r in runs),
            "ratio": statistics.median(ratios), "ratio_runs": ratios,
            "tokens": runs[0]["constrained_tokens"], "forced_tokens": runs[0]["forced_tokens"],
            "satisfied": all(r["constraint"] == "satisfied" for r in runs)}
    return out


def summarize_depth(runs: Sequence[dict[str, Any]], depth: int, base_depth: int = BASE_DEPTH) -> dict[str, Any]:
    """Decode after `depth` tokens of context and after `base_depth`, per round: medians, and the median of
    the per-round ratios depth / base (1.0 = no slowdown with context; 0.85 = 15% slower)."""
    at, base = [r["depth_decode_tok_s"] for r in runs], [r["base_decode_tok_s"] for r in runs]
    out: dict[str, Any] = {"depth": depth, "base_depth": base_depth,
                           "decode_tok_s": statistics.median(at), "decode_runs": at,
                           "base_decode_tok_s": statistics.median(base), "base_decode_runs": base,
                           "vs_base": paired_ratio(at, base), "loadavg_range": load_range(list(runs))}
    if runs and "prompt_tokens_read" in runs[0]:
        out["prompt_tokens_read"] = [r["prompt_tokens_read"] for r in runs][0]
        out["base_prompt_tokens_read"] = [r["base_prompt_tokens_read"] for r in runs][0]
    return out


def summarize_sweep(runs: Sequence[dict[int, dict[str, Any]]], lengths: Sequence[int]) -> list[dict[str, Any]]:
    """Prefill tok/s per prompt length: runs[r][n] is round r's measurement of an n-token prompt."""
    out = []
    for n in lengths:
        ms = [r[n] for r in runs]
        values = [m["prefill_tok_s"] for m in ms]
        out.append({"prompt_tokens": n, "prefill_tok_s": statistics.median(values), "prefill_runs": values,
                    "loadavg_range": load_range(ms)})
    return out


def summarize_turns(turns: Sequence[dict[str, Any]], depth: int | None, sweep: Sequence[int],
                    base_depth: int = BASE_DEPTH) -> dict[str, Any]:
    """One player's row from its turns (`schedule.ours_turn` / `PeerRunner.turn`): the base medians, and
    `depth` and `sweep` where they were measured."""
    row = summarize_base([t["base"] for t in turns])
    if depth:
        row["depth"] = summarize_depth([t["depth"] for t in turns], depth, base_depth)
    if sweep:
        row["sweep"] = summarize_sweep([t["sweep"] for t in turns], sweep)
    return row


def versus(ours: dict[str, Any], peer: dict[str, Any], paired: bool) -> None:
    """Add ours/peer ratios to `ours` (prefill, decode; depth and sweep where both measured them)."""
    ours["vs_peer"] = {k: ratio(ours, peer, f"{k}_tok_s", paired) for k in ("prefill", "decode")}
    if "depth" in ours and "depth" in peer:
        ours["depth"]["vs_peer"] = ratio(ours["depth"], peer["depth"], "decode_tok_s", paired)
        ours["depth"]["base_vs_peer"] = ratio(ours["depth"], peer["depth"], "base_decode_tok_s", paired)
    if "sweep" in ours and "sweep" in peer:
        for row, prow in zip(ours["sweep"], peer["sweep"], strict=True):
            row["vs_peer"] = ratio(row, prow, "prefill_tok_s", paired)
