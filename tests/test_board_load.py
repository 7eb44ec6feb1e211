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
    from edge_sdk.boards import boards_dir

    d = tmp_path / "boards"
    shutil.copytree(boards_dir(), d)
    prof = json.loads((d / "generic-x86_64.json").read_text())
    prof.update(id="tiny-board", name="a board with 20 MiB for the SDK", ram_bytes=256 * 2**20, sdk_budget_bytes=20 * 2**20)
    (d / "tiny-board.json").write_text(json.dumps(prof))
    monkeypatch.setenv("EDGE_SDK_BOARDS_DIR", str(d))
    return d


def test_refused_before_loading(tiny_board_dir, tiny_gguf, monkeypatch):
    import edge_sdk.importers as importers

    def must_not_load(*a, **k):
        raise AssertionError("weights were loaded before the plan was checked")

    monkeypatch.setattr(importers, "import_model", must_not_load)
    # the runtime alone (Python, numpy, the SDK) is planned at more than 20 MiB
    with pytest.raises(PlanError, match=r"does not fit tiny-board at ctx 128: needs .* MiB but tiny-board leaves 20.0 MiB"):
        edge_sdk.load(tiny_gguf, board="tiny-board", backend="native")


def test_board_sets_threads_and_context(tiny_gguf):
    with edge_sdk.load(tiny_gguf, board="raspberry-pi-5-8gb", backend="numpy") as m:
        assert m.backend.ctx == 128  # the tiny model's own maximum
        assert m.generate("The cat", max_tokens=3) != ""


def test_cli_run_refuses(tiny_board_dir, tiny_gguf):
    r = cli("run", "-m", tiny_gguf, "--board", "tiny-board", "--backend", "native", "hi")
    assert r.returncode == 1 and r.stdout == ""
    assert "does not fit tiny-board" in r.stderr
