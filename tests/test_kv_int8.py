"""The int8 KV cache (`kv_dtype="int8"`): one symmetric int8 block per (layer, kv head, position) row.

The numpy int8 reference quantizes each row of keys or values as the native core quantizes an activation
block; both read the integers with their scales applied in the same order, so the native core's logits and
cache equal the reference's bit for bit (TOL_NATIVE_INT8_KV = 0). Against an f32 cache the int8 one moves
the tiny model's logits by a bounded amount, and greedy tokens are pinned. ONNX Runtime and LiteRT keep
f32 caches and refuse int8 with the reason.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import edge_sdk
from edge_sdk.errors import BackendError, InvalidArgumentError
from edge_sdk.model.config import QuantConfig
from edge_sdk.model.int8_reference import Int8Forward
from edge_sdk.model.kv_cache import KVCache
from edge_sdk.model.quantize import quantize_weights
from edge_sdk.model.reference import FloatForward
from edge_sdk.model.sampling_params import SamplingParams

from test_cli import cli
from test_generate import GREEDY_IDS

TOL_NATIVE_INT8_KV = 0.0  # max |native - numpy int8 reference| logits, both with int8 caches: the same arithmetic
TOL_INT8_VS_F32_KV = 0.15  # max |logits(int8 KV) - logits(f32 KV)| over a 40-token prompt; measured 0.066 (int8
# model; f16 KV: 0.050) and 0.020 (float model); a scale left out or applied twice moves them by whole units
PROMPT = np.random.default_rng(1).integers(0, 306, 40)
GREEDY_INT8_KV_IDS = [79, 247, 117, 125, 168, 16, 34, 12, 48, 236, 128, 295, 218, 78, 28, 216, 34, 79, 78, 28]
# the f32-KV greedy tokens continue the same way (GREEDY_IDS are their first 10)


def native_ok() -> None:
    from edge_sdk.backends.native import library

    ok, why = library.available()
    if not ok:
        pytest.skip(f"native core unavailable: {why}")


@pytest.fixture(scope="module")
def tiny_q(tiny_cfg, tiny_float_weights):
    return quantize_weights(tiny_cfg, tiny_float_weights, QuantConfig())


def test_rows_are_quantized_as_the_core_quantizes_activations(tiny_cfg):
    cache = KVCache(tiny_cfg, ctx=4, dtype="int8")
    assert cache.k.dtype == np.int8 and cache.k_scale.shape == (2, 2, 4)
    k = np.zeros((1, 2, 16), np.float32)
    k[0, 0, :4] = [1.0, -2.0, 0.5, 0.3]  # amax 2: x * 63.5 -> 63.5 ties to 64, 31.75 -> 32, 19.05 -> 19
    v = np.full((1, 2, 16), -0.25, np.float32)
    cache.store(layer=1, pos=2, k=k, v=v)
    assert cache.k[1, 0, 2, :4].tolist() == [64, -127, 32, 19] and not cache.k[1, 0, 2, 4:].any()
    assert cache.k_scale[1, 0, 2] == np.float32(2.0) / np.float32(127.0)
    assert cache.k_scale[1, 1, 2] == 0.0 and not cache.k[1, 1, 2].any()  # an all-zero row: scale 0, q 0
    assert (cache.v[1, :, 2] == -127).all() and (cache.v_scale[1, :, 2] == np.float32(0.25) / np.float32(127)).all()
    kd, vd = cache.read(layer=1, end=3)
    assert kd.shape == (2, 3, 16) and np.abs(kd[0, 2, :4] - k[0, 0, :4]).max() <= 2.0 / 127 / 2
    assert np.array_equal(vd[:, 2], np.full((2, 16), np.float32(-127) * (np.float32(0.25) / np.float32(127))))
    with pytest.raises(InvalidArgumentError, match="KV cache dtype must be one of f32, f16, int8, got 'q4'"):
        KVCache(tiny_cfg, ctx=4, dtype="q4")


def test_native_int8_kv_equals_the_numpy_int8_reference(tiny_cfg, tiny_q):
    native_ok()
    from edge_sdk.backends.native.backend import NativeBackend

    ref = Int8Forward(tiny_cfg, tiny_q, ctx=64, kv_dtype="int8")
    nat = NativeBackend(tiny_cfg, QuantConfig(), tiny_q, 64, "int8", threads=2, prefill_chunk=16)
    try:
        diffs = [np.abs(nat.forward(PROMPT, 0) - ref.forward(PROMPT, 0)).max()]  # 3 chunks of the core
        for i, t in enumerate((3, 4, 5)):
            a, b = nat.forward(np.array([t]), 40 + i, last_only=True), ref.forward(np.array([t]), 40 + i, last_only=True)
            diffs.append(np.abs(a - b).max())
        assert max(diffs) <= TOL_NATIVE_INT8_KV
        k, v = nat.core.kv_cache
        ks, vs = nat.core.kv_scales
        assert k.dtype == np.int8
        np.testing.assert_array_equal(k[:, :, :43], ref.cache.k[:, :, :43])
        np.testing.assert_array_equal(v[:, :, :43], ref.cache.v[:, :, :43])
        np.testing.assert_array_equal(ks[:, :, :43], ref.cache.k_scale[:, :, :43])
        np.testing.assert_array_equal(vs[:, :, :43], ref.cache.v_scale[:, :, :43])
        assert (ks[:, :, :43] > 0).all() and not ks[:, :, 43:].any()
    finally:
        nat.close()


def test_int8_kv_moves_logits_by_a_bounded_amount(tiny_cfg, tiny_float_weights, tiny_q):
    f32 = Int8Forward(tiny_cfg, tiny_q, ctx=64, kv_dtype="f32").forward(PROMPT, 0)
    int8 = Int8Forward(tiny_cfg, tiny_q, ctx=64, kv_dtype="int8").forward(PROMPT, 0)
    assert 0 < np.abs(int8 - f32).max() <= TOL_INT8_VS_F32_KV
    f32 = FloatForward(tiny_cfg, tiny_float_weights, ctx=64, kv_dtype="f32").forward(PROMPT, 0)
    int8 = FloatForward(tiny_cfg, tiny_float_weights, ctx=64, kv_dtype="int8").forward(PROMPT, 0)
    assert 0 < np.abs(int8 - f32).max() <= TOL_INT8_VS_F32_KV


@pytest.mark.parametrize("backend", ["numpy", "native"])
def test_greedy_tokens_with_an_int8_cache(tiny_gguf, backend):
    if backend == "native":
        native_ok()
    with edge_sdk.load(tiny_gguf, backend=backend, ctx=64, kv_dtype="int8") as m:
        assert m.details["kv_dtype"] == "int8"
        ids = list(m._gen.stream_tokens(m.tokenize("The cat"), SamplingParams(max_tokens=20)))
    assert ids == GREEDY_INT8_KV_IDS and ids[:10] == GREEDY_IDS


@pytest.fixture(scope="module")
def tiny_pkg(tmp_path_factory, tiny_gguf):
    from edge_sdk.export.convert import convert
    from edge_sdk.graphs import SplitPolicy

    out = tmp_path_factory.mktemp("kv8_pkg")
    convert(tiny_gguf, out, QuantConfig(), SplitPolicy(layers_per_graph=1), tflite_graphs=True)
    return str(out)


@pytest.mark.parametrize("backend,name", [("onnx", "ONNX"), ("tflite", "tflite")])
def test_runtimes_with_f32_caches_refuse_int8(tiny_pkg, backend, name):
    with pytest.raises(BackendError, match=rf"the {name} backend keeps its K/V cache in float32; kv_dtype 'int8' "
                                           "is not supported"):
        edge_sdk.load(tiny_pkg, backend=backend, ctx=16, kv_dtype="int8")


def test_package_on_native_streams_with_an_int8_cache(tiny_pkg, tiny_gguf):
    native_ok()
    from edge_sdk.backends.native.stream import StreamedNativeBackend
    from edge_sdk.export.package import load_package

    be = StreamedNativeBackend(load_package(tiny_pkg, weights="file"), ctx=64, kv_dtype="int8", layers_per_graph=1)
    pkg = load_package(tiny_pkg)
    ref = Int8Forward(pkg.config, pkg.weights, ctx=64, kv_dtype="int8")
    try:
        assert np.abs(be.forward(PROMPT, 0) - ref.forward(PROMPT, 0)).max() <= TOL_NATIVE_INT8_KV
    finally:
        be.close()


def test_cli_takes_kv_dtype_int8(tmp_path, tiny_gguf):
    native_ok()
    r = cli("run", "-m", tiny_gguf, "--backend", "native", "--kv-dtype", "int8", "--max-tokens", "10", "--raw",
            "The cat")
    assert r.returncode == 0, r.stderr
    with edge_sdk.load(tiny_gguf, backend="numpy") as m:
        assert r.stdout == m.detokenize(GREEDY_INT8_KV_IDS[:10]) + "\n"
    text = tmp_path / "t.txt"
    text.write_text("The cat sat on the mat. " * 12)
    r = cli("ppl", "-m", tiny_gguf, str(text), "--json", "--window", "64", "--backend", "native", "--kv", "int8")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["kv_dtype"], d["backend"], d["tokens"]) == ("int8", "native", 129)
    r = cli("ppl", "-m", tiny_gguf, str(text), "--window", "64", "--backend", "native", "--kv-dtype", "int8")
    assert "native backend, KV int8)" in r.stdout
