"""The LiteRT backend: .tflite files written without TensorFlow, logits against the numpy int8 reference,
the K/V cache written in place (windows, chunked prompts), the API and CLI, clear errors, and the real
model's greedy tokens."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="LiteRT not installed (pip install 'edge-sdk[tflite]')")
pytest.importorskip("tflite", reason="the tflite schema package is not installed (pip install 'edge-sdk[tflite]')")

import edge_sdk  # noqa: E402
from edge_sdk.backends.tflite_backend import TfliteBackend, litert_interpreter  # noqa: E402
from edge_sdk.export.tflite import FlatModel, export_graph  # noqa: E402
from edge_sdk.cli import main  # noqa: E402
from edge_sdk.model.config import QuantConfig  # noqa: E402
from edge_sdk.export.convert import convert, has_tflite_graphs  # noqa: E402
from edge_sdk.errors import BackendError  # noqa: E402
from edge_sdk.graphs import SplitPolicy, specs_from_manifest  # noqa: E402
from edge_sdk.model.int8_reference import Int8Forward, int8_linear  # noqa: E402
from edge_sdk.export.package import flatten_weights, load_package  # noqa: E402
from edge_sdk.model.quantize import QMat  # noqa: E402

from backend_checks import DAMAGES, check_forward_refuses_bad_calls, resigned_copy  # noqa: E402

# max |tflite - numpy int8| on tiny-model logits (|logits| ~ 4) with the "blocks" products and LiteRT's builtin
# kernels: the hybrid BATCH_MATMUL quantizes each activation block symmetrically, as int8_reference does.
# Measured 9.5e-7.
TOL_BUILTIN = 1e-5
# the same with XNNPACK (LiteRT's default delegate): it quantizes each activation block asymmetrically
# (scale (max - min) / 255 and a zero point), a different rounding of the same blocks. Measured 0.065.
TOL_XNNPACK = 0.1
PROMPT = np.array([87, 260, 304, 5, 9])
GREEDY_IDS = [79, 247, 117, 125, 168, 16, 34, 12, 48, 236]  # tests/test_generate.py, numpy backend, "The cat"


@pytest.fixture(scope="module")
def tiny_pkg(tmp_path_factory, tiny_gguf):
    """The default .tflite products ("segments")."""
    out = tmp_path_factory.mktemp("tflite_pkg")
    info = convert(tiny_gguf, out, QuantConfig(), SplitPolicy(layers_per_graph=1), tflite_graphs=True)
    assert info["tflite_s"] > 0
    return load_package(out)


@pytest.fixture(scope="module")
def blocks_pkg(tmp_path_factory, tiny_gguf):
    """The "blocks" products: the reference's per-block arithmetic."""
    out = tmp_path_factory.mktemp("tflite_blocks_pkg")
    convert(tiny_gguf, out, QuantConfig(), SplitPolicy(layers_per_graph=1), tflite_graphs=True, tflite_linear="blocks")
    return load_package(out)


def _walk(be, ref, steps):
    """Run (tokens, pos, last_only) steps on both; the max |logits difference| of each step."""
    return [float(np.abs(be.forward(np.array(t), p, lo) - ref.forward(np.array(t), p, lo)).max()) for t, p, lo in steps]


# prompt, decode across window boundaries (step 8), a chunked second prompt (chunk 4, 15 tokens), a rewind
STEPS = ([(PROMPT, 0, False)] + [([t], 5 + i, True) for i, t in enumerate(range(3, 13))]
         + [(np.tile(PROMPT, 3), 15, False), ([1], 30, True), ([7, 8], 3, False), ([9], 5, True)])


