"""A loaded model and the files of its package: nothing done to them on disk may crash the process.

Truncating a package's file under a loaded model used to kill the process with SIGBUS (exit 135) on the
native, numpy, ONNX and TFLite backends, a serial server with it: the weights were mapped from the file.
Now the model's next request raises PackageChangedError naming the file and saying to reload, and the
process (a server around it) goes on. The crash cases run in a child process, so that a SIGBUS is a failed
test, not a dead test run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import edge_sdk
from edge_sdk.export.convert import convert
from edge_sdk.errors import InvalidArgumentError, PackageChangedError, PackageError
from edge_sdk.export.package import load_package

RELOAD = r"reload the model"


def _litert() -> bool:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def tfl_pkg(tmp_path_factory, tiny_gguf):
    """The tiny model's package with ONNX and, when LiteRT is installed, .tflite graphs."""
    out = tmp_path_factory.mktemp("integrity") / "pkg"
    convert(tiny_gguf, out, tflite_graphs=_litert())
    return out


@pytest.fixture()
def pkg(tmp_path, tfl_pkg):
    d = tmp_path / "p"
    shutil.copytree(tfl_pkg, d)
    return d


# ---- truncated under a loaded model, per backend (in a child process) ---------------------------------------

CHILD = textwrap.dedent("""
    import os, sys
    import numpy as np
    import edge_sdk
    from edge_sdk.errors import PackageChangedError
    pkg, backend, victim = sys.argv[1:4]
    m = edge_sdk.load(pkg, backend=backend, ctx=64)
    first = m.generate("the cat", max_tokens=4)
    logits = m.backend.forward(np.array([5, 6, 7]), 0, last_only=True)
    with open(os.path.join(pkg, victim), "r+b") as f:
        f.truncate(0)
    # the backend, asked directly, still runs on what it loaded (no request check in between)
    again = m.backend.forward(np.array([5, 6, 7]), 0, last_only=True)
    print("same logits", bool(np.array_equal(logits, again)))
    try:
        m.generate("the cat", max_tokens=4)
        print("no error")
    except PackageChangedError as e:
        print("error", e)
    print("still alive")
""")


@pytest.mark.parametrize("backend, victim", [
    ("native", "weights.bin"),
    ("numpy", "weights.bin"),
    ("onnx", "weights.bin"),
    ("onnx", "graph_layers_0_2.onnx"),
    ("tflite", "graphs/layers_0_2.tflite"),
    ("tflite", "graphs/embed.tflite"),
])
def test_truncated_under_a_loaded_model(pkg, backend, victim):
    if backend == "tflite" and not _litert():
        pytest.skip("LiteRT (ai-edge-litert) is not installed")
    r = subprocess.run([sys.executable, "-c", CHILD, str(pkg), backend, victim], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])  # SIGBUS: -7 here, 135 from a shell
    lines = r.stdout.splitlines()
    assert lines[0] == "same logits True"
    assert lines[1].startswith(f"error {pkg / victim}: size ") and lines[1].endswith(
        " -> 0 bytes since the model was loaded from it; reload the model to use the package as it is now"), lines[1]
    assert lines[2] == "still alive"


# ---- replaced, rewritten, gone: the next request says so ----------------------------------------------------


def test_replaced_rewritten_and_removed_files(pkg):
    m = edge_sdk.load(str(pkg), backend="native", ctx=64)
    text = m.generate("the cat", max_tokens=6)
    m.backend.check_files()
    w = pkg / "weights.bin"
    (pkg / "new.bin").write_bytes(w.read_bytes())
    os.replace(pkg / "new.bin", w)  # the same bytes in another file, moved into place
    with pytest.raises(PackageChangedError, match=rf"weights.bin: replaced by another file since the model was loaded "
                                                  rf"from it; {RELOAD}"):
        m.generate("the cat", max_tokens=6)
    with pytest.raises(PackageChangedError):  # and it stays so: every request until the model is reloaded
        m.generate("the cat", max_tokens=6)
    m.close()

    m = edge_sdk.load(str(pkg), backend="native", ctx=64)
    assert m.generate("the cat", max_tokens=6) == text
    with open(pkg / "tokenizer.json", "r+b") as f:  # rewritten in place, same size
        f.seek(10)
        f.write(b" ")
    with pytest.raises(PackageChangedError, match=rf"tokenizer.json: modified since the model was loaded from it; {RELOAD}"):
        m.generate("the cat", max_tokens=6)
    os.remove(pkg / "manifest.json")
    with pytest.raises(PackageChangedError, match=rf"manifest.json: No such file or directory since the model was "
                                                  rf"loaded from it; {RELOAD}"):
        m.generate("the cat", max_tokens=6)


