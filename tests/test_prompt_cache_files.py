"""Prompt-cache files: saved at close, read at load, and refused (with a warning, never used) when they are
another model's, backend's, KV dtype's or format version's, or truncated or corrupt."""

from __future__ import annotations

import os
import struct
import warnings

import pytest

import edge_sdk
from edge_sdk.generate.kv_file import DIGEST_BYTES, FORMAT_VERSION, MAGIC, identity_of, parse_header
from edge_sdk.generate.sampling import SamplingParams
from edge_sdk.graphs import SplitPolicy
from edge_sdk.model.config import QuantConfig

TEXT = "Once upon a time there was a cat in a big old house near"  # 37 tokens
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def pkg_dir(tmp_path_factory, tiny_gguf):
    from edge_sdk.export.convert import convert

    out = tmp_path_factory.mktemp("pcf_pkg") / "pkg"
    convert(tiny_gguf, out, QuantConfig(), SplitPolicy())
    return str(out)


@pytest.fixture(scope="module")
def other_gguf(tmp_path_factory, tiny_cfg, tiny_vocab):
    """The tiny model with other weights (seed 1): the same shapes, another model."""
    from tiny_models import tiny_weights, write_gguf

    path = tmp_path_factory.mktemp("pcf_other") / "other.gguf"
    return write_gguf(str(path), tiny_cfg, tiny_weights(tiny_cfg, seed=1), tiny_vocab)


def _ids(model, ids):
    return list(model._gen.stream_tokens(ids, SamplingParams(max_tokens=MAX_TOKENS)))


def _saved(pkg_dir, folder, **kw):
    """A cache directory holding one slot: TEXT and the 12 tokens generated after it. Returns those tokens."""
    with edge_sdk.load(pkg_dir, backend="numpy", ctx=128, slots=2, prompt_cache=folder, **kw) as m:
        out = _ids(m, m.tokenize(TEXT))
    assert sorted(os.listdir(folder)) == ["slot-0.kvc"]
    return out


def test_slots_come_back_from_their_files(pkg_dir, tmp_path):
    folder = tmp_path / "pc"
    first = _saved(pkg_dir, folder)
    data = (folder / "slot-0.kvc").read_bytes()
    header, start = parse_header(data, "slot-0.kvc")
    bytes_per_token = 2 * 2 * 2 * 16 * 2  # K and V, 2 layers, 2 kv heads, head_dim 16, f16
    assert header["payload_bytes"] == (37 + MAX_TOKENS) * bytes_per_token == 12_544
    assert start % 64 == 0 and len(data) == start + 12_544 + DIGEST_BYTES
    assert header["tokens"][:37] == edge_sdk.load(pkg_dir, backend="numpy", slots=0).tokenize(TEXT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing refused
        m = edge_sdk.load(pkg_dir, backend="numpy", ctx=128, slots=2, prompt_cache=folder)
    with m:
        ids = m.tokenize(TEXT)
        assert m.info()["prompt_cache"]["slot_tokens"] == [37 + MAX_TOKENS, 0]
        assert _ids(m, ids) == first
        assert (m._gen.stats.cached_tokens, m._gen.stats.restored_tokens) == (36, 36)
        assert m.save_prompt_cache() == 0  # the slot already holds all of it: nothing changed, nothing written
        _ids(m, m.tokenize("The dog ran"))
        assert m.save_prompt_cache() == 1
    assert sorted(os.listdir(folder)) == ["slot-0.kvc", "slot-1.kvc"]  # no temporary file left behind


def test_the_model_file_and_its_package_have_one_identity(pkg_dir, tiny_gguf):
    from edge_sdk.export.package import load_package, weights_digest
    from edge_sdk.graphs.layout import flatten_weights

    pkg = load_package(pkg_dir)
    assert weights_digest(flatten_weights(pkg.weights)) == pkg.manifest["files"]["weights.bin"]
    from_package = identity_of(pkg.config, pkg.quant, pkg.tokenizer, pkg.manifest)
    with edge_sdk.load(tiny_gguf, backend="numpy", ctx=128) as m:
        from_file = identity_of(m.config, m.quant, m.tokenizer, None, _qweights(tiny_gguf))
    assert from_file == from_package and len(from_file) == 64


def _qweights(path):
    from edge_sdk.importers import import_model
    from edge_sdk.model.quantize import quantize_weights

    imported = import_model(path)
    return quantize_weights(imported.config, imported.weights, QuantConfig())


def _refused(load, folder, message):
    """Loading with `folder` warns `message` once and uses nothing: TEXT is computed from position 0."""
    with pytest.warns(RuntimeWarning, match=message) as caught:
        m = load(folder)
    assert len([w for w in caught if "prompt cache" in str(w.message)]) == 1
    with m:
        assert m.info()["prompt_cache"]["slot_tokens"] == [0, 0]
        _ids(m, m.tokenize(TEXT))
        assert m._gen.stats.cached_tokens == 0


def _rewrite(path, edit):
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(edit(data)))