def test_builtin_kernels_match_the_int8_reference(blocks_pkg):
    be = TfliteBackend(blocks_pkg, ctx=100, threads=1, delegate="none", prefill_chunk=4, window_step=8)
    ref = Int8Forward(blocks_pkg.config, blocks_pkg.weights, ctx=100)
    diffs = _walk(be, ref, STEPS)
    print("builtin: max |logits - reference| per call", [f"{d:.1e}" for d in diffs])
    assert max(diffs) <= TOL_BUILTIN
    # the backend's cache holds what the reference's holds (values transposed)
    k, v = be.keys[1][0], be.values[1][0]
    assert np.abs(k[:, :31] - ref.cache.k[1, :, :31]).max() <= TOL_BUILTIN
    assert np.abs(v[:, :, :31].transpose(0, 2, 1) - ref.cache.v[1, :, :31]).max() <= TOL_BUILTIN
    be.close()


def test_xnnpack_stays_within_its_tolerance(blocks_pkg):
    be = TfliteBackend(blocks_pkg, ctx=100, threads=1, prefill_chunk=4, window_step=8)
    ref = Int8Forward(blocks_pkg.config, blocks_pkg.weights, ctx=100)
    diffs = _walk(be, ref, STEPS)
    print("xnnpack: max |logits - reference| per call", [f"{d:.1e}" for d in diffs])
    assert max(diffs) <= TOL_XNNPACK
    be.close()


def test_windows_grow_in_steps_and_interpreters_resize_only_when_needed(tiny_pkg, monkeypatch):
    be = TfliteBackend(tiny_pkg, ctx=20, threads=1, prefill_chunk=4, window_step=8)
    assert [be._window_for(p) for p in (0, 1, 8, 9, 16, 17, 19)] == [8, 8, 8, 16, 16, 20, 20]
    sizes: list[tuple[int, int, int]] = []
    resize = be._map_window
    monkeypatch.setattr(be, "_map_window", lambda g, r, T, w: (sizes.append((g, T, w)), resize(g, r, T, w)))
    be.forward(np.arange(6) + 10, 0)  # two chunks of 4, the second padded
    be.forward(np.array([3]), 6)
    be.forward(np.array([4]), 7)
    be.forward(np.array([5]), 8)
    be.forward(np.array([6]), 9)
    assert sizes == [(1, 4, 8), (2, 4, 8), (1, 1, 8), (2, 1, 8), (1, 1, 16), (2, 1, 16)]
    be.close()


def test_greedy_tokens_through_the_api_and_cli(tiny_gguf, tmp_path, monkeypatch, capsys):
    # Three tokens: the reference's 4th step has a top-2 gap of 0.015 on this random model, which XNNPACK's
    # rounding (within TOL_XNNPACK) flips; the builtin kernels keep all ten (test above, same arithmetic).
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    with edge_sdk.load(tiny_gguf, backend="tflite", ctx=64, threads=1) as model:
        assert model.backend.name == "tflite"
        assert model.generate("The cat", max_tokens=3) == model.detokenize(GREEDY_IDS[:3])
    converted = list((tmp_path / "cache" / "packages" / "converted").iterdir())
    assert len(converted) == 1 and has_tflite_graphs(converted[0])
    assert main(["run", "-m", tiny_gguf, "--backend", "tflite", "--max-tokens", "3", "--ctx", "64", "--raw", "The cat"]) == 0
    assert capsys.readouterr().out == model.detokenize(GREEDY_IDS[:3]) + "\n"


def test_builtin_kernels_keep_the_reference_greedy_tokens(blocks_pkg):
    be = TfliteBackend(blocks_pkg, ctx=64, threads=1, delegate="none")
    ids = blocks_pkg.tokenizer.encode("The cat")
    logits, out = be.forward(np.array(ids), 0, last_only=True)[0], []
    for i in range(10):
        out.append(int(logits.argmax()))
        logits = be.forward(np.array(out[-1:]), len(ids) + i, last_only=True)[0]
    assert out == GREEDY_IDS
    be.close()


# ---- the files --------------------------------------------------------------------------------------