def test_truncated_during_a_request(pkg):
    """The check is made once per request: a file truncated while tokens are being generated does not stop
    (or crash) that request, which runs on the weights it loaded; the next one is refused."""
    with edge_sdk.load(str(pkg), backend="native", ctx=64) as m:
        want = m.generate("the cat", max_tokens=8)
        it = m.stream("the cat", max_tokens=8)
        pieces = [next(it)]
        os.truncate(pkg / "weights.bin", 1000)
        pieces += list(it)
        assert "".join(pieces) == want
        with pytest.raises(PackageChangedError, match=r"weights.bin: size \d+ -> 1000 bytes"):
            m.generate("the cat", max_tokens=8)


def test_read_error_while_loading_is_named(pkg, monkeypatch):
    """An SD card read error (EIO) while the package is read at load is a PackageError naming the file."""
    real = os.readv

    def failing(fd, buffers):
        if len(buffers[0]) == 114_512:  # all of weights.bin, in one read
            raise OSError(errno.EIO, "Input/output error")
        return real(fd, buffers)

    monkeypatch.setattr(os, "readv", failing)
    with pytest.raises(PackageError, match=r"weights.bin: read error at byte 0 \(Input/output error\); the storage "
                                           r"may be failing"):
        load_package(pkg)


def test_memory_and_file_modes(pkg):
    """weights="memory": the weights are this process's own bytes, read once as they were hashed; "file": none."""
    m = json.loads((pkg / "manifest.json").read_text())
    mem = load_package(pkg)
    q = mem.weights.layers[1].w_down.q
    assert not q.flags.writeable and q.base is not None
    off = m["tensors"]["layers.1.w_down.q"]["offset"]
    assert q.tobytes() == (pkg / "weights.bin").read_bytes()[off : off + q.nbytes]
    listed = ["manifest.json", *m["files"]]
    assert list(mem.files.stamps) == listed
    f = load_package(pkg, weights="file")
    assert f.weights is None and list(f.files.stamps) == listed
    assert f.table["layers.1.w_down.q"] == (off, np.dtype(np.int8), (64, 96))
    with pytest.raises(InvalidArgumentError, match=r"weights must be one of memory, file, got 'mmap'"):
        load_package(pkg, weights="mmap")


# ---- a serial server around the model keeps serving -----------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="needs POSIX pseudo-terminals (/dev/ptmx)")
def test_serial_server_survives_a_truncated_package(pkg):
    from edge_sdk.serial import RemoteError, SerialClient, SerialServer
    from test_serial_server import open_pty

    master, path = open_pty()
    model = edge_sdk.load(str(pkg), backend="native", ctx=64)
    srv = SerialServer(model, master).start()
    try:
        with SerialClient(path, timeout=10) as client:
            text = client.generate("the cat", max_tokens=4, temperature=0)
            assert text == model.generate("the cat", max_tokens=4, temperature=0)
            os.truncate(pkg / "weights.bin", 0)
            with pytest.raises(RemoteError, match=r"PackageChangedError: .*weights.bin: size \d+ -> 0 bytes since the "
                                                  r"model was loaded from it; reload the model"):
                client.generate("the cat", max_tokens=4, temperature=0)
            assert client.info()["backend"] == "native"  # the server is still there
            with pytest.raises(RemoteError, match=r"PackageChangedError"):
                client.generate("the cat", max_tokens=4, temperature=0)
    finally:
        srv.stop()
        master.close()
        model.close()


# ---- weights streamed from the file (boards whose plan says "streamed") --------------------------------------


@pytest.fixture(scope="module")
def tied_pkg(tmp_path_factory, tiny_vocab):
    from tiny_models import tiny_config, tiny_weights, write_gguf

    cfg = tiny_config(len(tiny_vocab["tokens"]), tied=True)
    d = tmp_path_factory.mktemp("tied")
    src = write_gguf(str(d / "tied.gguf"), cfg, tiny_weights(cfg, seed=3), tiny_vocab)
    convert(src, d / "pkg", onnx_graphs=False)
    return d / "pkg"


