"""The fuzz targets of tools/fuzz.py on their seed corpus (tests/fuzz/corpus/): the seeds are whole models,
packages and serial exchanges, every input there (the inputs of fixed findings too) meets the property, and
the property itself refuses what it should."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from edge_sdk.errors import ModelFileError, PackageError, TokenizerError
from edge_sdk.importers import import_model

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("edge_sdk_fuzz_tool", ROOT / "tools" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_every_corpus_input_meets_the_property(target):
    files = fuzz.seed_files(target)
    assert len(files) >= 3, f"tests/fuzz/corpus/{target} has {len(files)} inputs"
    assert fuzz.replay(target) == []


def test_gguf_seeds_are_whole_models():
    corpus = fuzz.CORPUS / "gguf"
    m = import_model(corpus / "q8_0_gpt2.gguf")
    assert (m.config.vocab_size, m.config.dim, m.config.n_layers, m.config.tied_embeddings) == (306, 32, 1, True)
    assert m.tokenizer.encode("hello world", add_bos=False) == [260, 276, 114, 294]
    spm = import_model(corpus / "f16_spm_head.gguf")
    assert (spm.config.vocab_size, spm.config.dim, spm.config.tied_embeddings) == (327, 16, False)
    assert spm.tokenizer.encode("hello world") == [1, 302, 260, 271, 306, 295]
    with pytest.raises(TokenizerError, match="f32_no_tokenizer.gguf: GGUF metadata has no tokenizer.ggml.model"):
        import_model(corpus / "f32_no_tokenizer.gguf")


def test_package_seeds_load(tmp_path):
    from edge_sdk.export.package import load_package

    target = fuzz.PackageTarget(tmp_path)
    for name in ("as_written", "checksums_rewritten"):
        flags, manifest, weights = fuzz.unpack_package_input((fuzz.CORPUS / "package" / name).read_bytes())
        assert flags == (0 if name == "as_written" else 3)
        (target.dir / "manifest.json").write_bytes(target._rewrite_checksums(flags, manifest, weights) if flags else manifest)
        (target.dir / "weights.bin").write_bytes(weights)
        pkg = load_package(target.dir)
        assert (pkg.config.vocab_size, pkg.config.dim, pkg.quant.group_size, len(pkg.graphs)) == (306, 32, 32, 3)


def test_serial_seeds_hold_frames():
    from edge_sdk.serial.protocol import Frame, FrameReader

    frames = {p.name: FrameReader().feed(p.read_bytes()) for p in fuzz.seed_files("serial")}
    assert [f.type for f in frames["chat_fragmented"]] == [0x44, 0x04]
    assert [(f.type, f.seq) for f in frames["replies"]] == [(0x82, 2), (0x83, 2), (0x84, 2), (0x85, 2)]
    assert isinstance(frames["noise_then_frame"][-1], Frame) and frames["noise_then_frame"][-1].seq == 5
    # REGISTER of choices, of a schema in two fragments (0x46 = REGISTER+MORE), of a regex; UNREGISTER, a
    # constrained GENERATE, an ACK and a DONE
    assert [f.type for f in frames["constraints"]] == [0x06, 0x46, 0x06, 0x06, 0x07, 0x03, 0x86, 0x84]


def test_the_property_refuses_what_it_should(tmp_path):
    fuzz.check_error(ModelFileError(f"{tmp_path}/m.gguf: truncated"), (str(tmp_path),))
    for error, why in [
        (ModelFileError(""), "ModelFileError without a message"),
        (PackageError("first line\nsecond line"), "PackageError with a message of several lines"),
        (PackageError("weights.bin: bad"), f"PackageError does not name {tmp_path}"),
    ]:
        with pytest.raises(fuzz.Finding, match=why):
            fuzz.check_error(error, (str(tmp_path),))
    with pytest.raises(KeyError):  # not an EdgeSDKError: it goes through as itself
        fuzz.expect_clean(lambda: {}["x"])
    assert fuzz.expect_clean(lambda: 7) == 7


def test_mutators_keep_the_input_format():
    import random

    rng = random.Random(0)
    seed = (fuzz.CORPUS / "package" / "as_written").read_bytes()
    flags, manifest, weights = fuzz.unpack_package_input(seed)
    outs = [fuzz.mutate_package(seed, 1 << 16, rng, lambda d, n: fuzz.mutate(d, rng, [d])[:n]) for _ in range(50)]
    parsed = [fuzz.unpack_package_input(o) for o in outs]
    assert sum(w == weights and m != manifest for _, m, w in parsed) >= 10  # manifest edits that keep weights.bin
    assert len(set(outs)) >= 45
    wire = (fuzz.CORPUS / "serial" / "replies").read_bytes()
    from edge_sdk.serial.protocol import Frame, FrameReader

    framed = [fuzz.mutate_serial(wire, 8192, rng, lambda d, n: fuzz.mutate(d, rng, [d])[:n]) for _ in range(50)]
    assert sum(all(isinstance(f, Frame) for f in FrameReader().feed(w)) and w != wire for w in framed) >= 10


def test_gguf_mutator_edits_header_fields():
    import random

    seed = (fuzz.CORPUS / "gguf" / "f32_no_tokenizer.gguf").read_bytes()
    fields = fuzz.gguf_fields(seed)
    # version, tensor count, key count; 12 keys x (key length, type, value); 11 tensors
    # x (name length, rank, 1 or 2 dimensions, type, offset): 3 + 36 + 63 fields, the last ending at byte 1146
    assert fields[:3] == [(4, 4), (8, 8), (16, 8)] and len(fields) == 102 and fields[-1] == (1138, 8)
    rng = random.Random(0)
    outs = [fuzz.mutate_gguf(seed, 1 << 16, rng, lambda d, n: d) for _ in range(40)]
    edited = [o for o in outs if o != seed]
    assert len(edited) >= 20 and all(len(o) == len(seed) and o[1146:] == seed[1146:] for o in edited)


def test_the_tool_runs_a_bounded_random_campaign(tmp_path):
    """The engine used where atheris is not installed; the atheris run is .ci/run's."""
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "fuzz.py"), "serial", "--seconds", "2", "--engine", "random",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("serial: ") and r.stdout.rstrip().endswith("ok"), r.stdout