def _read(path):
    Model = importlib.import_module("tflite.Model").Model
    BuiltinOperator = importlib.import_module("tflite.BuiltinOperator").BuiltinOperator
    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    with open(path, "rb") as f:
        m = Model.GetRootAsModel(f.read(), 0)
    sg = m.Subgraphs(0)
    ops = [names[m.OperatorCodes(sg.Operators(i).OpcodeIndex()).BuiltinCode()] for i in range(sg.OperatorsLength())]
    tensors = [sg.Tensors(i) for i in range(sg.TensorsLength())]
    return m, sg, ops, tensors


def test_layer_file_reads_back_with_its_interface_and_int8_weights(blocks_pkg):
    cfg = blocks_pkg.config
    m, sg, ops, tensors = _read(blocks_pkg.file("graphs/layers_0_1.tflite"))
    assert m.Version() == 3
    inputs = [tensors[sg.Inputs(i)] for i in range(sg.InputsLength())]
    assert [t.Name().decode() for t in inputs] == ["x", "mask_past", "mask_new", "cos", "sin", "past_key.0",
                                                   "past_value.0"]
    assert [list(t.ShapeSignatureAsNumpy()) for t in inputs[5:]] == [[1, 2, -1, 16], [1, 2, 16, -1]]
    assert [tensors[sg.Outputs(i)].Name().decode() for i in range(sg.OutputsLength())] == ["x_out", "key.0", "value.0"]
    # int8 products: Q|K|V stacked, output, gate|up stacked, down; four float products in attention
    # Q|K|V taken apart by STRIDED_SLICE and gate|up by SPLIT: XNNPACK takes both (not SPLIT_V), so the whole
    # graph is one delegated partition
    assert ops.count("BATCH_MATMUL") == 4 + 4 and ops.count("STRIDED_SLICE") == 3 and "SPLIT_V" not in ops
    assert "FULLY_CONNECTED" not in ops and "CONCATENATION" in ops
    qkv = next(t for t in tensors if t.Name().decode() == "layers.0.wq+wk+wv.q")
    rows = cfg.q_dim + 2 * cfg.kv_dim
    assert qkv.Type() == 9 and list(qkv.ShapeAsNumpy()) == [cfg.dim // 32, rows, 32]  # int8 (blocks, rows, 32)
    assert list(qkv.Quantization().ScaleAsNumpy()) == [1.0]
    layer = blocks_pkg.weights.layers[0]
    data = m.Buffers(qkv.Buffer()).DataAsNumpy().view(np.int8).reshape(cfg.dim // 32, rows, 32)
    assert np.array_equal(data[1, : cfg.q_dim], layer.wq.q[:, 32:64])
    assert np.array_equal(data[1, cfg.q_dim + cfg.kv_dim :], layer.wv.q[:, 32:64])


def _one_linear(q: QMat, linear: str, delegate: str, x: np.ndarray) -> np.ndarray:
    """Run a single linear_q8 op exported with `linear` on x (T, cols)."""
    from edge_sdk.export.tflite import LINEARS, _Graph
    from edge_sdk.graphs.spec import GraphSpec, OpRecord

    rows, cols = q.shape
    op = OpRecord("linear_q8", ("x", "w.q", "w.scale"), ("y",), {"rows": rows, "cols": cols, "act_block": 32})
    g = _Graph(GraphSpec("one", "head", (), (), (), (op,)), None, {"w.q": q.q, "w.scale": q.scale}, linear)
    x_in = g.new("x", [1, -1, cols])
    g.m.inputs, g.m.outputs = [x_in], [LINEARS[linear](g, op, x_in)]
    kwargs = {}
    if delegate == "none":
        from ai_edge_litert.interpreter import OpResolverType

        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = litert_interpreter()(model_content=g.m.serialize(), num_threads=1, **kwargs)
    it.resize_tensor_input(it.get_input_details()[0]["index"], [1, x.shape[0], cols])
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x[None])
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])[0]


