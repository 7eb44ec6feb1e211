"""The native core through its binding, against numpy implementations of the spec.

The C kernels use one canonical order for float reductions (16 lanes, then a
fixed fold) and their own exp (es_expf), so `canonical.py`-style numpy code
below reproduces them bit for bit: quantization, int8 products and whole
decoder layers must be *equal*, not close (TOL_* = 0). The same holds for every
kernel set this CPU has and for any thread count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edge_sdk.model import canonical

from edge_sdk.model.config import ModelConfig
from edge_sdk.errors import BackendError, NativeError

from edge_sdk.backends.native import library as native_library, core as native_core
from edge_sdk.plan.native_buffers import sequential_offsets

OK, WHY = native_library.available()
pytestmark = pytest.mark.skipif(not OK, reason=f"native core unavailable: {WHY}")

TOL_PRODUCT = 0.0  # max |native - numpy| for int8 products (same float ops in the same order)
TOL_LAYER = 0.0  # max |native - numpy| after whole layers

F = np.float32


# ---- numpy twins of the C arithmetic -----------------------------------------


# the core's reduction order and exp, as the int8 reference uses them
canonical_sum = canonical.canonical_sum
es_expf = canonical.es_expf


def quantize(x: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=F)
    t, k = x.shape
    b = block or k
    xb = x.reshape(t, k // b, b)
    amax = np.abs(xb).max(axis=-1)
    nz = amax > 0
    scale = np.where(nz, amax / F(127.0), F(0.0)).astype(F)
    inv = np.divide(F(127.0), amax, out=np.zeros_like(amax), where=nz)
    q = np.clip(np.rint(xb * inv[..., None]), -127, 127).astype(np.int8)
    return q.reshape(t, k), scale


def product(xq: np.ndarray, xs: np.ndarray, q: np.ndarray, scale: np.ndarray, block: int) -> np.ndarray:
    t, k = xq.shape
    b = block or k
    nb, ng = k // b, scale.shape[1]
    acc = np.einsum("tnb,rnb->ntr", xq.reshape(t, nb, b).astype(np.int64), q.reshape(-1, nb, b).astype(np.int64))
    sumf = np.zeros((t, q.shape[0]), F)
    for i in range(nb):
        sumf = sumf + (acc[i].astype(F) * xs[:, i : i + 1]) * scale[:, (i * b) // (k // ng)][None, :]
    return sumf


def linear(x: np.ndarray, m: dict, block: int) -> np.ndarray:
    xq, xs = quantize(x, block)
    return product(xq, xs, m["q"], m["scale"], block)


def rmsnorm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    inv = F(1.0) / np.sqrt(canonical_sum(x * x) / F(x.shape[-1]) + F(eps))
    return (x * inv[:, None]) * w


def numpy_layers(cfg, layers, x, pos, kcache, vcache, cos, sin, block, kv_dtype, scales=None):
    """The decoder layers with the C core's arithmetic; kcache/vcache (L, kvh, ctx, hd) updated in place.

    int8: `scales` = (kscale, vscale) (L, kvh, ctx), each row of head_dim values one quantization block;
    a score is (dot(q, kq) * kscale) * 1/sqrt(hd), a value row weighs (p * vscale) * vq.
    """
    t = x.shape[0]
    hd, half = cfg.head_dim, cfg.head_dim // 2
    scale = F(1.0) / np.sqrt(F(hd))
    rep = cfg.n_heads // cfg.n_kv_heads
    for li, lw in enumerate(layers):
        xn = rmsnorm(x, lw["attn_norm"], cfg.rms_eps)
        xq, xs = quantize(xn, block)
        q = product(xq, xs, lw["wq"]["q"], lw["wq"]["scale"], block).reshape(t, cfg.n_heads, hd)
        k = product(xq, xs, lw["wk"]["q"], lw["wk"]["scale"], block).reshape(t, cfg.n_kv_heads, hd)
        v = product(xq, xs, lw["wv"]["q"], lw["wv"]["scale"], block).reshape(t, cfg.n_kv_heads, hd)
        c, s = cos[pos : pos + t][:, None, :], sin[pos : pos + t][:, None, :]

        def rot(a):
            a1, a2 = a[..., :half], a[..., half:]
            return np.concatenate([a1 * c - a2 * s, a2 * c + a1 * s], axis=-1)

        q, k = rot(q), rot(k)
        for name, a, cache in (("k", k, kcache), ("v", v, vcache)):
            rows = a.transpose(1, 0, 2)  # (kvh, t, hd)
            if kv_dtype == "int8":
                rq, rs = quantize(rows.reshape(-1, hd), hd)
                cache[li, :, pos : pos + t] = rq.reshape(rows.shape)
                scales[0 if name == "k" else 1][li, :, pos : pos + t] = rs.reshape(rows.shape[:2])
            else:
                cache[li, :, pos : pos + t] = rows.astype(cache.dtype)
        att = np.zeros((t, cfg.n_heads, hd), F)
        for ti in range(t):
            n_pos = pos + ti + 1
            for h in range(cfg.n_heads):
                kk = kcache[li, h // rep, :n_pos].astype(F)
                vv = vcache[li, h // rep, :n_pos].astype(F)
                sc = canonical_sum(q[ti, h][None, :] * kk)
                if kv_dtype == "int8":
                    sc = sc * scales[0][li, h // rep, :n_pos]
                sc = sc * scale
                e = es_expf(sc - sc.max())
                p = e / canonical_sum(e[None, :])[0]
                if kv_dtype == "int8":
                    p = p * scales[1][li, h // rep, :n_pos]
                o = np.zeros(hd, F)
                for j in range(n_pos):
                    o = o + p[j] * vv[j]
                att[ti, h] = o
        x = x + linear(att.reshape(t, -1), lw["wo"], block)
        xn = rmsnorm(x, lw["ffn_norm"], cfg.rms_eps)
        xq, xs = quantize(xn, block)
        g = product(xq, xs, lw["w_gate"]["q"], lw["w_gate"]["scale"], block)
        u = product(xq, xs, lw["w_up"]["q"], lw["w_up"]["scale"], block)
        hh = (g / (F(1.0) + es_expf(-g))) * u
        x = x + linear(hh, lw["w_down"], block)
    return x


# ---- fixtures -----------------------------------------------------------------

CFG = ModelConfig(vocab_size=40, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, max_ctx=16, rope_theta=1e4)


def qmat(rng, rows, cols, group, block):
    ng = cols // group if group else 1
    return {
        "q": rng.integers(-127, 128, size=(rows, cols), dtype=np.int8),
        "scale": (rng.random((rows, ng), dtype=F) * F(0.02) + F(0.005)).astype(F),
        "group_size": group,
        "act_block": block,
    }


class M(dict):
    """A QMat-like view of the dict (attributes q, scale, group_size, act_block)."""

    __getattr__ = dict.__getitem__


def make_layers(rng, cfg, group, block):
    layers = []
    for _ in range(cfg.n_layers):
        lw = {
            "attn_norm": (F(1) + rng.standard_normal(cfg.dim).astype(F) * F(0.2)).astype(F),
            "ffn_norm": (F(1) + rng.standard_normal(cfg.dim).astype(F) * F(0.2)).astype(F),
        }
        shapes = {"wq": (cfg.q_dim, cfg.dim), "wk": (cfg.kv_dim, cfg.dim), "wv": (cfg.kv_dim, cfg.dim),
                  "wo": (cfg.dim, cfg.q_dim), "w_gate": (cfg.ffn_dim, cfg.dim), "w_up": (cfg.ffn_dim, cfg.dim),
                  "w_down": (cfg.dim, cfg.ffn_dim)}
        for name, (r, c) in shapes.items():
            lw[name] = M(qmat(rng, r, c, group, block))
        layers.append(lw)
    return layers


def rope_tables(cfg, ctx):
    inv = 1.0 / (cfg.rope_theta ** (np.arange(0, cfg.head_dim, 2) / cfg.head_dim))
    ang = np.arange(ctx)[:, None] * inv[None, :]
    return np.cos(ang).astype(F), np.sin(ang).astype(F)


# ---- tests --------------------------------------------------------------------


def test_cdef_region_and_library_info():
    header = (native_library._native_build.native_source_dir() / "include" / "edge_sdk.h").read_text()
    cdef = native_library.cdef_text(header)
    assert "#" not in cdef  # no preprocessor lines for cffi
    assert "int es_run_layers(" in cdef
    info = native_library.library_info()
    assert info["isa"] in info["supported_isas"]
    assert info["kernels"]["generic"]["matvec_q8"] == "matvec_q8_generic"
    assert set(info["kernels"][info["isa"]]) == set(native_library.KERNEL_NAMES)


@pytest.mark.parametrize("block", [0, 4, 32])
def test_quantize_rows_equals_spec(block):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((7, 96)) * 3).astype(F)
    x[1] = 0.0  # all-zero row: scale 0, q 0
    x[2, :32] = np.arange(32, dtype=F) - F(15.5)  # ties at .5 after scaling by 127/amax (amax 15.5 -> inv 8.19...)
    x[3] = np.linspace(-127, 127, 96).astype(F)
    x[3, 5] = F(2.5)  # amax 127 -> inv 1: 2.5 rounds to 2 (half to even)
    with native_core.NativeCore(CFG, ctx=8) as core:
        q, s = core.quantize_rows(x, act_block=block)
    q_ref, s_ref = quantize(x, block)
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(s.view(np.uint32), s_ref.view(np.uint32))
    if block == 0:
        assert q[3, 5] == 2 and q[3, 0] == -127 and q[3, 95] == 127
        assert s[1, 0] == 0.0 and not q[1].any()


@pytest.mark.parametrize("group,block", [(0, 0), (0, 32), (32, 32), (64, 16), (96, 96)])
@pytest.mark.parametrize("t", [1, 5])
def test_matmul_q8_equals_spec(group, block, t):
    rng = np.random.default_rng(100 + t + group + block)
    w = qmat(rng, 37, 192, group, block)
    w["q"][3] = 127
    w["q"][4] = -127
    x = (rng.standard_normal((t, 192)) * 2).astype(F)
    with native_core.NativeCore(CFG, ctx=8) as core:
        xq, xs = core.quantize_rows(x, act_block=block)
        xq[0, :64] = -127  # extreme activations
        y = core.matmul_q8(xq, xs, M(w), act_block=block)
    y_ref = product(xq, xs, w["q"], w["scale"], block)
    assert np.abs(y - y_ref).max() <= TOL_PRODUCT
    np.testing.assert_array_equal(y.view(np.uint32), y_ref.view(np.uint32))


@pytest.mark.parametrize("group,block", [(0, 32), (32, 32), (0, 0)])
@pytest.mark.parametrize("kv_dtype", ["f32", "f16", "int8"])
def test_run_layers_equals_numpy_layers(group, block, kv_dtype):
    rng = np.random.default_rng(7)
    layers = make_layers(rng, CFG, group, block)
    cos, sin = rope_tables(CFG, 16)
    x0 = (rng.standard_normal((5, CFG.dim)) * 2).astype(F)
    x1 = (rng.standard_normal((1, CFG.dim)) * 2).astype(F)
    dt = {"f32": np.float32, "f16": np.float16, "int8": np.int8}[kv_dtype]
    kc = np.zeros((CFG.n_layers, CFG.n_kv_heads, 16, CFG.head_dim), dt)
    vc = np.zeros_like(kc)
    scales = (np.zeros(kc.shape[:3], F), np.zeros(kc.shape[:3], F)) if kv_dtype == "int8" else None
    with native_core.NativeCore(CFG, ctx=16, kv_dtype=kv_dtype, act_block=block, rope=(cos, sin), n_threads=2) as core:
        prep = core.prepare_layers(layers)
        y0 = core.run_layers(prep, 0, x0, pos=0)  # prefill T=5
        y1 = core.run_layers(prep, 0, x1, pos=5)  # decode T=1
        k_nat, v_nat = core.kv_cache
        r0 = numpy_layers(CFG, layers, x0, 0, kc, vc, cos, sin, block, kv_dtype, scales)
        r1 = numpy_layers(CFG, layers, x1, 5, kc, vc, cos, sin, block, kv_dtype, scales)
        assert np.abs(y0 - r0).max() <= TOL_LAYER and np.abs(y1 - r1).max() <= TOL_LAYER
        np.testing.assert_array_equal(y0.view(np.uint32), r0.view(np.uint32))
        np.testing.assert_array_equal(y1.view(np.uint32), r1.view(np.uint32))
        np.testing.assert_array_equal(k_nat[:, :, :6], kc[:, :, :6])
        np.testing.assert_array_equal(v_nat[:, :, :6], vc[:, :, :6])
        if kv_dtype == "int8":
            ks_nat, vs_nat = core.kv_scales
            np.testing.assert_array_equal(ks_nat[:, :, :6], scales[0][:, :, :6])
            np.testing.assert_array_equal(vs_nat[:, :, :6], scales[1][:, :, :6])
            assert (np.abs(k_nat[:, :, :6]).max(axis=-1) == 127).all()  # every row spans the int8 range
        else:
            assert core.kv_scales is None
        assert np.abs(y0 - x0).max() > 0.1  # the layers did something


def _prefill_decode(isa: str, n_threads: int, block: int = 32, kv_dtype: str = "f32") -> np.ndarray:
    rng = np.random.default_rng(3)
    layers = make_layers(rng, CFG, 0, block)
    x = (rng.standard_normal((6, CFG.dim)) * 2).astype(F)
    with native_core.NativeCore(CFG, ctx=16, isa=isa, n_threads=n_threads, act_block=block,
                               rope=rope_tables(CFG, 16), kv_dtype=kv_dtype) as core:
        a = core.run_layers(layers, 0, x[:4], pos=0)
        b = core.run_layers(layers, 0, x[4:], pos=4)
    return np.concatenate([a, b])


@pytest.mark.parametrize("kv_dtype", ["f32", "int8"])
def test_every_kernel_set_and_thread_count_gives_the_same_bits(kv_dtype):
    ref = _prefill_decode("generic", 1, kv_dtype=kv_dtype)
    for isa in native_library.library_info()["supported_isas"]:
        for nt in (1, 2, 3):
            np.testing.assert_array_equal(_prefill_decode(isa, nt, kv_dtype=kv_dtype).view(np.uint32),
                                          ref.view(np.uint32), err_msg=f"isa={isa} threads={nt} kv={kv_dtype}")


def test_forced_scalar_subprocess_matches_simd():
    code = (
        "import json, numpy as np\n"
        "from tests.test_native_kernels import _prefill_decode\n"
        "from edge_sdk.backends.native import library as native_library\n"
        "y = _prefill_decode('auto', 2)\n"
        "print(json.dumps({'isa': native_library.library_info()['isa'], 'bits': y.view(np.uint32).tolist()}))\n"
    )
    env = dict(os.environ, EDGE_SDK_FORCE_SCALAR="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["isa"] == "generic"
    simd = _prefill_decode("auto", 2)
    np.testing.assert_array_equal(np.array(got["bits"], dtype=np.uint32), simd.view(np.uint32))


def test_prefill_in_chunks_equals_one_pass():
    rng = np.random.default_rng(5)
    layers = make_layers(rng, CFG, 0, 32)
    x = (rng.standard_normal((11, CFG.dim))).astype(F)
    cos_sin = rope_tables(CFG, 16)
    with native_core.NativeCore(CFG, ctx=16, max_tokens=16, rope=cos_sin) as one, \
         native_core.NativeCore(CFG, ctx=16, max_tokens=4, rope=cos_sin) as chunked:
        np.testing.assert_array_equal(one.run_layers(layers, 0, x, 0), chunked.run_layers(layers, 0, x, 0))


def test_errors_surface_as_exceptions():
    rng = np.random.default_rng(9)
    layers = make_layers(rng, CFG, 0, 32)
    x = rng.standard_normal((3, CFG.dim)).astype(F)
    with native_core.NativeCore(CFG, ctx=8, max_tokens=8) as core:
        with pytest.raises(NativeError, match="position range is outside the context"):
            core.run_layers(layers, 0, x, pos=6)
        with pytest.raises(NativeError, match="layer range is outside"):
            core.run_layers(layers, 1, x, pos=0)
        with pytest.raises(NativeError, match="token id"):
            core.embed(M(qmat(rng, CFG.vocab_size, CFG.dim, 0, 32)), [1, 40])
        table = M(qmat(rng, CFG.vocab_size, CFG.dim, 0, 32))
        # ids are never cast silently: 2**32 + 5 would wrap to 5, 5.9 would truncate to 5
        with pytest.raises(BackendError, match="ids: token id 4294967301 is outside int32"):
            core.embed(table, np.array([2**32 + 5], dtype=np.int64))
        with pytest.raises(BackendError, match="ids must be integer token ids, got dtype float64"):
            core.embed(table, [5.9])
        with pytest.raises(BackendError, match="ids is empty"):
            core.embed(table, [])
        w = qmat(rng, 8, CFG.dim, 0, 32)
        w["q"][2, 7] = -128  # the AVX2 products cannot negate it: refused for every kernel set
        xq, xs = core.quantize_rows(x)
        with pytest.raises(BackendError, match=r"w: int8 weights must lie in \[-127, 127\] \(found -128\)"):
            core.matmul_q8(xq, xs, M(w))
        with pytest.raises(BackendError, match=r"head: int8 weights must lie in \[-127, 127\]"):
            core.head(x, np.ones(CFG.dim, F), M(w))
        with pytest.raises(BackendError, match="act_block=5 must be 0 or divide 64"):
            core.quantize_rows(x, act_block=5)
        with pytest.raises(BackendError, match=r"x must be \(n_tokens, 64\)"):
            core.run_layers(layers, 0, x[:, :10], pos=0)
        with pytest.raises(BackendError, match="act_block=16, this core runs act_block=32"):
            core.prepare_layers(make_layers(rng, CFG, 0, 16))
        bad = make_layers(rng, CFG, 0, 32)
        bad[1]["w_up"]["q"][0, 0] = -128
        with pytest.raises(BackendError, match=r"\[-127, 127\]"):
            core.prepare_layers(bad)
        bad = make_layers(rng, CFG, 0, 32)
        bad[0]["wk"]["scale"] = bad[0]["wk"]["scale"].astype(np.float64)
        with pytest.raises(BackendError, match="wk.scale must be float32"):
            core.prepare_layers(bad)
        seq = sequential_offsets(core.buffers)
        names = [b.name for b in core.buffers]
        with pytest.raises(BackendError, match="arena plan refused: buffer '.*' ends at .*, past the arena of 1000 bytes"):
            core.set_plan(seq, arena_size=1000)
        with pytest.raises(BackendError, match="arena plan refused: buffer 'xn' at offset 8 is not a multiple"):
            core.set_plan([o + 8 for o in seq])
        overlap = list(seq)
        overlap[names.index("up")] = seq[names.index("gate")]  # both written by the same op
        with pytest.raises(BackendError, match="arena plan refused: buffers 'gate' .* and 'up' .* overlap in memory"):
            core.set_plan(overlap)
        # the native side refuses the same plans on its own
        for offsets, size, why in ((seq, 1000, "does not fit"), ([o + 8 for o in seq], None, "64-byte aligned"),
                                   (overlap, None, "overlaps one alive at the same op")):
            core.set_plan(offsets, arena_size=size, verify=False)
            with pytest.raises(NativeError, match=why):
                core.run_layers(layers, 0, x, pos=0)
        core.set_plan(seq)
        core.run_layers(layers, 0, x, pos=0)
    with pytest.raises(BackendError, match="closed"):
        core.quantize_rows(x)
    with pytest.raises(BackendError, match="kv_dtype must be one of f32, f16, int8, got 'bf16'"):
        native_core.NativeCore(CFG, kv_dtype="bf16")
    with pytest.raises(BackendError, match="unknown ISA"):
        native_core.NativeCore(CFG, isa="sve2")


def test_c_buffer_trace_equals_python_mirror():
    from edge_sdk.plan.native_buffers import layer_buffers

    smol = ModelConfig(vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3, ffn_dim=1536)
    for cfg in (CFG, smol):
        for t, ctx, nt, ab in ((1, 512, 1, 32), (64, 512, 2, 32), (7, 100, 3, 0), (3, 9, 4, 16)):
            assert native_library.native_layer_buffers(cfg, t, ctx, nt, ab) == layer_buffers(cfg, t, ctx, nt, ab)


# ---- the real model ------------------------------------------------------------

REAL_PROMPT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
               "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
TOL_REAL_LOGITS = 2.5  # max |native - numpy int8 reference| over 17 teacher-forced steps (float order differs;
# int8 re-quantization turns ulp noise into rounding steps over 30 layers); measured about 1


@pytest.mark.real_model
@pytest.mark.slow
def test_real_model_greedy_tokens_match_the_int8_reference(real_model):
    from edge_sdk.model.config import QuantConfig
    from edge_sdk.model.int8_reference import Int8Forward
    from edge_sdk.model.quantize import quantize_weights

    cfg, tok = real_model.config, real_model.tokenizer
    qw = quantize_weights(cfg, real_model.weights, QuantConfig())
    ids = tok.encode(REAL_PROMPT, special=True)
    ref = Int8Forward(cfg, qw, ctx=96)
    with native_core.NativeCore(cfg, ctx=96, n_threads=2, act_block=QuantConfig().act_block) as core:
        core.load_weights(qw)
        out_n, out_r, diff = [], [], 0.0
        ln, lr = core.forward(np.array(ids), 0, last_only=True)[0], ref.forward(np.array(ids), 0, last_only=True)[0]
        for i in range(16):
            diff = max(diff, float(np.abs(ln - lr).max()))
            out_n.append(int(ln.argmax()))
            out_r.append(int(lr.argmax()))
            nxt = np.array(out_r[-1:])  # teacher-forced on the reference's token
            ln = core.forward(nxt, len(ids) + i, last_only=True)[0]
            lr = ref.forward(nxt, len(ids) + i, last_only=True)[0]
    print(f"native vs reference: max |logits diff| {diff:.3f}; native says {tok.decode(out_n)!r}")
    assert out_n == out_r
    assert tok.decode(out_n).startswith("The answer to this classic math problem is 4.")
    assert diff <= TOL_REAL_LOGITS


def test_misaligned_arrays_are_refused():
    """32-bit ARM faults on a float load from an address that is not a multiple of 4."""
    misaligned = np.zeros(4 * CFG.dim + 1, np.uint8)[1:].view(F)
    assert misaligned.ctypes.data % 4
    with native_core.NativeCore(CFG, ctx=8) as core:
        with pytest.raises(BackendError, match="out_norm must be 4-byte aligned"):
            core.head(np.zeros((1, CFG.dim), F), misaligned, M(qmat(np.random.default_rng(0), 8, CFG.dim, 0, 32)))