@pytest.mark.parametrize("which", ["separate head", "tied head"])
@pytest.mark.parametrize("layers_per_graph", [1, 2])
def test_streamed_equals_resident(pkg, tied_pkg, which, layers_per_graph):
    from edge_sdk.backends.native.backend import NativeBackend
    from edge_sdk.backends.native.stream import StreamedNativeBackend

    path = pkg if which == "separate head" else tied_pkg
    mem = load_package(path)
    ref = NativeBackend(mem.config, mem.quant, mem.weights, ctx=32, threads=1)
    st = StreamedNativeBackend(load_package(path, weights="file"), ctx=32, threads=1, layers_per_graph=layers_per_graph)
    # one buffer, the largest graph: (layers_per_graph layers) or the head (the embedding table when tied)
    layer = sum(t.nbytes for t in (mem.weights.layers[0].attn_norm, mem.weights.layers[0].ffn_norm)) + sum(
        getattr(mem.weights.layers[0], f).nbytes for f in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"))
    assert layer == 35_072  # already 64-byte aligned: the buffer holds it with no gap
    head = mem.weights.head.nbytes + mem.weights.out_norm.nbytes  # 19,584 + 2,448 + 256 (+ 48 of alignment)
    assert st.buffer_bytes == max(layers_per_graph * layer, head + 48)
    ids = np.array([3, 17, 3, 250, 9, 11, 40])
    np.testing.assert_array_equal(st.forward(ids, 0), ref.forward(ids, 0))
    for pos, t in enumerate([5, 77, 5], start=len(ids)):
        np.testing.assert_array_equal(st.forward(np.array([t]), pos, last_only=True),
                                      ref.forward(np.array([t]), pos, last_only=True))
    st.close()
    ref.close()


def test_streamed_read_errors_and_truncation(pkg, monkeypatch):
    from edge_sdk.backends.native import stream as native_stream
    from edge_sdk.backends.native.stream import StreamedNativeBackend

    st = StreamedNativeBackend(load_package(pkg, weights="file"), ctx=32, threads=1, layers_per_graph=1)
    want = st.forward(np.array([1, 2, 3]), 0, last_only=True)
    real = os.preadv

    def eio(fd, buffers, offset):
        if offset >= 22_080 + 35_072:  # the second layer
            raise OSError(errno.EIO, "Input/output error")
        return real(fd, buffers, offset)

    monkeypatch.setattr(native_stream.os, "preadv", eio)
    with pytest.raises(PackageChangedError, match=r"weights.bin: read error at byte 57152 while reading the weights "
                                                  r"of layers 1..1 \(Input/output error\); the storage may be failing: "
                                                  r"reload the model"):
        st.forward(np.array([1, 2, 3]), 0, last_only=True)
    monkeypatch.setattr(native_stream.os, "preadv", real)
    np.testing.assert_array_equal(st.forward(np.array([1, 2, 3]), 0, last_only=True), want)  # a passing fault
    os.truncate(pkg / "weights.bin", 60_000)
    with pytest.raises(PackageChangedError, match=r"weights.bin: ends at byte 60000, inside the weights of layers 1..1 "
                                                  r"\(truncated since the model was loaded\); reload the model"):
        st.forward(np.array([1, 2, 3]), 0, last_only=True)
    with pytest.raises(PackageChangedError, match=r"weights.bin: size 114512 -> 60000 bytes"):
        st.check_files()
    st.close()


def test_board_plan_that_streams_loads_the_streamed_backend(pkg, tmp_path, monkeypatch):
    """`load(..., board=ID)` streams the weights when the plan says so: a board with a few KiB less than the
    resident plan needs gets the streamed backend, whose text is the resident one's."""
    from edge_sdk.backends.native.stream import StreamedNativeBackend
    from edge_sdk.plan.boards import boards_dir, load_board
    from edge_sdk.model.config import QuantConfig
    from edge_sdk.export.describe import model_config
    from edge_sdk.plan.budget import plan_device

    cfg, _ = model_config(str(pkg))
    resident = plan_device(cfg, QuantConfig(), load_board("generic-x86_64"), ctx=64, backend="native", threads=1,
                             kv_dtype="f32")
    d = tmp_path / "boards"
    shutil.copytree(boards_dir(), d)
    prof = json.loads((d / "generic-x86_64.json").read_text())
    prof.update(id="tight-board", sdk_budget_bytes=resident.peak_bytes - 60_000)
    (d / "tight-board.json").write_text(json.dumps(prof))
    monkeypatch.setenv("EDGE_SDK_BOARDS_DIR", str(d))
    plan = plan_device(cfg, QuantConfig(), load_board("tight-board"), ctx=64, backend="native", threads=1, kv_dtype="f32")
    assert plan.weights_mode == "streamed" and plan.fits and plan.split.layers_per_graph == 1
    with edge_sdk.load(str(pkg), backend="native", ctx=64, threads=1, kv_dtype="f32") as m:
        want = m.generate("the cat", max_tokens=6)
    with edge_sdk.load(str(pkg), board="tight-board", backend="native", ctx=64, threads=1, kv_dtype="f32") as m:
        assert isinstance(m.backend, StreamedNativeBackend) and m.backend.layers_per_graph == 1
        assert m.generate("the cat", max_tokens=6) == want


def test_streamed_weights_are_range_checked_at_load(pkg, tmp_path):
    from backend_checks import resigned_copy

    from edge_sdk.backends.native.stream import StreamedNativeBackend

    off = json.loads((pkg / "manifest.json").read_text())["tensors"]["layers.1.wo.q"]["offset"]
    data = bytearray((pkg / "weights.bin").read_bytes())
    data[off + 5] = 0x80  # -128: the products need [-127, 127]
    bad = resigned_copy(pkg, tmp_path / "bad", {"weights.bin": bytes(data)})
    with pytest.raises(edge_sdk.errors.BackendError, match=r"weights.bin: tensor layers.1.wo.q: int8 weights must lie "
                                                           r"in \[-127, 127\] \(found -128\)"):
        StreamedNativeBackend(load_package(bad, weights="file"), ctx=32, threads=1, layers_per_graph=1)