@pytest.mark.parametrize("linear,delegate,tol", [
    ("segments", "none", 1.0),  # measured 0.32: 96 columns = one segment, one activation scale per row
    ("blocks", "none", 1e-5),  # measured 0: the reference's arithmetic (|y| up to 21)
    ("groups", "none", 1e-5),  # measured 1.9e-6: the same blocks, one per-channel FC each, summed by ADD_N
    ("rows", "xnnpack", 1.0),  # measured 0.36: one activation scale per row, weights re-quantized per row
])
def test_linear_formulations_against_int8_linear(tiny_pkg, linear, delegate, tol):
    m = tiny_pkg.weights.layers[0].w_down  # (64, 96), groups of 32
    x = np.random.default_rng(3).standard_normal((3, m.shape[1])).astype(np.float32) * 4
    x[:, 5] = 60.0  # an outlier channel: what per-row activation scales lose on
    want = int8_linear(x, m)
    diff = np.abs(_one_linear(m, linear, delegate, x) - want).max()
    print(f"{linear}/{delegate}: max |y - int8_linear| {diff:.2e} (|y| max {np.abs(want).max():.1f})")
    assert diff <= tol


def test_segment_lengths_and_weights():
    from edge_sdk.export.tflite import segment_length, segment_weights

    assert [segment_length(c, 32) for c in (576, 1536, 960, 2048, 224, 64, 96)] == [192, 192, 192, 128, 32, 64, 96]
    assert segment_length(576, 64) == 192 and segment_length(576, 32, target=16) == 32
    rng = np.random.default_rng(5)
    q = rng.integers(-127, 128, (8, 384)).astype(np.int8)
    rows = rng.random((8, 1), dtype=np.float32) + 0.1
    same, s = segment_weights(q, rows, 192)  # per-row scales: the int8 weights are kept as they are
    assert same is q and s.shape == (8, 2) and np.array_equal(s, np.repeat(rows, 2, axis=1))
    groups = rng.random((8, 12), dtype=np.float32) + 0.1  # groups of 32: each segment of 192 quantized again
    q2, s2 = segment_weights(q, groups, 192)
    w = (q.reshape(8, 12, 32) * groups[..., None]).reshape(8, 384)
    back = (q2.reshape(8, 2, 192) * s2[..., None]).reshape(8, 384)
    assert np.abs(q2).max() == 127 and np.abs(back - w).max() <= s2.max() / 2 + 1e-6  # within half a step
    assert np.array_equal(segment_weights(q, groups, 32)[0], q)  # segments of one group: unchanged


# max |tflite - numpy int8| on tiny-model logits with the default "segments" products. The tiny model's rows
# (64 and 96 values) are single segments: one activation scale per token and weights re-quantized per row.
# Measured 0.089 (builtin kernels) and 0.075 (XNNPACK).
TOL_SEGMENTS = 0.15


@pytest.mark.parametrize("delegate", ["none", "xnnpack"])
def test_segments_stay_within_their_tolerance(tiny_pkg, delegate):
    be = TfliteBackend(tiny_pkg, ctx=100, threads=1, delegate=delegate, prefill_chunk=4, window_step=8)
    ref = Int8Forward(tiny_pkg.config, tiny_pkg.weights, ctx=100)
    diffs = _walk(be, ref, STEPS)
    print(f"segments/{delegate}: max |logits - reference| per call", [f"{d:.1e}" for d in diffs])
    assert max(diffs) <= TOL_SEGMENTS
    _, _, ops, tensors = _read(tiny_pkg.file("graphs/layers_0_1.tflite"))
    qkv = next(t for t in tensors if t.Name().decode().startswith("layers.0.wq+wk+wv.q"))
    assert list(qkv.ShapeAsNumpy()) == [1, 64 + 2 * 32, 64]  # one segment of 64 values per row
    be.close()


def test_the_manifest_records_the_products_and_stale_caches_are_converted_again(tiny_pkg, blocks_pkg):
    from pathlib import Path

    from edge_sdk.export.convert import _ready, tflite_linear_of

    assert tiny_pkg.manifest["runtimes"] == {"tflite": {"linear": "segments"}}
    assert tflite_linear_of(blocks_pkg.path) == "blocks"
    assert _ready(Path(tiny_pkg.path), tflite=True) and _ready(Path(blocks_pkg.path), tflite=False)
    assert not _ready(Path(blocks_pkg.path), tflite=True)  # a cached package from another formulation


