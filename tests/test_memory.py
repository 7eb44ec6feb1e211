"""Resident memory of a loaded model: the weights once, the KV cache, and a bounded rest.

A child process imports everything loading uses, notes its RSS, loads a package of a small model with 29 MB of
int8 weights on the native core and generates a few tokens; its peak RSS (VmHWM) above that baseline must hold
the weights (they are read into memory) and stay under weights + KV cache + LOAD_OVERHEAD_BYTES. A second copy
of the weights (a dtype cast, an alignment copy, a float copy for products) adds 29 MB and fails it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edge_sdk.backends.native.library import available
from edge_sdk.export.package import write_package
from edge_sdk.model.config import ModelConfig, QuantConfig
from edge_sdk.model.quantize import QLayer, QMat, QWeights
from edge_sdk.model.sizes import kv_cache_bytes

MiB = 1 << 20
CTX = 256
LOAD_OVERHEAD_BYTES = 6 * MiB
"""What loading holds beside the weights and the KV cache: the scratch arena (0.8 MiB here, planned for 64-token chunks), the RoPE table,
residual and logits buffers, the tokenizer (a 300-token vocabulary), the manifest and the model's Python objects.
Measured 2.56-2.64 MiB on x86-64 (CPython 3.11, numpy 2.4) over five runs."""


def _qmat(rng: np.random.Generator, rows: int, cols: int, q: QuantConfig) -> QMat:
    scale = rng.uniform(1e-3, 2e-3, (rows, cols // q.group_size)).astype(np.float32)
    return QMat(rng.integers(-127, 128, (rows, cols), dtype=np.int8), scale, q.group_size)


@pytest.fixture(scope="module")
def weighty_package(tmp_path_factory, tiny_vocab):
    """A package of a 16-layer model, dim 384, with random int8 weights (29,379,168 bytes of tensors)."""
    from edge_sdk.importers.gguf_vocab import tokenizer_from_gguf_metadata
    from tiny_vocab import gguf_metadata

    cfg = ModelConfig(vocab_size=len(tiny_vocab["tokens"]), dim=384, n_layers=16, n_heads=4, n_kv_heads=2,
                      ffn_dim=1024, max_ctx=CTX, rope_theta=10000.0, rms_eps=1e-5, tied_embeddings=True)
    q = QuantConfig()
    rng = np.random.default_rng(0)
    ones = np.ones(cfg.dim, np.float32)
    layers = [QLayer(ones, _qmat(rng, cfg.q_dim, cfg.dim, q), _qmat(rng, cfg.kv_dim, cfg.dim, q),
                     _qmat(rng, cfg.kv_dim, cfg.dim, q), _qmat(rng, cfg.dim, cfg.q_dim, q), ones,
                     _qmat(rng, cfg.ffn_dim, cfg.dim, q), _qmat(rng, cfg.ffn_dim, cfg.dim, q),
                     _qmat(rng, cfg.dim, cfg.ffn_dim, q)) for _ in range(cfg.n_layers)]
    weights = QWeights(_qmat(rng, cfg.vocab_size, cfg.dim, q), layers, ones, None)
    out = tmp_path_factory.mktemp("weighty") / "pkg"
    write_package(out, cfg, q, weights, tokenizer_from_gguf_metadata(gguf_metadata(tiny_vocab)))
    return out, cfg, weights.nbytes


CHILD = r"""
import json, sys
import numpy, edge_sdk, edge_sdk.api, edge_sdk.export.convert, edge_sdk.export.package, tokenizers
from edge_sdk.backends.native import backend, library
library.available()  # the core's library loaded: the baseline holds every module loading uses

def kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

base = kib("VmRSS")
with edge_sdk.load(sys.argv[1], backend="native", ctx=int(sys.argv[2]), threads=1) as model:
    text = model.generate("hello world", max_tokens=8, temperature=0.0)
    print(json.dumps({"base": base, "peak": kib("VmHWM"), "tokens": model.last_stats["generated_tokens"]}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmRSS and VmHWM from /proc/self/status")
@pytest.mark.skipif(not available()[0], reason=f"the native core is not available: {available()[1]}")
def test_a_load_holds_the_weights_once(weighty_package):
    pkg, cfg, weight_bytes = weighty_package
    # a layer: int8 384*384*2 + 192*384*2 + 1024*384*3 = 1,622,016, f32 scales 1/8 of that = 202,752, norms 3,072;
    # 16 of them = 29,245,440, + the 306-token table 117,504 + 14,688 + the output norm 1,536
    assert weight_bytes == 29_379_168
    kv = kv_cache_bytes(cfg, CTX, "f16")
    assert kv == 2 * 16 * 2 * CTX * 96 * 2  # 3,145,728
    proc = subprocess.run([sys.executable, "-c", CHILD, str(pkg), str(CTX)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["tokens"] == 8
    held = r["peak"] - r["base"]
    assert weight_bytes <= held <= weight_bytes + kv + LOAD_OVERHEAD_BYTES, (
        f"loading held {held / MiB:.1f} MiB above the imports: weights {weight_bytes / MiB:.1f} MiB, "
        f"KV {kv / MiB:.1f} MiB, allowed overhead {LOAD_OVERHEAD_BYTES / MiB:.1f} MiB")
