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
# prefill: the median 500 tok/s for the run's prompt, 10 * n tok/s for the sweep's other lengths
prompts = [int(n) for n in arg("-p").split(",")]
print(json.dumps([
    {{"n_prompt": n, "n_gen": 0, "n_threads": int(arg("-t")), "avg_ts": 1.0,
      "samples_ts": [400.0, 500.0, 600.0] if i == 0 else [10.0 * n]}} for i, n in enumerate(prompts)] + [
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
        # the bandwidth is probed in each round; the roofline's is the fastest read of the whole run
        assert len(x["bandwidth_runs"]) == 2 and max(x["bandwidth_runs"]) <= r["bandwidth_gbps"]
        fractions = [d * per_token / (r["bandwidth_gbps"] * 1e9) for d in x["decode_runs"]]
        assert x["roofline_fraction"] == pytest.approx(sum(fractions) / 2)
        assert x["roofline_fraction_range"] == pytest.approx([min(fractions), max(fractions)])
        assert x["roofline_fraction_range"][1] <= 1.0
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


# ---- the arithmetic of the report, pinned with made-up timings ------------------------------------------


def test_paired_ratios_are_medians_of_per_round_ratios():
    from edge_sdk.bench.summary import paired_ratio, ratio

    # per round 1.2, 1.1, 2.0: the median is 1.2; the ratio of the medians would be 60 / 50 = 1.2 too, not here:
    assert paired_ratio([60.0, 66.0, 50.0], [50.0, 60.0, 25.0]) == pytest.approx(1.2)
    a = {"decode_tok_s": 60.0, "decode_runs": [60.0, 66.0, 50.0]}
    b = {"decode_tok_s": 50.0, "decode_runs": [50.0, 60.0, 100.0]}
    assert ratio(a, b, "decode_tok_s", paired=True) == pytest.approx(1.1)   # of 1.2, 1.1, 0.5
    assert ratio(a, b, "decode_tok_s", paired=False) == pytest.approx(1.2)  # 60 / 50
    with pytest.raises(ValueError, match="paired rounds differ in number: 2 and 3"):
        paired_ratio([1.0, 2.0], [1.0, 2.0, 3.0])


def test_depth_sweep_and_peer_ratios_from_fake_turns():
    from edge_sdk.bench.summary import summarize_turns, versus

    def turn(prefill, decode, base, at, sweep, load):
        return {"base": {"prefill_tok_s": prefill, "decode_tok_s": decode, "loadavg": load, "bandwidth_gbps": 20.0},
                "depth": {"base_decode_tok_s": base, "depth_decode_tok_s": at, "loadavg": load},
                "sweep": {16: {"prefill_tok_s": sweep[0], "loadavg": load}, 512: {"prefill_tok_s": sweep[1], "loadavg": load}}}

    ours = summarize_turns([turn(600.0, 100.0, 100.0, 90.0, (300.0, 700.0), [1.0, 1.5]),
                            turn(500.0, 80.0, 80.0, 60.0, (320.0, 650.0), [1.5, 2.5]),
                            turn(700.0, 90.0, 95.0, 76.0, (280.0, 600.0), [2.5, 2.0])], 1500, (16, 512))
    assert (ours["prefill_tok_s"], ours["decode_tok_s"]) == (600.0, 90.0)
    assert ours["loadavg_range"] == [1.0, 2.5]
    d = ours["depth"]
    assert (d["depth"], d["base_depth"], d["decode_tok_s"], d["base_decode_tok_s"]) == (1500, 64, 76.0, 95.0)
    assert d["vs_base"] == pytest.approx(0.8)  # per round 0.9, 0.75, 0.8
    assert [(s["prompt_tokens"], s["prefill_tok_s"]) for s in ours["sweep"]] == [(16, 300.0), (512, 650.0)]
    peer = summarize_turns([turn(500.0, 50.0, 80.0, 40.0, (200.0, 500.0), [1.0, 1.0]),
                            turn(500.0, 40.0, 40.0, 50.0, (160.0, 650.0), [1.0, 1.0]),
                            turn(350.0, 60.0, 95.0, 38.0, (400.0, 400.0), [1.0, 1.0])], 1500, (16, 512))
    versus(ours, peer, paired=True)
    assert ours["vs_peer"]["prefill"] == pytest.approx(1.2)         # 1.2, 1.0, 2.0
    assert ours["vs_peer"]["decode"] == pytest.approx(2.0)          # 2.0, 2.0, 1.5
    assert ours["depth"]["vs_peer"] == pytest.approx(2.0)           # 2.25, 1.2, 2.0
    assert ours["depth"]["base_vs_peer"] == pytest.approx(1.25)     # 1.25, 2.0, 1.0
    assert [s["vs_peer"] for s in ours["sweep"]] == pytest.approx([1.5, 1.4])  # (1.5, 2.0, 0.7), (1.4, 1.0, 1.5)


def test_the_roofline_bandwidth_is_the_fastest_read_of_the_run():
    from edge_sdk.bench.machine import roofline, roofline_bandwidth

    # an idle machine: the best probe pass bounds every decode
    idle = roofline_bandwidth([20.0, 18.0, 19.5], [8.4, 8.68])
    assert (idle["gbps"], idle["source"], idle["probe_range_gbps"]) == (20.0, "probe", [18.0, 20.0])
    r = roofline([60.0, 62.0], 140_000_000, idle["gbps"])
    assert r["fraction_runs"] == pytest.approx([0.42, 0.434]) and r["fraction"] == pytest.approx(0.427)
    assert r["roofline_decode_tok_s"] == pytest.approx(20e9 / 140e6)
    # the figures that printed 121-152% under load: decode 46.7 tok/s x 140 MB = 6.54 GB/s beside probe rounds
    # starved to 4.3-5.4 GB/s. The bound is then the decode's own read, and the fastest round is 100%.
    busy = roofline_bandwidth([4.3, 5.4], [46.7 * 0.14, 40.0 * 0.14])
    assert busy["source"] == "decode" and busy["gbps"] == pytest.approx(6.538)
    r = roofline([46.7, 40.0], 140_000_000, busy["gbps"])
    assert r["fraction_range"] == pytest.approx([40.0 / 46.7, 1.0]) and r["fraction"] == pytest.approx(0.9283, abs=1e-4)
    # handed a bandwidth below what a decode read, roofline() itself takes the decode's read: never above 1
    r = roofline([46.7, 47.0], 140_000_000, 4.3)
    assert r["fraction_range"] == pytest.approx([46.7 / 47.0, 1.0]) and r["bandwidth_gbps"] == pytest.approx(6.58)
    with pytest.raises(ValueError, match="no bandwidth was measured"):
        roofline_bandwidth([])
    with pytest.raises(ValueError, match="bytes per token > 0"):
        roofline([50.0], 0, 20.0)


def test_the_probe_keeps_its_best_pass(monkeypatch):
    from edge_sdk.bench import machine

    probe = machine.BandwidthProbe(threads=2, mib=8)
    clock = iter([0.0, 0.004, 1.0, 1.001, 2.0, 2.002])  # passes of 4, 1 and 2 ms over 8 MiB
    monkeypatch.setattr(machine.time, "perf_counter", lambda: next(clock))
    assert probe.measure(3) == pytest.approx(8 * 2**20 / 0.001 / 1e9)


def test_llama_bench_rows_and_llama_cli_timings():
    from edge_sdk.bench.peer import parse_llama_bench_rows, parse_llama_cli_timings

    rows = parse_llama_bench_rows(json.dumps([
        {"n_prompt": 64, "n_gen": 0, "samples_ts": [400.0, 380.0, 500.0]},
        {"n_prompt": 512, "n_gen": 0, "avg_ts": 350.5},
        {"n_prompt": 0, "n_gen": 32, "samples_ts": [80.0, 90.0]}]))
    assert rows == {"prefill": {64: 400.0, 512: 350.5}, "decode": {32: 85.0}}
    # what llama-cli printed here for SmolLM2-135M Q8_0 (-n 8)
    stderr = """llama_perf_sampler_print:    sampling time =       0.48 ms /    13 runs   (    0.04 ms per token, 27139.87 tokens per second)
llama_perf_context_print:        load time =     164.90 ms
llama_perf_context_print: prompt eval time =      40.78 ms /     5 tokens (    8.16 ms per token,   122.60 tokens per second)
llama_perf_context_print:        eval time =     116.66 ms /     7 runs   (   16.67 ms per token,    60.00 tokens per second)
llama_perf_context_print:       total time =     161.98 ms /    12 tokens
"""
    t = parse_llama_cli_timings(stderr)
    assert (t["prompt_tokens"], t["decode_steps"]) == (5, 7)
    assert t["prefill_tok_s"] == pytest.approx(5 / 0.04078) and t["decode_tok_s"] == pytest.approx(7 / 0.11666)
    with pytest.raises(BackendError, match="printed no prompt and eval timings"):
        parse_llama_cli_timings("error: failed to load model")


def test_q8_bytes_per_token_count_every_tensor_once(tiny_gguf, tiny_cfg):
    from gguf import GGUFReader

    from edge_sdk.bench.peer import gguf_decode_bytes_per_token

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(tiny_gguf).tensors}
    # the tiny model has its own output.weight: the embedding table is then read one row at a time, not whole
    assert "output.weight" in tensors and not tiny_cfg.tied_embeddings
    assert gguf_decode_bytes_per_token(tiny_gguf) == sum(tensors.values()) - tensors["token_embd.weight"]


def test_a_text_of_n_tokens(tiny_gguf):
    from edge_sdk.bench.peer import text_of_tokens
    from edge_sdk.importers.gguf_vocab import tokenizer_from_gguf

    tok = tokenizer_from_gguf(tiny_gguf)
    for n in (1, 7, 64, 300):
        text = text_of_tokens(tok, n)
        assert 0 < len(tok.encode(text)) <= n and len(tok.encode(text)) >= n - 2, n


def test_load_averages_around_each_measurement(monkeypatch):
    from edge_sdk.bench import busy

    values = iter([(1.25, 0.0, 0.0), (2.5, 0.0, 0.0)])
    monkeypatch.setattr(busy.os, "getloadavg", lambda: next(values))
    assert busy.measured(lambda: {"decode_tok_s": 50.0}) == {"decode_tok_s": 50.0, "loadavg": [1.25, 2.5]}
    assert busy.load_range([{"loadavg": [1.0, 3.0]}, {"loadavg": [0.5, 2.0]}, {}]) == [0.5, 3.0]


def test_busy_processes_spin_for_the_block_and_end_with_it():
    import time

    from edge_sdk.bench.busy import BusyLoad

    def cpu_seconds(pid: int) -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, s

    with BusyLoad(2) as load:
        pids = load.pids
        # both run on the CPU: each gathers 0.2 s of it (about 0.2 s on an idle box; the deadline is for a
        # loaded one, where they share the cores with everything else)
        deadline = time.monotonic() + 60.0
        cpu = [cpu_seconds(pid) for pid in pids]
        while min(cpu) <= 0.2 and time.monotonic() < deadline:
            time.sleep(0.2)
            cpu = [cpu_seconds(pid) for pid in pids]
    assert len(pids) == 2 and all(c > 0.2 for c in cpu), cpu
    assert all(not os.path.exists(f"/proc/{pid}") for pid in pids)
    with pytest.raises(ValueError, match="busy must be a number of processes from 0 to 64, got -1"):
        BusyLoad(-1)


def test_measures_are_checked():
    from edge_sdk.bench.schedule import Measures

    assert Measures(64, 32, 1500, (16, 64, 512)).peer_prompts == [64, 16, 512]
    with pytest.raises(ValueError, match="must be from 1 to"):
        Measures(64, 32, depth=0)
    with pytest.raises(ValueError, match="the sweep lists a length twice"):
        Measures(64, 32, sweep=(16, 16))


# ---- one real run on the tiny model: the new report fields agree with each other ----------------------------

FAKE_CLI = """#!{python}
import sys
a = sys.argv[1:]
arg = lambda k: a[a.index(k) + 1]
words = len(open(arg("-f")).read().split()) if "-f" in a else 5
# decode after a longer prompt is slower: 10 steps take (10 + words) ms
sys.stderr.write(f"llama_perf_context_print: prompt eval time = 100.00 ms / {{words}} tokens (x)\\n"
                 f"llama_perf_context_print:        eval time = {{10 + words}}.00 ms / 10 runs   (x)\\n")
"""


def test_bench_depth_sweep_busy_report(tmp_path, tiny_gguf, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    peer = script(bin_dir / "llama-bench", FAKE_BENCH)
    script(bin_dir / "llama-quantize", FAKE_QUANTIZE)
    script(bin_dir / "llama-cli", FAKE_CLI)
    r = run_bench(tiny_gguf, ["numpy"], threads=1, prompt_tokens=8, gen_tokens=4, repeats=2, peer=peer,
                  depth=40, sweep=(4, 16), busy=1)
    (x,) = r["results"]
    p = r["peer"]
    assert (r["depth"], r["sweep"], r["busy"]) == (40, [4, 16], 1)
    d = x["depth"]
    assert (d["depth"], d["base_depth"]) == (40, 64) and len(d["decode_runs"]) == len(d["base_decode_runs"]) == 2
    assert d["vs_base"] == pytest.approx(sum(a / b for a, b in zip(d["decode_runs"], d["base_decode_runs"])) / 2)
    # the fake llama-cli: 10 steps in (10 + words of the prompt file) ms
    pd = p["depth"]
    assert pd["decode_runs"] == [pytest.approx(10 / (10 + pd["prompt_tokens_read"]) * 1e3)] * 2
    assert d["vs_peer"] == pytest.approx(sum(a / pd["decode_tok_s"] for a in d["decode_runs"]) / 2)
    assert [s["prompt_tokens"] for s in x["sweep"]] == [4, 16] and len(x["sweep"][0]["prefill_runs"]) == 2
    assert [s["prefill_tok_s"] for s in p["sweep"]] == [40.0, 160.0]  # the fake llama-bench: 10 * n tok/s
    for s in x["sweep"]:
        assert s["vs_peer"] == pytest.approx(sum(v / (10.0 * s["prompt_tokens"]) for v in s["prefill_runs"]) / 2)
    # every row carries the load it ran under; the busy process kept it up, and it is gone now
    for row in (x, p, d, pd, *x["sweep"]):
        lo, hi = row["loadavg_range"]
        assert 0 <= lo <= hi, row
    assert r["loadavg_range"][0] <= r["loadavg_range"][1]
    # the roofline: one bandwidth for the run, at least every probe pass and every decode's own read
    reads = [v * row["decode_bytes_per_token"] / 1e9 for row in (x, p) for v in row["decode_runs"]]
    assert r["bandwidth_gbps"] == max(max(reads), r["bandwidth_range_gbps"][1])
    assert r["bandwidth_source"] in ("probe", "decode") and r["bandwidth_threads"] == 1
    for row in (x, p):
        assert 0 < row["roofline_fraction_range"][0] <= row["roofline_fraction"] <= row["roofline_fraction_range"][1] <= 1
    assert p["decode_bytes_per_token"] > 0 and len(p["bandwidth_runs"]) == 2
    args = open(p["model"] + ".args").read().splitlines()
    assert args == [f"-m {p['model']} -t 1 -p 8,4,16 -n 4 -r 1 -o json"] * 2


def test_bench_cli_prints_depth_and_sweep(tmp_path, tiny_gguf, monkeypatch, capsys):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    assert main(["bench", "-m", tiny_gguf, "--backend", "numpy", "--threads", "1", "--prompt-tokens", "4",
                 "--gen-tokens", "2", "--repeats", "1", "--depth", "20", "--sweep", "2,6"]) == 0
    out = capsys.readouterr().out
    assert "numpy depth: decode" in out and "after 20 tokens" in out and "after 64:" in out
    assert "prefill tok/s by prompt length: numpy" in out and "\n       2: " in out and "\n       6: " in out
    assert "read bandwidth" in out and "load average" in out


# ---- peak RSS of whole runs ----------------------------------------------------------------------------------


def test_child_peak_rss_is_the_childs_own():
    import numpy as np

    from edge_sdk.bench.rss import child_peak_rss

    hold = np.ones(200 * 2**20 // 8)  # this process holds 200 MiB: a direct child would report at least that
    floor = child_peak_rss(["true"])["peak_rss_bytes"]
    assert floor < 40 * 2**20
    big = child_peak_rss([sys.executable, "-c", "b = bytearray(96 << 20)"])["peak_rss_bytes"]
    assert 96 * 2**20 < big < 96 * 2**20 + 60 * 2**20
    with pytest.raises(BackendError, match="failed \\(3\\)"):
        child_peak_rss([sys.executable, "-c", "raise SystemExit(3)"])
    del hold


FAKE_RSS_CLI = """#!{python}
import sys
b = bytearray(48 << 20)
sys.stderr.write("llama_perf_context_print:        eval time = 100.00 ms / 63 runs   (x)\\n")
"""


def test_rss_mode_on_the_tiny_model(tmp_path, tiny_gguf, monkeypatch):
    from edge_sdk.bench.rss import run_rss

    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    peer = script(bin_dir / "llama-bench", FAKE_BENCH)
    script(bin_dir / "llama-quantize", FAKE_QUANTIZE)
    script(bin_dir / "llama-cli", FAKE_RSS_CLI)
    r = run_rss(tiny_gguf, peer, threads=1, repeats=2, gen_tokens=8, ctx=64)
    ours, other = r["ours"], r["peer"]
    assert len(ours["peak_rss_runs"]) == len(other["peak_rss_runs"]) == 2
    assert 48 * 2**20 < other["peak_rss_bytes"] < 100 * 2**20 and other["generated_tokens"] == 64
    assert ours["peak_rss_bytes"] > 30 * 2**20 and 1 <= ours["generated_tokens"] <= 8
    assert r["ratio"] == pytest.approx(sum(a / b for a, b in zip(ours["peak_rss_runs"], other["peak_rss_runs"])) / 2)
    assert "--max-tokens 8 --ctx 64 --threads 1" in ours["command"] and "-c 64 -n 8" in other["command"]
    assert r["launcher_floor_bytes"] < 40 * 2**20 and r["loadavg_range"][0] <= r["loadavg_range"][1]