def test_flat_model_unique_names_shared_constants_and_a_runnable_graph():
    m = FlatModel("t")
    a = m.tensor("a", [2], "float32")
    b = m.tensor("a", [2], "float32")
    assert [t["name"] for t in m.tensors] == ["a", "a_2"]  # tensor names stay unique
    assert m.const([1, 2]) == m.const([1, 2]) != m.const([1, 2], "float32")
    m.op("ADD", [a, a], [b], "AddOptions")
    m.inputs, m.outputs = [a], [b]
    it = litert_interpreter()(model_content=m.serialize(), num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.array([1.5, -2.0], np.float32))
    it.invoke()
    assert it.get_tensor(it.get_output_details()[0]["index"]).tolist() == [3.0, -4.0]


# ---- errors -----------------------------------------------------------------------------------------


def test_bad_calls_raise_clear_errors(tiny_pkg, tmp_path, tiny_gguf):
    be = TfliteBackend(tiny_pkg, ctx=8, threads=1)
    check_forward_refuses_bad_calls(be)
    with pytest.raises(ValueError, match=r"ctx must be in \[1, 128\]"):
        TfliteBackend(tiny_pkg, ctx=129)
    with pytest.raises(BackendError, match="kv_dtype 'f16' is not supported"):
        TfliteBackend(tiny_pkg, ctx=8, kv_dtype="f16")
    with pytest.raises(ValueError, match="delegate must be one of xnnpack, none"):
        TfliteBackend(tiny_pkg, ctx=8, delegate="gpu")
    plain = tmp_path / "plain"
    convert(tiny_gguf, plain, QuantConfig(), SplitPolicy())
    assert not has_tflite_graphs(plain)
    with pytest.raises(BackendError, match="no TFLite graphs; convert the model again with `edge-sdk convert --backend tflite`"):
        TfliteBackend(load_package(plain), ctx=8)


def test_missing_litert_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(BackendError, match=r"pip install 'edge-sdk\[tflite\]'.*tflite-runtime 2.14 is not supported"):
        litert_interpreter()


def test_export_refuses_unknown_linear(tiny_pkg):
    spec = specs_from_manifest(tiny_pkg.graphs)[0]
    with pytest.raises(ValueError, match="linear must be one of segments, blocks, rows, groups"):
        export_graph(spec, tiny_pkg.config, tiny_pkg.quant, flatten_weights(tiny_pkg.weights), linear="int4")


# ---- the real model ---------------------------------------------------------------------------------

TOL_REAL_LOGITS = 3.0  # max |logits - reference| along 33 greedy steps of SmolLM2-135M, XNNPACK; measured 2.42
# with the default "segments" products (1.70 with "blocks")
REAL_PROMPT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
               "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.real_model
@pytest.mark.slow
def test_real_model_greedy_tokens_match_the_reference(tmp_path_factory, real_gguf_path):
    out = tmp_path_factory.mktemp("real_tflite")
    info = convert(real_gguf_path, out, tflite_graphs=True)
    print(f"conversion with .tflite graphs: {info}")
    pkg = load_package(out)
    ids = pkg.tokenizer.encode(REAL_PROMPT, special=True)
    be = TfliteBackend(pkg, ctx=128, threads=2)
    ref = Int8Forward(pkg.config, pkg.weights, ctx=128)

    def greedy(forward):
        logits = [forward(np.array(ids), 0, True)[0]]
        out: list[int] = []
        for i in range(32):
            out.append(int(logits[-1].argmax()))
            logits.append(forward(np.array(out[-1:]), len(ids) + i, True)[0])
        return out, logits

    got, got_logits = greedy(be.forward)
    want, want_logits = greedy(ref.forward)
    assert got == want, pkg.tokenizer.decode(got)
    assert pkg.tokenizer.decode(want).startswith("The answer to this classic math problem is 4.")
    diff = max(np.abs(a - b).max() for a, b in zip(got_logits, want_logits))
    print(f"max |logits - reference| over 33 steps: {diff:.3f}")
    assert diff <= TOL_REAL_LOGITS
    be.close()