def test_a_file_of_another_model_is_refused(pkg_dir, other_gguf, tmp_path):
    folder = tmp_path / "pc"
    _saved(pkg_dir, folder)
    _refused(lambda f: edge_sdk.load(other_gguf, backend="numpy", ctx=128, slots=2, prompt_cache=f), folder,
             r"slot-0.kvc: made by another model \(its weights, config or tokenizer differ from this one's\): ignored")


def test_a_file_of_another_backend_is_refused(pkg_dir, tmp_path):
    from edge_sdk.backends.native import library

    ok, why = library.available()
    if not ok:
        pytest.skip(f"native core unavailable: {why}")
    folder = tmp_path / "pc"
    _saved(pkg_dir, folder)
    _refused(lambda f: edge_sdk.load(pkg_dir, backend="native", ctx=128, slots=2, prompt_cache=f), folder,
             "slot-0.kvc: made by the numpy backend, this model runs on native: ignored")


def test_a_file_of_another_kv_dtype_is_refused(pkg_dir, tmp_path):
    folder = tmp_path / "pc"
    _saved(pkg_dir, folder)
    _refused(lambda f: edge_sdk.load(pkg_dir, backend="numpy", kv_dtype="f32", ctx=128, slots=2, prompt_cache=f),
             folder, "slot-0.kvc: holds a f16 KV cache, this model's is f32: ignored")


def test_a_file_of_another_format_version_is_refused(pkg_dir, tmp_path):
    folder = tmp_path / "pc"
    _saved(pkg_dir, folder)
    _rewrite(folder / "slot-0.kvc", lambda d: d[:8] + struct.pack("<I", FORMAT_VERSION + 1) + d[12:])
    _refused(lambda f: edge_sdk.load(pkg_dir, backend="numpy", ctx=128, slots=2, prompt_cache=f), folder,
             f"slot-0.kvc: format version {FORMAT_VERSION + 1}, this edge_sdk reads version {FORMAT_VERSION}: ignored")


@pytest.mark.parametrize("damage,message", [
    (lambda d: d[: len(d) // 2], r"bytes where its header says \d+ \(truncated or corrupt\): ignored"),
    (lambda d: d[:10], r"10 bytes, too short for a prompt-cache file \(truncated\): ignored"),
    (lambda d: d[:-1], r"bytes where its header says \d+ \(truncated or corrupt\): ignored"),
    (lambda d: d[:-200] + bytes([d[-200] ^ 1]) + d[-199:], r"checksum does not match its content \(corrupt\): ignored"),
    (lambda d: b"EDGE-KX\n" + d[8:], r"not a prompt-cache file \(it does not start with the EDGE-KV magic\): ignored"),
    (lambda d: d[:16] + b"[" + d[17:], r"its header is not valid JSON \(corrupt\): ignored"),
])
def test_a_truncated_or_corrupt_file_is_refused(pkg_dir, tmp_path, damage, message):
    folder = tmp_path / "pc"
    _saved(pkg_dir, folder)
    _rewrite(folder / "slot-0.kvc", damage)
    _refused(lambda f: edge_sdk.load(pkg_dir, backend="numpy", ctx=128, slots=2, prompt_cache=f), folder, message)


def test_a_refused_file_is_replaced_at_the_next_save(pkg_dir, tmp_path):
    folder = tmp_path / "pc"
    _saved(pkg_dir, folder)
    _rewrite(folder / "slot-0.kvc", lambda d: d[:-1])
    with pytest.warns(RuntimeWarning, match="truncated"):
        m = edge_sdk.load(pkg_dir, backend="numpy", ctx=128, slots=2, prompt_cache=folder)
    with m:
        _ids(m, m.tokenize(TEXT))
    header, _ = parse_header((folder / "slot-0.kvc").read_bytes(), "slot-0.kvc")
    assert header["n_tokens"] == 37 + MAX_TOKENS and header["backend"] == "numpy" and header["kv_dtype"] == "f16"
    assert header["ctx"] == 128 and header["arrays"][0] == {"name": "k", "dtype": "<f2", "shape": [2, 2, 0, 16],
                                                            "pos_axis": 2}


def test_writes_are_atomic(pkg_dir, tmp_path, monkeypatch):
    """A write that fails (here at the rename) leaves the previous file whole and no temporary file."""
    folder = tmp_path / "pc"
    _saved(pkg_dir, folder)
    before = (folder / "slot-0.kvc").read_bytes()
    assert before[:8] == MAGIC
    m = edge_sdk.load(pkg_dir, backend="numpy", ctx=128, slots=1, prompt_cache=folder)
    _ids(m, m.tokenize("The dog ran"))  # replaces the only slot

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        m.save_prompt_cache()
    assert sorted(os.listdir(folder)) == ["slot-0.kvc"] and (folder / "slot-0.kvc").read_bytes() == before
    with pytest.warns(RuntimeWarning, match="cannot write .*No space left on device.*its slots are lost"):
        m.close()
    monkeypatch.undo()
    assert (folder / "slot-0.kvc").read_bytes() == before
