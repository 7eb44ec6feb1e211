"""The ONNX Runtime backend on tiny models: logits against the numpy int8 reference, the in-place K/V
cache, chunked prefill, the public API and CLI, providers and session options, clear errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import edge_sdk
from edge_sdk.backends.onnx_backend import OnnxBackend, lazy_zeros, resolve_providers, session_options
from edge_sdk.plan.boards import load_board
from edge_sdk.cli import main
from edge_sdk.model.config import QuantConfig
from edge_sdk.export.convert import convert
from edge_sdk.errors import BackendError
from edge_sdk.graphs import SplitPolicy
from edge_sdk.model.int8_reference import Int8Forward
from edge_sdk.export.package import load_package
from backend_checks import DAMAGES, check_forward_refuses_bad_calls, resigned_copy
from tiny_models import tiny_weights, write_gguf

# max |onnx - numpy int8| on tiny-model logits (|logits| ~ 5). Measured 1.2e-6: MatMulNBits quantizes
# activations exactly as int8_reference does, so only float summation order differs.
TOL_TINY_LOGITS = 1e-5
PROMPT = np.array([87, 260, 304, 5, 9])
GREEDY_IDS = [79, 247, 117, 125, 168, 16, 34, 12, 48, 236]  # tests/test_generate.py, numpy backend, "The cat"


@pytest.fixture(scope="module")
def tiny_pkg(tmp_path_factory, tiny_gguf):
    out = tmp_path_factory.mktemp("onnx_pkg")
    convert(tiny_gguf, out)
    return load_package(out)


def run_both(pkg, be, steps=(3, 4, 5)):
    ref = Int8Forward(pkg.config, pkg.weights, ctx=be.ctx)
    diffs = [np.abs(be.forward(PROMPT, 0) - ref.forward(PROMPT, 0)).max()]
    for i, t in enumerate(steps):
        a = be.forward(np.array([t]), len(PROMPT) + i, last_only=True)
        b = ref.forward(np.array([t]), len(PROMPT) + i, last_only=True)
        assert a.shape == (1, pkg.config.vocab_size)
        diffs.append(np.abs(a - b).max())
    return max(diffs), ref


@pytest.mark.parametrize("group_size,layers_per_graph", [(32, 0), (0, 1), (64, 0)])
def test_logits_match_the_int8_reference(tmp_path, tiny_cfg, tiny_vocab, group_size, layers_per_graph):
    # ffn_dim 128 so that groups of 64 divide every matrix; groups of 64 > act_block 32 repeat each scale
    cfg = dataclasses.replace(tiny_cfg, ffn_dim=128)
    gguf = write_gguf(str(tmp_path / "m.gguf"), cfg, tiny_weights(cfg, seed=3), tiny_vocab)
    convert(gguf, tmp_path / "p", QuantConfig(group_size=group_size), SplitPolicy(layers_per_graph=layers_per_graph))
    pkg = load_package(tmp_path / "p")
    merged = OnnxBackend(pkg, ctx=32, threads=1)
    assert len(merged.sessions) == 1
    diff, _ = run_both(pkg, merged)
    assert diff <= TOL_TINY_LOGITS
    per_graph = OnnxBackend(pkg, ctx=32, threads=1, merged=False)
    assert len(per_graph.sessions) == 3 + (layers_per_graph == 1)
    diff, _ = run_both(pkg, per_graph)
    assert diff <= TOL_TINY_LOGITS


def test_merging_needs_the_graphs_in_order(tiny_pkg):
    import onnx

    from edge_sdk.export.onnx import merge_graphs
    from edge_sdk.graphs import specs_from_manifest

    specs = specs_from_manifest(tiny_pkg.graphs)
    models = [onnx.load(tiny_pkg.file(s.file), load_external_data=False) for s in specs]
    with pytest.raises(ValueError, match="graphs in order: embed, layer ranges, head"):
        merge_graphs(models[::-1], specs[::-1])
    with pytest.raises(ValueError, match="graphs in order"):
        merge_graphs(models[:-1], specs)


def test_merged_model_equals_the_graphs_run_one_by_one(tiny_pkg):
    """One session over the merged graphs gives the bits of the graphs' own sessions, all positions or the last."""
    merged = OnnxBackend(tiny_pkg, ctx=16, threads=1)
    per_graph = OnnxBackend(tiny_pkg, ctx=16, threads=1, merged=False)
    names = [i.name for i in merged.sessions[0].get_inputs()]
    assert names[:2] == ["tokens", "pos"] and names[-1] == "head_from" and "x" not in names
    assert [o.name for o in merged.sessions[0].get_outputs()][-1] == "logits"
    prompt = np.array([5, 9, 2, 7])
    a, b = merged.forward(prompt, 0), per_graph.forward(prompt, 0)
    assert a.shape == (4, tiny_pkg.config.vocab_size) and np.array_equal(a, b)
    a, b = merged.forward(np.array([3, 4]), 4, last_only=True), per_graph.forward(np.array([3, 4]), 4, last_only=True)
    assert a.shape == (1, tiny_pkg.config.vocab_size) and np.array_equal(a, b)
    assert np.array_equal(merged.kv_cache(1)[0][:, :, :6], per_graph.kv_cache(1)[0][:, :, :6])