def test_convert_cli_writes_tflite_graphs_on_request(tiny_gguf, tmp_path, capsys):
    assert main(["convert", tiny_gguf, "-o", str(tmp_path / "plain")]) == 0
    assert main(["convert", tiny_gguf, "-o", str(tmp_path / "pkg"), "--backend", "tflite"]) == 0
    assert not has_tflite_graphs(tmp_path / "plain") and has_tflite_graphs(tmp_path / "pkg")
    assert sorted(p.name for p in (tmp_path / "pkg" / "graphs").iterdir()) == [
        "embed.tflite", "head.tflite", "layers_0_2.tflite"]
    capsys.readouterr()
    assert main(["run", "-m", str(tmp_path / "pkg"), "--backend", "tflite", "--max-tokens", "3", "--ctx", "64",
                 "--raw", "The cat"]) == 0
    assert capsys.readouterr().out == load_package(tmp_path / "pkg").tokenizer.decode(GREEDY_IDS[:3]) + "\n"


def test_bench_measures_the_tflite_backend(tiny_gguf, tmp_path, monkeypatch):
    from edge_sdk.bench.backends import run_bench

    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    report = run_bench(tiny_gguf, backends=["tflite", "numpy"], threads=1, prompt_tokens=8, gen_tokens=4, repeats=1)
    assert [r["backend"] for r in report["results"]] == ["tflite", "numpy"]
    assert report["results"][0]["quant"] == QuantConfig().to_dict()
    assert all(r["decode_tok_s"] > 0 and r["prefill_tok_s"] > 0 for r in report["results"])
    (converted,) = (tmp_path / "cache" / "packages" / "converted").iterdir()  # converted once, with .tflite graphs
    assert has_tflite_graphs(converted)


def test_a_layer_file_from_another_export_is_refused(tiny_pkg, tmp_path):
    import shutil

    from edge_sdk.export.tflite import FlatModel

    copy = tmp_path / "pkg"
    shutil.copytree(tiny_pkg.path, copy)
    m = FlatModel("layers_0_1")  # a graph with the wrong interface: x -> x_out only
    x, y = m.tensor("x", [1, -1, 64], "float32"), m.tensor("x_out", [1, -1, 64], "float32")
    m.op("ADD", [x, x], [y], "AddOptions")
    m.inputs, m.outputs = [x], [y]
    (copy / "graphs" / "layers_0_1.tflite").write_bytes(m.serialize())
    with pytest.raises(BackendError, match="layers_0_1.tflite: its inputs/outputs \\(x -> x_out\\) are not those this "
                                           "edge_sdk writes; convert the model again"):
        TfliteBackend(load_package(copy, verify=False), ctx=8)


def test_missing_schema_packages_are_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "flatbuffers", None)
    with pytest.raises(BackendError, match=r"needs the tflite and flatbuffers packages: pip install 'edge-sdk\[tflite\]'"):
        FlatModel("t").serialize()


# max |tflite - numpy int8| on tiny-model logits with the "rows" products (one activation scale per token,
# weights re-quantized per row). Measured 0.067 on this outlier-free random model; on SmolLM2-135M the
# greedy tokens of the chat prompt leave the reference's at the 24th ("I am" for "I'm").
TOL_ROWS = 0.15


