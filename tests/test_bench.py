"""`edge-sdk bench` on a tiny model: report fields, roofline arithmetic, the llama.cpp peer (a stand-in script)."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from edge_sdk.bench.backends import parse_llama_bench, read_bandwidth_gbps, run_bench
from edge_sdk.cli import main
from edge_sdk.model.config import QuantConfig
from edge_sdk.errors import BackendError, ModelFileError
from edge_sdk.model.sizes import decode_bytes_per_token

# what llama-bench -o json printed for SmolLM2-135M Q8_0, -p 8 -n 4 -r 1 (fields trimmed)
LLAMA_BENCH_JSON = """[
  {"model_type": "llama ?B Q8_0", "n_threads": 1, "n_prompt": 8, "n_gen": 0, "avg_ns": 50724483,
   "avg_ts": 157.714767, "stddev_ts": 0.0, "samples_ns": [50724483], "samples_ts": [157.715]},
  {"model_type": "llama ?B Q8_0", "n_threads": 1, "n_prompt": 0, "n_gen": 4, "avg_ns": 114599208,
   "avg_ts": 34.904255, "stddev_ts": 0.0, "samples_ns": [114599208], "samples_ts": [34.9043]}
]"""

FAKE_BENCH = """#!{python}
import json, sys
a = sys.argv[1:]
arg = lambda k: a[a.index(k) + 1]
open(arg("-m") + ".args", "a").write(" ".join(a) + "\\n")
print(json.dumps([
    {{"n_prompt": int(arg("-p")), "n_gen": 0, "n_threads": int(arg("-t")), "avg_ts": 1.0, "samples_ts": [400.0, 500.0, 600.0]}},
    {{"n_prompt": 0, "n_gen": int(arg("-n")), "n_threads": int(arg("-t")), "avg_ts": 1.0, "samples_ts": [80.0]}},
]))
"""

FAKE_QUANTIZE = """#!{python}
import shutil, sys
assert sys.argv[1] == "--allow-requantize" and sys.argv[4] == "Q8_0", sys.argv
shutil.copyfile(sys.argv[2], sys.argv[3])
"""


def script(path, text: str) -> str:
    path.write_text(text.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_parse_llama_bench_takes_the_median_of_each_test():
    assert parse_llama_bench(LLAMA_BENCH_JSON) == {"prefill_tok_s": 157.715, "decode_tok_s": 34.9043}
    with pytest.raises(BackendError, match="lacks a prompt or a generation row"):
        parse_llama_bench("[]")
    with pytest.raises(BackendError, match="did not print JSON"):
        parse_llama_bench("error: model not found")


def test_read_bandwidth_is_plausible():
    gbps = read_bandwidth_gbps(threads=1, mib=16, repeats=3)
    assert 0.5 < gbps < 1000
    with pytest.raises(ValueError, match="threads must be >= 1"):
        read_bandwidth_gbps(threads=0)


def test_bench_report_with_peer(tmp_path, tiny_gguf, tiny_cfg, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    peer = script(bin_dir / "llama-bench", FAKE_BENCH)
    script(bin_dir / "llama-quantize", FAKE_QUANTIZE)
    r = run_bench(tiny_gguf, ["onnx", "numpy"], threads=1, prompt_tokens=8, gen_tokens=4, repeats=2, peer=peer)
    assert [x["backend"] for x in r["results"]] == ["onnx", "numpy"] and r["schedule"] == "interleaved"
    per_token = decode_bytes_per_token(tiny_cfg, QuantConfig())
    first = r["results"][0]
    for x in r["results"]:
        assert len(x["prefill_runs"]) == 2 and len(x["decode_runs"]) == 2
        assert x["decode_bytes_per_token"] == per_token
        # the bandwidth is read right after each round: the roofline fraction is the median of per-round fractions
        assert len(x["bandwidth_runs"]) == 2
        fractions = [d * per_token / (bw * 1e9) for d, bw in zip(x["decode_runs"], x["bandwidth_runs"])]
        assert x["roofline_fraction"] == pytest.approx(sum(fractions) / 2)
        assert x["roofline_fraction_range"] == [min(fractions), max(fractions)]
        # side by side: the median of the per-round ratios (the fake peer: 500 and 80 tok/s every round)
        assert x["vs_peer"]["prefill"] == pytest.approx(x["prefill_tok_s"] / 500.0)
        assert x["vs_peer"]["decode"] == pytest.approx(x["decode_tok_s"] / 80.0)
        assert x["vs_first"]["decode"] == pytest.approx(
            sum(a / b for a, b in zip(x["decode_runs"], first["decode_runs"])) / 2)
        assert x["peak_rss_bytes"] > 20 * 2**20
    assert first["vs_first"] == {"prefill": 1.0, "decode": 1.0}
    assert r["backend"] == "onnx" and r["decode_tok_s"] == first["decode_tok_s"]  # first backend on top
    q8 = r["peer"]["model"]
    assert q8.startswith(str(tmp_path / "cache" / "peer")) and q8.endswith(".Q8_0.gguf")
    assert r["peer"]["decode_runs"] == [80.0, 80.0]
    # one llama-bench run per round, between our backends' rounds
    assert open(q8 + ".args").read() == f"-m {q8} -t 1 -p 8 -n 4 -r 1 -o json\n" * 2


def test_a_roofline_above_100_percent_is_marked_suspect():
    from edge_sdk.bench.backends import roofline

    ok = roofline([60.0, 62.0], [20.0, 18.0], 140_000_000)
    assert ok["fraction"] == pytest.approx((0.42 + 62 * 0.14 / 18) / 2) and not ok["suspect"]
    # a round whose bandwidth read was starved by another process: 152% of an impossible roofline
    bad = roofline([46.7, 47.0], [4.3, 4.4], 140_000_000)
    assert bad["fraction"] > 1.0 and bad["suspect"]
    from edge_sdk.cli.bench import _roofline

    text = _roofline({"roofline_fraction": bad["fraction"], "roofline_fraction_range": bad["fraction_range"],
                      "roofline_suspect": True})
    assert "SUSPECT" in text and "lower than decode achieved" in text


def test_bench_one_backend_after_the_other(tmp_path, tiny_gguf, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    peer = script(bin_dir / "llama-bench", FAKE_BENCH)
    script(bin_dir / "llama-quantize", FAKE_QUANTIZE)
    r = run_bench(tiny_gguf, ["numpy", "onnx"], threads=1, prompt_tokens=8, gen_tokens=4, repeats=2, peer=peer,
                  interleave=False)
    assert r["schedule"] == "sequential" and [x["backend"] for x in r["results"]] == ["numpy", "onnx"]
    onnx = r["results"][1]
    assert onnx["vs_first"]["decode"] == pytest.approx(onnx["decode_tok_s"] / r["results"][0]["decode_tok_s"])
    assert onnx["vs_peer"]["decode"] == pytest.approx(onnx["decode_tok_s"] / 80.0)
    assert open(r["peer"]["model"] + ".args").read() == f"-m {r['peer']['model']} -t 1 -p 8 -n 4 -r 2 -o json\n"


def test_backends_that_do_not_fit_together_run_one_after_the_other(tmp_path, tiny_gguf, tiny_cfg, monkeypatch):
    import edge_sdk.bench.backends as bench

    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    need = bench.side_by_side_bytes(tiny_cfg, ["numpy", "onnx"])
    assert need > bench.side_by_side_bytes(tiny_cfg, ["onnx"]) > bench.side_by_side_bytes(tiny_cfg, ["native"])
    monkeypatch.setattr(bench, "mem_available_bytes", lambda: int(need / 0.8) - 1)
    r = run_bench(tiny_gguf, ["numpy", "onnx"], threads=1, prompt_tokens=2, gen_tokens=1, repeats=1)
    assert r["schedule"] == "sequential" and r["schedule_note"].startswith("sequential: the backends together need")
    monkeypatch.setattr(bench, "mem_available_bytes", lambda: int(need / 0.8) + 1)
    r = run_bench(tiny_gguf, ["numpy", "onnx"], threads=1, prompt_tokens=2, gen_tokens=1, repeats=1)
    assert r["schedule"] == "interleaved" and "schedule_note" not in r


def test_a_failing_worker_is_reported(tmp_path, tiny_gguf, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="unknown backend 'nosuch'; choose among auto, native"):
        run_bench(tiny_gguf, ["numpy", "nosuch"], threads=1, prompt_tokens=2, gen_tokens=1, repeats=1)
    # a worker that cannot load its model: its error reaches the caller
    with pytest.raises(BackendError, match="benchmark of backend 'numpy' failed: ModelFileError: .*missing.gguf"):
        from edge_sdk.bench.backends import _Worker

        _Worker(str(tmp_path / "missing.gguf"), "numpy", 1, 2, 1, timeout_s=120)


def test_bench_cli_json(tmp_path, tiny_gguf, monkeypatch, capsys):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    assert main(["bench", "-m", tiny_gguf, "--backend", "onnx", "--threads", "1", "--prompt-tokens", "4",
                 "--gen-tokens", "2", "--repeats", "1", "--json"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    for key in ("prefill_tok_s", "decode_tok_s", "peak_rss_bytes", "roofline_fraction"):
        assert report[key] > 0, key
    assert (report["prompt_tokens"], report["gen_tokens"], report["threads"]) == (4, 2, 1)
    assert "onnx: prefill" in out.err


def test_bench_errors(tmp_path, tiny_gguf, tiny_hf_dir, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="must be >= 1"):
        run_bench(tiny_gguf, ["onnx"], prompt_tokens=0)
    with pytest.raises(ValueError, match=r"threads must be at most 256, got 100000"):  # before any measuring
        run_bench(tiny_gguf, ["onnx"], threads=100_000)
    with pytest.raises(BackendError, match="llama-bench not found"):
        run_bench(tiny_gguf, ["numpy"], threads=1, prompt_tokens=2, gen_tokens=1, repeats=1,
                  peer=str(tmp_path / "nope" / "llama-bench"))
    with pytest.raises(ModelFileError, match="needs a .gguf model"):
        run_bench(tiny_hf_dir, ["numpy"], threads=1, prompt_tokens=2, gen_tokens=1, repeats=1, peer=sys.executable)
    assert not os.path.exists(tmp_path / "cache" / "peer")


def test_bench_constrained_decode_side_by_side(tmp_path, tiny_gguf, monkeypatch):
    """--json-schema: each round decodes under the schema and then unconstrained for as many tokens."""
    pytest.importorskip("llguidance")
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    schema = {"type": "object", "properties": {"action": {"enum": ["forward", "back"]},
                                               "speed": {"type": "integer", "minimum": 0, "maximum": 100}},
              "required": ["action", "speed"], "additionalProperties": False}
    r = run_bench(tiny_gguf, ["numpy"], threads=1, prompt_tokens=8, gen_tokens=60, repeats=2, schema=schema)
    (x,) = r["results"]
    c = x["constrained"]
    assert len(c["ratio_runs"]) == 2 and c["ratio"] == pytest.approx(sum(c["ratio_runs"]) / 2)
    assert c["satisfied"] and 0 < c["forced_tokens"] < c["tokens"] <= 60
    assert c["decode_tok_s"] > 0 and c["unconstrained_decode_tok_s"] > 0
    assert 0 < x["compile_ms"] < 1000 and x["first_constraint_s"] > 0
