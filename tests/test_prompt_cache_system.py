"""`edge-sdk convert --system-prompt FILE`: the system prompt's KV rows in the package, checked at load like
any prompt-cache file, and restored for the first chat that starts with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import edge_sdk
from edge_sdk.graphs import SplitPolicy
from edge_sdk.model.config import QuantConfig

SYSTEM = "You answer in one short sentence and you like cats."
CHAT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_sdk", *args], capture_output=True, text=True, timeout=300)


def native_ok() -> bool:
    from edge_sdk.backends.native import library

    return library.available()[0]


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_gguf):
    """(the package with a system prompt for numpy and native (where built), one without, the CLI's report)."""
    d = tmp_path_factory.mktemp("pcs")
    (d / "system.txt").write_text(SYSTEM)
    backends = ["numpy"] + (["native"] if native_ok() else [])
    args = [a for b in backends for a in ("--system-prompt-backend", b)]
    r = cli("convert", tiny_gguf, "-o", str(d / "pkg"), "--system-prompt", str(d / "system.txt"), *args, "--json")
    assert r.returncode == 0, r.stderr
    from edge_sdk.export.convert import convert

    convert(tiny_gguf, d / "plain", QuantConfig(), SplitPolicy())
    return str(d / "pkg"), str(d / "plain"), json.loads(r.stdout)


def test_the_package_lists_its_system_prompt_caches(made):
    pkg, _, report = made
    manifest = json.loads(open(os.path.join(pkg, "manifest.json")).read())
    names = sorted(rel for rel in manifest["files"] if rel.startswith("prompt_cache/"))
    want = ["prompt_cache/system.native.f16.kvc"] * native_ok() + ["prompt_cache/system.numpy.f16.kvc"]
    assert names == want
    assert report["system_prompt"] == {rel: 43 for rel in want}  # the system turn: 43 tokens (the tiny vocabulary spells it in short pieces)


@pytest.mark.parametrize("backend", ["numpy", "native"])
def test_the_first_chat_restores_the_system_prompt(made, backend):
    if backend == "native" and not native_ok():
        pytest.skip("native core unavailable")
    pkg, plain, _ = made
    with edge_sdk.load(pkg, backend=backend, ctx=128, slots=1) as m, \
            edge_sdk.load(plain, backend=backend, ctx=128, slots=0) as cold:
        assert m.info()["prompt_cache"]["pinned_tokens"] == [43]
        assert m.chat(CHAT, max_tokens=8) == cold.chat(CHAT, max_tokens=8)
        assert (m.last_stats["cached_tokens"], m.last_stats["restored_tokens"]) == (43, 43)
        other = [{"role": "system", "content": "Be rude."}, {"role": "user", "content": "hi"}]
        m.chat(other, max_tokens=4)  # the live cache and the only slot now hold another conversation
        cold._gen.reset()
        again = [CHAT[0], {"role": "user", "content": "tell me about dogs"}]
        assert m.chat(again, max_tokens=8) == cold.chat(again, max_tokens=8)
        # the first 8 tokens ("<|im_start|>system\n" in the tiny vocabulary) were kept in place, the rest restored
        assert (m.last_stats["reused_tokens"], m.last_stats["restored_tokens"]) == (8, 35)
        assert m.prompt_cache.pinned[0].tokens == m.tokenize(m.chat_prompt(CHAT[:1], add_generation_prompt=False),
                                                             special=True)


def test_a_backend_without_one_says_so(made):
    pkg, _, _ = made
    with pytest.warns(RuntimeWarning, match=r"has a precomputed system prompt for .*system.numpy.f16.kvc, not for "
                                            r"the numpy backend with f32 KV values"):
        m = edge_sdk.load(pkg, backend="numpy", kv_dtype="f32", ctx=128)
    with m:
        assert m.info()["prompt_cache"]["pinned_tokens"] == []


def test_a_damaged_or_foreign_system_prompt_is_refused(made, tmp_path, tiny_cfg, tiny_vocab):
    """Re-signed packages (their manifests' checksums recomputed) whose system-prompt file is damaged, or made
    by another model, load with a warning and without the slot."""
    from backend_checks import resigned_copy
    from tiny_models import tiny_weights, write_gguf

    pkg, _, _ = made
    rel = "prompt_cache/system.numpy.f16.kvc"
    data = open(os.path.join(pkg, rel), "rb").read()
    flipped = data[:-100] + bytes([data[-100] ^ 1]) + data[-99:]
    damaged = resigned_copy(pkg, tmp_path / "damaged", {rel: flipped})
    with pytest.warns(RuntimeWarning, match=r"system.numpy.f16.kvc: checksum does not match its content"):
        m = edge_sdk.load(damaged, backend="numpy", ctx=128)
    with m:
        assert m.info()["prompt_cache"]["pinned_tokens"] == []
        m.chat(CHAT, max_tokens=2)
        assert m.last_stats["cached_tokens"] == 0
    other = write_gguf(str(tmp_path / "other.gguf"), tiny_cfg, tiny_weights(tiny_cfg, seed=1), tiny_vocab)
    (tmp_path / "system.txt").write_text(SYSTEM)
    r = cli("convert", other, "-o", str(tmp_path / "other"), "--system-prompt", str(tmp_path / "system.txt"),
            "--system-prompt-backend", "numpy")
    assert r.returncode == 0, r.stderr
    assert "system prompt: 43 tokens in prompt_cache/system.numpy.f16.kvc" in r.stdout
    foreign = resigned_copy(pkg, tmp_path / "foreign", {rel: open(tmp_path / "other" / rel, "rb").read()})
    with pytest.warns(RuntimeWarning, match=r"system.numpy.f16.kvc: made by another model"):
        edge_sdk.load(foreign, backend="numpy", ctx=128).close()


def test_bad_system_prompt_arguments(tiny_gguf, tmp_path):
    r = cli("convert", tiny_gguf, "-o", str(tmp_path / "p"), "--system-prompt-backend", "numpy")
    assert r.returncode == 2 and "--system-prompt-backend needs --system-prompt FILE" in r.stderr
    r = cli("convert", tiny_gguf, "-o", str(tmp_path / "p"), "--system-prompt", str(tmp_path / "missing.txt"))
    assert r.returncode == 2 and "cannot read the system prompt" in r.stderr
    (tmp_path / "s.txt").write_text("hi")
    r = cli("convert", tiny_gguf, "-o", str(tmp_path / "p"), "--system-prompt", str(tmp_path / "s.txt"),
            "--system-prompt-backend", "tflite")
    assert r.returncode == 2 and "needs the TFLite graphs: add --backend tflite" in r.stderr
    (tmp_path / "empty.txt").write_text("  \n")
    r = cli("convert", tiny_gguf, "-o", str(tmp_path / "p"), "--system-prompt", str(tmp_path / "empty.txt"),
            "--system-prompt-backend", "numpy")
    assert r.returncode != 0 and "the system prompt is empty" in r.stderr
    assert not os.path.exists(tmp_path / "p")  # a failed conversion leaves nothing


def test_a_signed_package_signs_its_system_prompt(tiny_gguf, tmp_path):
    pytest.importorskip("nacl", reason="signing needs edge-sdk[sign] (PyNaCl)")
    assert cli("keygen", "-o", str(tmp_path / "key")).returncode == 0
    (tmp_path / "system.txt").write_text(SYSTEM)
    r = cli("convert", tiny_gguf, "-o", str(tmp_path / "pkg"), "--system-prompt", str(tmp_path / "system.txt"),
            "--system-prompt-backend", "numpy", "--sign", str(tmp_path / "key"))
    assert r.returncode == 0, r.stderr
    with edge_sdk.load(tmp_path / "pkg", backend="numpy", ctx=128, trusted_keys=[tmp_path / "key.pub"]) as m:
        assert m.info()["prompt_cache"]["pinned_tokens"] == [43]