def test_rows_products_on_request(tiny_gguf, tmp_path):
    assert main(["convert", tiny_gguf, "-o", str(tmp_path / "pkg"), "--backend", "tflite", "--tflite-linear", "rows"]) == 0
    pkg = load_package(tmp_path / "pkg")
    _, _, ops, _ = _read(pkg.file("graphs/layers_0_2.tflite"))
    assert ops.count("FULLY_CONNECTED") == 2 * 4 and ops.count("BATCH_MATMUL") == 2 * 4  # products; attention
    be = TfliteBackend(pkg, ctx=32, threads=1)
    ref = Int8Forward(pkg.config, pkg.weights, ctx=32)
    diffs = _walk(be, ref, [(PROMPT, 0, False), ([3], 5, True), ([4], 6, True)])
    print("rows: max |logits - reference| per call", [f"{d:.2e}" for d in diffs])
    assert max(diffs) <= TOL_ROWS
    be.close()


# ---- damaged files, re-signed (the package loader's checksums pass) ------------------------------


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("rel", ["graphs/embed.tflite", "graphs/layers_0_1.tflite", "graphs/head.tflite"])
def test_a_damaged_graph_file_fails_at_load_naming_it(tiny_pkg, tmp_path, rel, damage):
    with open(tiny_pkg.file(rel), "rb") as f:
        data = DAMAGES[damage](f.read())
    pkg = load_package(resigned_copy(tiny_pkg.path, tmp_path / "pkg", {rel: data}))
    with pytest.raises(BackendError, match=f"pkg/{rel}: not a readable .tflite graph .*; convert the model again"):
        TfliteBackend(pkg, ctx=8, threads=1)


def test_swapped_embed_and_head_files_fail_at_load(tiny_pkg, tiny_gguf, tmp_path, monkeypatch):
    def read(rel):
        with open(tiny_pkg.file(rel), "rb") as f:
            return f.read()

    swapped = {"graphs/embed.tflite": read("graphs/head.tflite"), "graphs/head.tflite": read("graphs/embed.tflite")}
    pkg = resigned_copy(tiny_pkg.path, tmp_path / "pkg", swapped)
    with pytest.raises(BackendError, match=r"graphs/embed.tflite: its inputs/outputs \(x -> logits\) are not those "
                                           "this edge_sdk writes"):
        TfliteBackend(load_package(pkg), ctx=8, threads=1)
    with pytest.raises(BackendError, match="graphs/embed.tflite"):  # at load, not at the first generate
        edge_sdk.load(pkg, backend="tflite", ctx=8, threads=1)


def _head_file(logits_shape, op="ADD"):
    """A head .tflite whose inputs and outputs are named as edge_sdk writes them (x -> logits)."""
    m = FlatModel("head")
    x, y = m.tensor("x", [1, -1, 64], "float32"), m.tensor("logits", logits_shape, "float32")
    other = x if logits_shape[-1] == 64 else m.const(np.zeros((1, 1, logits_shape[-1])), "float32")
    m.op(op, [x, other], [y], "AddOptions")
    m.inputs, m.outputs = [x], [y]
    return m.serialize()


def test_a_head_file_with_other_shapes_fails_at_load(tiny_pkg, tmp_path):
    # logits of 64 columns where the model has 306 tokens
    pkg = resigned_copy(tiny_pkg.path, tmp_path / "narrow", {"graphs/head.tflite": _head_file([1, -1, 64])})
    with pytest.raises(BackendError, match=r"graphs/head.tflite: logits is float32 \[1, -1, 64\], not the float32 "
                                           r"\[1, -1, 306\] this edge_sdk writes; convert the model again"):
        TfliteBackend(load_package(pkg), ctx=8, threads=1)
    # the right interface, but x (1, T, 64) + (1, 1, 306) cannot be sized: LiteRT's error at allocate_tensors
    pkg = resigned_copy(tiny_pkg.path, tmp_path / "unsizable", {"graphs/head.tflite": _head_file([1, -1, 306])})
    with pytest.raises(BackendError, match=r"graphs/head.tflite: LiteRT cannot size this graph for 1 tokens \(.+\); "
                                           "convert the model again"):
        TfliteBackend(load_package(pkg), ctx=8, threads=1)
