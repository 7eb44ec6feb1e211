"""`load(..., board=ID)` plans from metadata first and refuses a model that does not fit."""

from __future__ import annotations

import json
import shutil

import pytest

import edge_sdk
from edge_sdk.errors import PlanError
from test_cli import cli


@pytest.fixture()
def tiny_board_dir(tmp_path, monkeypatch):
    """The stock profiles plus `tiny-board`: generic-x86_64 with 20 MiB left to the SDK."""
    from edge_sdk.plan.boards import boards_dir

    d = tmp_path / "boards"
    shutil.copytree(boards_dir(), d)
    prof = json.loads((d / "generic-x86_64.json").read_text())
    prof.update(id="tiny-board", name="a board with 20 MiB for the SDK", ram_bytes=256 * 2**20, sdk_budget_bytes=20 * 2**20)
    (d / "tiny-board.json").write_text(json.dumps(prof))
    monkeypatch.setenv("EDGE_SDK_BOARDS_DIR", str(d))
    return d


def test_refused_before_loading(tiny_board_dir, tiny_gguf, monkeypatch):
    import edge_sdk.export.convert  # noqa: F401  (imported before the patch, so it keeps the real import_model)
    import edge_sdk.importers as importers

    def must_not_load(*a, **k):
        raise AssertionError("weights were loaded before the plan was checked")

    monkeypatch.setattr(importers, "import_model", must_not_load)
    # the runtime alone (Python, numpy, the SDK) is planned at more than 20 MiB: not even the smallest plan fits
    # (one prefill chunk of context, 64)
    with pytest.raises(PlanError, match=r"does not fit tiny-board at ctx 64: needs .* MiB but tiny-board leaves 20.0 MiB"):
        edge_sdk.load(tiny_gguf, board="tiny-board", backend="native")


def test_board_sets_threads_and_context(tiny_gguf):
    with edge_sdk.load(tiny_gguf, board="raspberry-pi-5-8gb", backend="numpy") as m:
        assert m.backend.ctx == 128  # the tiny model's own maximum
        assert m.generate("The cat", max_tokens=3) != ""


def test_a_plan_describes_the_run():
    """`edge-sdk plan --board B` and `load(..., board=B)` take one set of defaults: the context is the largest that
    keeps the weights resident (capped by the model's), the KV cache f16 where the backend stores it."""
    from edge_sdk.plan.boards import load_board
    from edge_sdk.model.config import ModelConfig, QuantConfig
    from edge_sdk.plan.budget import plan_device

    smollm2 = ModelConfig(vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3, ffn_dim=1536,
                          max_ctx=8192, tied_embeddings=True)
    zero = plan_device(smollm2, QuantConfig(), load_board("raspberry-pi-zero-2w"))
    # before: ctx 8192 with the weights streamed from the SD card (0.2 tok/s) although 5187 fit resident
    assert (zero.ctx, zero.kv_dtype, zero.weights_mode, zero.fits) == (5187, "f16", "resident", True)
    assert zero.max_ctx_resident == 5187 and zero.max_ctx == 8192
    pi5 = plan_device(smollm2, QuantConfig(), load_board("raspberry-pi-5-8gb"))
    assert (pi5.ctx, pi5.kv_dtype, pi5.weights_mode) == (8192, "f16", "resident")  # capped by the model's
    onnx = plan_device(smollm2, QuantConfig(), load_board("raspberry-pi-5-8gb"), backend="onnx")
    assert onnx.kv_dtype == "f32"


def test_load_on_a_board_uses_the_plan(tiny_gguf):
    from edge_sdk.plan.boards import load_board
    from edge_sdk.model.config import QuantConfig
    from edge_sdk.export.describe import model_config
    from edge_sdk.plan.budget import plan_device

    cfg, _ = model_config(tiny_gguf)
    p = plan_device(cfg, QuantConfig(), load_board("raspberry-pi-zero-2w"))
    with edge_sdk.load(tiny_gguf, board="raspberry-pi-zero-2w", backend="native") as m:
        assert (m.backend.ctx, m.details["kv_dtype"], m.backend.threads) == (p.ctx, p.kv_dtype, p.threads) == (128, "f16", 4)
    r = cli("plan", "-m", tiny_gguf, "--board", "raspberry-pi-zero-2w", "--json")
    assert json.loads(r.stdout)["ctx"] == 128 and json.loads(r.stdout)["kv_dtype"] == "f16"


def test_cli_run_refuses(tiny_board_dir, tiny_gguf):
    r = cli("run", "-m", tiny_gguf, "--board", "tiny-board", "--backend", "native", "hi")
    assert r.returncode == 1 and r.stdout == ""
    assert "does not fit tiny-board" in r.stderr


def test_import_peak_and_reference_copies_are_planned(tiny_board_dir, tiny_gguf, tmp_path):
    """A model file is imported and quantized in the process; the numpy backend adds float32 copies.
    A board with room for the native core on a package, but not for those, refuses them by name."""
    from edge_sdk.plan.boards import load_board
    from edge_sdk.model.config import QuantConfig
    from edge_sdk.export.convert import convert
    from edge_sdk.export.describe import model_config
    from edge_sdk.plan.budget import REFERENCE_COPY_FACTOR, import_peak_factor, load_extra_bytes, plan_device
    from edge_sdk.model.sizes import model_weight_bytes

    cfg, _ = model_config(tiny_gguf)
    q = QuantConfig()
    weights = model_weight_bytes(cfg, q)
    assert load_extra_bytes(cfg, q, "native", from_package=True) == 0
    assert load_extra_bytes(cfg, q, "native", from_package=False) == int(weights * import_peak_factor("native")) == int(weights * 5.5)
    assert load_extra_bytes(cfg, q, "tflite", from_package=False) == int(weights * 8.2)
    assert load_extra_bytes(cfg, q, "numpy", from_package=True) == int(weights * REFERENCE_COPY_FACTOR["numpy"])
    peak = plan_device(cfg, q, load_board("generic-x86_64"), ctx=128, backend="native").peak_bytes
    prof = json.loads((tiny_board_dir / "tiny-board.json").read_text())
    prof.update(sdk_budget_bytes=peak + int(weights * 2), ram_bytes=2 * (peak + weights * 2))  # room for 2x more
    (tiny_board_dir / "tiny-board.json").write_text(json.dumps(prof))
    with pytest.raises(PlanError, match=r"with the native backend: .* loading .*tiny.*\.gguf imports and quantizes it"):
        edge_sdk.load(tiny_gguf, board="tiny-board", backend="native")
    pkg = tmp_path / "pkg"
    convert(tiny_gguf, pkg)
    with edge_sdk.load(str(pkg), board="tiny-board", backend="native") as m:
        assert m.generate("The cat", max_tokens=2) != ""
    with pytest.raises(PlanError, match="the numpy backend holds float32 copies of the weights; the native core does not"):
        edge_sdk.load(str(pkg), board="tiny-board", backend="numpy")