def test_cache_is_updated_in_place(tiny_pkg):
    be = OnnxBackend(tiny_pkg, ctx=16, threads=1)
    k0, v0 = be.kv_cache(1)
    ptr = k0.ctypes.data
    _, ref = run_both(tiny_pkg, be, steps=(3,))
    k, v = be.kv_cache(1)
    assert k.ctypes.data == ptr and k.shape == (1, 2, 16, 16)
    assert np.abs(k[0, :, :6] - ref.cache.k[1, :, :6]).max() <= 1e-5
    assert np.abs(v[0, :, :6] - ref.cache.v[1, :, :6]).max() <= 1e-5
    assert not k[0, :, 6:].any() and not v[0, :, 6:].any()  # positions not written yet stay zero


def test_chunked_prefill_and_rewind(tiny_pkg):
    be = OnnxBackend(tiny_pkg, ctx=32, threads=1)
    ref = Int8Forward(tiny_pkg.config, tiny_pkg.weights, ctx=32)
    assert np.abs(be.forward(PROMPT[:2], 0) - ref.forward(PROMPT[:2], 0)).max() <= TOL_TINY_LOGITS
    assert np.abs(be.forward(PROMPT[2:], 2) - ref.forward(PROMPT[2:], 2)).max() <= TOL_TINY_LOGITS
    # a new continuation from position 3 overwrites what was there
    a = be.forward(np.array([7, 8]), 3, last_only=True)
    b = ref.forward(np.array([7, 8]), 3, last_only=True)
    assert np.abs(a - b).max() <= TOL_TINY_LOGITS


