"""What a newcomer meets first: `run` on an instruct model, the model's sampling defaults, --version, names
that are nearly right, the convert summary, progress on long steps, Ctrl-C at any moment."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import edge_sdk
from edge_sdk import progress
from test_cli import cli
from tiny_models import write_gguf


def test_run_answers_an_instruct_model_in_its_chat_template(tiny_gguf):
    """The tiny model carries a chat template: `run` sends PROMPT as a user turn; --raw continues it."""
    with edge_sdk.load(tiny_gguf, backend="numpy") as m:
        assert m.tokenizer.chat_template is not None
        answer = m.chat([{"role": "user", "content": "The cat"}], max_tokens=6)
        completion = m.generate("The cat", max_tokens=6)
        with_system = m.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "The cat"}],
                             max_tokens=6)
    assert answer != completion
    r = cli("run", "-m", tiny_gguf, "--backend", "numpy", "--max-tokens", "6", "The cat")
    assert r.returncode == 0, r.stderr
    assert r.stdout == answer + "\n"
    assert cli("run", "-m", tiny_gguf, "--backend", "numpy", "--max-tokens", "6", "--raw", "The cat").stdout == completion + "\n"
    assert cli("run", "-m", tiny_gguf, "--backend", "numpy", "--max-tokens", "6", "--chat", "The cat").stdout == answer + "\n"
    r = cli("run", "-m", tiny_gguf, "--backend", "numpy", "--max-tokens", "6", "--system", "Be brief.", "The cat")
    assert r.stdout == with_system + "\n"
    r = cli("run", "-m", tiny_gguf, "--chat", "--raw", "x")
    assert r.returncode == 2 and "not allowed with argument" in r.stderr


SAMPLING_KV = {"general.sampling.temp": 0.7, "general.sampling.top_k": 20, "general.sampling.top_p": 0.9,
               "general.sampling.penalty_repeat": 1.1}


def test_sampling_defaults_come_from_the_gguf_file(tmp_path, tiny_cfg, tiny_float_weights, tiny_vocab):
    path = write_gguf(str(tmp_path / "s.gguf"), tiny_cfg, tiny_float_weights, tiny_vocab, extra_kv=SAMPLING_KV)
    want = {"temperature": 0.7, "top_k": 20, "top_p": 0.9, "repetition_penalty": 1.1}
    with edge_sdk.load(path, backend="numpy") as m:
        assert m.generation_defaults == want
        sampled = m.generate("The cat", max_tokens=8, seed=3)
        assert sampled == m.generate("The cat", max_tokens=8, seed=3, **want)  # the defaults are what ran
        assert sampled != m.generate("The cat", max_tokens=8, seed=3, temperature=0, repetition_penalty=1.0)
        greedy = m.generate("The cat", max_tokens=8, temperature=0, repetition_penalty=1.0)
    # a package keeps them
    pkg = tmp_path / "pkg"
    from edge_sdk.cli import main

    assert main(["convert", path, "-o", str(pkg), "--json"]) == 0
    with edge_sdk.load(str(pkg), backend="numpy") as m:
        assert m.generation_defaults == want
        assert m.generate("The cat", max_tokens=8, seed=3) == sampled
    info = json.loads(cli("info", path, "--json").stdout)
    assert info["generation_defaults"] == want
    assert "sampling defaults: temperature 0.7, top_k 20, top_p 0.9, repetition_penalty 1.1" in cli("info", path).stdout
    # explicit flags win; --temperature 0 alone keeps the file's penalty: pass --repetition-penalty 1 for plain greedy
    r = cli("run", "-m", path, "--backend", "numpy", "--raw", "--max-tokens", "8", "--temperature", "0",
            "--repetition-penalty", "1", "The cat")
    assert r.stdout == greedy + "\n"


def test_sampling_defaults_from_generation_config(tiny_hf_dir, tmp_path):
    d = tmp_path / "hf"
    shutil.copytree(tiny_hf_dir, d)
    gen = json.loads((d / "generation_config.json").read_text())
    (d / "generation_config.json").write_text(json.dumps({**gen, "do_sample": True, "temperature": 0.6, "top_p": 0.95}))
    with edge_sdk.load(str(d), backend="numpy") as m:
        # transformers samples with top_k=50 when do_sample is set and top_k is absent
        assert m.generation_defaults == {"temperature": 0.6, "top_k": 50, "top_p": 0.95}
    (d / "generation_config.json").write_text(json.dumps({**gen, "temperature": 0.6, "repetition_penalty": 1.2}))
    with edge_sdk.load(str(d), backend="numpy") as m:  # no do_sample: transformers decodes greedily
        assert m.generation_defaults == {"temperature": 0.0, "repetition_penalty": 1.2}
    (d / "generation_config.json").write_text(json.dumps({**gen, "do_sample": True, "temperature": -1}))
    with pytest.raises(edge_sdk.ModelFileError, match=r"generation_config.json: invalid sampling default: "
                                                      r"temperature must be a finite number >= 0"):
        edge_sdk.load(str(d), backend="numpy")


def test_a_model_without_defaults_is_greedy(tiny_gguf):
    with edge_sdk.load(tiny_gguf, backend="numpy") as m:
        assert m.generation_defaults == {}
        assert m.generate("The cat", max_tokens=8) == m.generate("The cat", max_tokens=8, temperature=0)


def test_model_repr(tiny_gguf):
    with edge_sdk.load(tiny_gguf, backend="numpy", ctx=64) as m:
        assert repr(m) == (f"<edge_sdk.Model {tiny_gguf!r}: {m.config.n_params() / 1e6:.1f} M parameters, "
                           "int8 groups of 32, backend numpy, ctx 64 (KV f16)>")
    assert repr(m).endswith("ctx 64 (KV f16), closed>")


def test_version_and_near_miss_names(tiny_gguf):
    r = cli("--version")
    assert r.returncode == 0 and r.stdout == f"edge-sdk {edge_sdk.__version__}\n"
    r = cli("run", "-m", "smollm2-135", "hi")
    assert r.returncode == 1 and "did you mean smollm2-135m?" in r.stderr
    r = cli("pull", "smolm2-135m")
    assert r.returncode == 1 and "unknown model name 'smolm2-135m'; did you mean smollm2-135m?" in r.stderr
    r = cli("plan", "-m", tiny_gguf, "--board", "raspberry-pi-zero2w")
    assert r.returncode == 1 and "unknown board 'raspberry-pi-zero2w'; did you mean raspberry-pi-zero-2w?" in r.stderr
    r = cli("run", "-m", "completely-different", "hi")
    assert "did you mean" not in r.stderr


def test_convert_prints_a_summary_or_json(tiny_gguf, tmp_path):
    r = cli("convert", tiny_gguf, "-o", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote {tmp_path / 'a'}: ") and "MiB of int8 weights (groups of 32), 3 graph(s), 3 ONNX graph files; " in r.stdout
    assert r.stdout.count("\n") == 1
    r = cli("convert", tiny_gguf, "-o", str(tmp_path / "b"), "--json", "--group-size", "0")
    d = json.loads(r.stdout)
    assert d["output"] == str(tmp_path / "b") and d["graphs"] == 3 and d["weights_bytes"] > 0
    assert len(d["onnx_files"]) == 3 and all((tmp_path / "b" / f).is_file() for f in d["onnx_files"])


def test_progress_lines_for_long_steps(monkeypatch, capsys, tiny_gguf, tmp_path):
    """With EDGE_SDK_PROGRESS=1 outside a terminal, a step longer than LINE_AFTER_S reports on stderr (here the
    thresholds are 0, so every step reports); stdout keeps only the product."""
    monkeypatch.setenv("EDGE_SDK_PROGRESS", "1")
    monkeypatch.setattr(progress, "LINE_AFTER_S", 0.0)
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    text = tmp_path / "t.txt"
    text.write_text("The cat sat on the mat. " * 12)
    from edge_sdk.cli import main

    assert main(["ppl", "-m", tiny_gguf, str(text), "--json", "--window", "64", "--backend", "numpy"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["tokens"] == 129
    lines = err.splitlines()
    assert "reading tiny.gguf: done in" in err and "quantizing to int8: done in" in err
    perplexity = [line for line in lines if line.startswith("perplexity: ")]
    # two passes (float, int8) over 129 predicted tokens: the first window's float pass predicts 63 (24% of 258)
    assert perplexity[0].startswith("perplexity: 24% (")
    assert perplexity[-1].startswith("perplexity: done in ")
    monkeypatch.setenv("EDGE_SDK_PROGRESS", "0")
    assert main(["ppl", "-m", tiny_gguf, str(text), "--json", "--window", "64", "--backend", "numpy"]) == 0
    assert capsys.readouterr().err == ""


def test_progress_is_silent_for_quick_steps(monkeypatch, capsys):
    monkeypatch.setenv("EDGE_SDK_PROGRESS", "1")
    with progress.Progress("quick", 3) as p:
        for _ in range(3):
            p.update(1)
    assert capsys.readouterr().err == ""


def _edge_sdk_command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "edge-sdk")
    return [script] if os.path.isfile(script) else [sys.executable, "-m", "edge_sdk"]


@pytest.mark.parametrize("command", ["script", "module"])
def test_ctrl_c_at_any_moment(tiny_gguf, command):
    """SIGINT while starting, loading or waiting for input: one line, exit 130, never a traceback.

    `edge-sdk chat` waits on its input for ever, so the later signals land while it waits. A signal that lands
    before the interpreter has started (its own `site` import) is Python's to report, not ours: it ends the
    process silently (-2) or with "Fatal Python error: init_import_site"; such samples are not counted."""
    argv = _edge_sdk_command() if command == "script" else [sys.executable, "-m", "edge_sdk"]
    argv = argv + ["chat", "-m", tiny_gguf, "--backend", "numpy"]
    counted = 0
    for delay in (0.05, 0.15, 0.3, 0.6, 1.0, None):
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if delay is None:  # wait until it asks for input
            deadline = time.monotonic() + 120
            while p.stdout.read(1) != b">" and time.monotonic() < deadline:
                pass
        else:
            time.sleep(delay)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        err = err.decode()
        if delay is not None and p.returncode != 130 and "/edge_sdk/" not in err:
            # interpreter start-up (site, .pth files, the console script's own first lines): no frame of ours
            assert p.returncode in (1, -signal.SIGINT), (p.returncode, err)
            continue
        assert "Traceback" not in err, (delay, err)
        assert p.returncode == 130 and err.endswith("edge-sdk: interrupted\n"), (delay, p.returncode, err)
        counted += 1
    assert counted >= 3
