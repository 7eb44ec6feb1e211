"""Shared fixtures: tiny random LLaMA models (GGUF and Hugging Face) and the real model.

The real model (SmolLM2-135M-Instruct) comes from `$EDGE_SDK_REAL_GGUF` or the
edge_sdk model cache (`edge-sdk pull` fills it; `.ci/run` does so). Tests that
need it are marked `real_model` and skip with the reason when it is absent,
unless `EDGE_SDK_REQUIRE_REAL_MODEL=1` (set by `.ci/run`), where absence fails.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from tiny_models import tiny_config, tiny_weights, write_gguf, write_hf_dir  # noqa: E402
from tiny_vocab import tiny_gpt2_vocab  # noqa: E402


@pytest.fixture(scope="session")
def tiny_vocab():
    return tiny_gpt2_vocab()


@pytest.fixture(scope="session")
def tiny_cfg(tiny_vocab):
    return tiny_config(len(tiny_vocab["tokens"]))


@pytest.fixture(scope="session")
def tiny_float_weights(tiny_cfg):
    return tiny_weights(tiny_cfg, seed=0)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory, tiny_cfg, tiny_float_weights, tiny_vocab):
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    return str(write_gguf(str(path), tiny_cfg, tiny_float_weights, tiny_vocab))


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory, tiny_cfg, tiny_float_weights, tiny_vocab):
    d = tmp_path_factory.mktemp("tiny_hf")
    return str(write_hf_dir(str(d), tiny_cfg, tiny_float_weights, tiny_vocab))


def _real_gguf() -> str | None:
    env = os.environ.get("EDGE_SDK_REAL_GGUF")
    if env:
        return env if os.path.isfile(env) else None
    from edge_sdk.importers.registry import REGISTRY, cached_path

    p = cached_path("smollm2-135m")
    marker = p.with_suffix(p.suffix + ".sha256")
    if p.is_file() and marker.is_file() and marker.read_text().strip() == REGISTRY["smollm2-135m"].sha256:
        return str(p)
    return None


@pytest.fixture(scope="session")
def real_gguf_path():
    path = _real_gguf()
    if path is None:
        reason = "SmolLM2-135M-Instruct not in the edge_sdk cache (run `edge-sdk pull`) and EDGE_SDK_REAL_GGUF unset"
        if os.environ.get("EDGE_SDK_REQUIRE_REAL_MODEL") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def real_model(real_gguf_path):
    from edge_sdk.importers import import_model

    return import_model(real_gguf_path)