def test_greedy_tokens_through_the_api(tiny_gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    with edge_sdk.load(tiny_gguf, backend="onnx", ctx=64, threads=1) as model:
        assert model.backend.name == "onnx"
        assert model.tokenize("The cat") == [87, 260, 304]
        out = model.generate("The cat", max_tokens=10)
        assert out == model.detokenize(GREEDY_IDS)
    assert list((tmp_path / "cache" / "packages" / "converted").iterdir())  # converted once into the cache


def test_run_cli_with_onnx_backend(tiny_gguf, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    assert main(["run", "-m", tiny_gguf, "--backend", "onnx", "--max-tokens", "10", "--ctx", "64", "--raw", "The cat"]) == 0
    with edge_sdk.load(tiny_gguf, backend="numpy", ctx=64) as model:
        expected = model.detokenize(GREEDY_IDS)
    assert capsys.readouterr().out == expected + "\n"


def test_bad_calls_raise_clear_errors(tiny_pkg, tmp_path, tiny_gguf):
    be = OnnxBackend(tiny_pkg, ctx=8, threads=1)
    check_forward_refuses_bad_calls(be)
    with pytest.raises(BackendError, match="float32"):
        OnnxBackend(tiny_pkg, ctx=8, kv_dtype="f16")
    with pytest.raises(ValueError, match=r"ctx must be in \[1, 128\]"):
        OnnxBackend(tiny_pkg, ctx=129)
    convert(tiny_gguf, tmp_path / "bare", onnx_graphs=False)
    with pytest.raises(BackendError, match="no ONNX graphs"):
        OnnxBackend(tmp_path / "bare", ctx=8)


def test_missing_provider_is_a_warning_not_an_error(tiny_pkg):
    used, missing = resolve_providers(["NoSuchExecutionProvider", "CPUExecutionProvider"])
    assert (used, missing) == (["CPUExecutionProvider"], ["NoSuchExecutionProvider"])
    with pytest.warns(RuntimeWarning, match="not available in this build: NoSuchExecutionProvider; using CPUExecutionProvider"):
        be = OnnxBackend(tiny_pkg, ctx=8, threads=1, providers=["NoSuchExecutionProvider"])
    assert be.sessions[0].get_providers() == ["CPUExecutionProvider"]


def test_session_options_and_board_settings(tiny_gguf):
    so = session_options(2, "basic", {"session.intra_op.allow_spinning": "0"})
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(ValueError, match="optimization must be one of disable, basic, extended, all"):
        session_options(1, "fast")
    # on a board the threads (its big cluster) and the provider preference come from the one plan of the load
    from edge_sdk.settings import LoadArgs, board_settings

    board = load_board("raspberry-pi-5-8gb")
    run = board_settings(tiny_gguf, LoadArgs.check(backend="onnx", board=board.id))
    assert (run.threads, run.providers, run.kv_dtype) == (4, tuple(board.onnxruntime_providers), "f32")


def rss_anon_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon"))


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_cache_pages_become_resident_only_when_written():
    before = rss_anon_bytes()
    cache = lazy_zeros((1, 3, 2**16, 64))  # 48 MiB, like one K buffer of a ctx-65536 cache
    assert cache.dtype == np.float32 and not cache[0, :, ::1024].any()
    assert rss_anon_bytes() - before < 4 * 2**20
    cache[0, :, :1024] = 1.0  # 3 x 256 KiB written
    grown = rss_anon_bytes() - before
    assert 768 * 1024 <= grown < 5 * 2**20


def test_alternative_linear_formulations(tiny_pkg, tmp_path):
    """"blocks" writes our per-block quantization in plain ONNX ops (same integer block sums); "dynamic" uses one
    asymmetric uint8 scale per tensor, which is not our arithmetic."""
    import shutil

    import onnx

    from edge_sdk.export.onnx import export_graph
    from edge_sdk.graphs import specs_from_manifest

    diffs = {}
    for linear in ("blocks", "dynamic"):
        d = tmp_path / linear
        shutil.copytree(tiny_pkg.path, d)
        pkg = load_package(d, verify=False)
        for spec in specs_from_manifest(pkg.graphs):
            onnx.save_model(export_graph(spec, pkg.config, pkg.quant, linear=linear), str(d / spec.file))
        diffs[linear], _ = run_both(pkg, OnnxBackend(pkg, ctx=16, threads=1))
    assert diffs["blocks"] <= TOL_TINY_LOGITS
    assert 1e-3 < diffs["dynamic"] < 2.0  # measured 0.069 (blocks: 4.8e-7)


# ---- damaged files, re-signed (the package loader's checksums pass) ------------------------------


def _read_bytes(pkg, rel):
    with open(pkg.file(rel), "rb") as f:
        return f.read()


@pytest.mark.parametrize("merged", [True, False])
def test_an_empty_head_file_fails_at_load_naming_it(tiny_pkg, tmp_path, merged):
    # an empty file parses as an ONNX model without a graph: it used to load, and the first forward raised
    # RuntimeError "Failed to find NodeArg with name: logits"
    pkg = load_package(resigned_copy(tiny_pkg.path, tmp_path / "pkg", {"graph_head.onnx": b""}))
    with pytest.raises(BackendError, match=r"pkg/graph_head.onnx: its inputs/outputs \(none -> none\) are not "
                                           r"x -> logits \(graph head of the manifest\); convert the model again"):
        OnnxBackend(pkg, ctx=8, threads=1, merged=merged)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("rel", ["graph_embed.onnx", "graph_layers_0_2.onnx", "graph_head.onnx"])
def test_a_damaged_graph_file_fails_at_load_naming_it(tiny_pkg, tmp_path, rel, damage):
    pkg = load_package(resigned_copy(tiny_pkg.path, tmp_path / "pkg", {rel: DAMAGES[damage](_read_bytes(tiny_pkg, rel))}))
    with pytest.raises(BackendError, match=f"pkg/{rel}: (not a readable ONNX model|its inputs/outputs)"):
        OnnxBackend(pkg, ctx=8, threads=1)


def test_swapped_graph_files_fail_at_load(tiny_pkg, tmp_path):
    swapped = {"graph_embed.onnx": _read_bytes(tiny_pkg, "graph_head.onnx"),
               "graph_head.onnx": _read_bytes(tiny_pkg, "graph_embed.onnx")}
    pkg = load_package(resigned_copy(tiny_pkg.path, tmp_path / "pkg", swapped))
    with pytest.raises(BackendError, match=r"graph_embed.onnx: its inputs/outputs \(x -> logits\) are not tokens -> x"):
        OnnxBackend(pkg, ctx=8, threads=1)


def test_graphs_that_miss_layers_fail_at_load(tiny_pkg, tmp_path):
    """The merged model's interface is checked against the config: here the manifest lists no layer range."""
    def drop_layers(manifest):
        manifest["graphs"] = [g for g in manifest["graphs"] if g["kind"] != "layers"]

    pkg = load_package(resigned_copy(tiny_pkg.path, tmp_path / "pkg", {}, edit=drop_layers))
    with pytest.raises(BackendError, match=r"pkg: merged graphs graph_embed.onnx \+ graph_head.onnx: its inputs/outputs "
                                           r"\(tokens, head_from -> logits\) are not tokens, pos, cos, sin, past_key.0, "
                                           r".* \(a 2-layer model\); convert the model again"):
        OnnxBackend(pkg, ctx=8, threads=1)


def test_onnx_runtime_errors_at_run_name_the_graphs(tiny_pkg, tmp_path):
    """A head with the right interface that ONNX Runtime can run for one position only (a fixed Reshape)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((64, 306), np.float32), "w")
    one = numpy_helper.from_array(np.array([1, 1, 64], np.int64), "one_row")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "one_row"], ["x1"], name="reshape"),
         helper.make_node("MatMul", ["x1", "w"], ["logits"], name="matmul")],
        "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "T", 306])], initializer=[w, one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    pkg = load_package(resigned_copy(tiny_pkg.path, tmp_path / "pkg", {"graph_head.onnx": model.SerializeToString()}))
    for merged, what in ((True, r"pkg: merged graphs graph_embed.onnx \+ graph_layers_0_2.onnx \+ graph_head.onnx"),
                         (False, "pkg/graph_head.onnx")):
        be = OnnxBackend(pkg, ctx=8, threads=1, merged=merged)
        assert be.forward(np.array([1, 2]), 0, last_only=True).shape == (1, 306)
        with pytest.raises(BackendError, match=f"{what}: ONNX Runtime failed to run this graph"):
            be.forward(np.array([3, 4]), 2)
