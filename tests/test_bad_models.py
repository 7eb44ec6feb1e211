"""Bad input from the loading review (A1-D4): each case gives one clear edge_sdk error naming the file and
the problem, never a hang, a raw traceback or silently wrong weights."""

from __future__ import annotations

import json
import os
import shutil
import struct

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file

from edge_sdk.model.config import MAX_LAYERS, ModelConfig
from edge_sdk.export.convert import convert
from edge_sdk.errors import ModelFileError, PackageError, TokenizerError, UnsupportedModelError
from edge_sdk.importers import import_model
from edge_sdk.export.describe import describe
from edge_sdk.export.package import MANIFEST_DIGEST, load_package, manifest_digest
from tiny_models import permute_rope_rows, write_gguf

# -- helpers ----------------------------------------------------------------------------------------


def rewrite_gguf(src: str, dst, meta: dict | None = None, tensors: dict | None = None) -> str:
    """Copy a GGUF file, replacing metadata values ({key: (GGUFValueType, value)}) and tensors ({name: array})."""
    from edge_sdk.importers.gguf_meta import field_value

    reader = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(str(dst), "llama")
    meta = dict(meta or {})
    for name, f in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype, val = meta.pop(name, (f.types[0], field_value(f)))
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_array(name, val)
        else:
            w.add_key_value(name, val, vtype)
    for name, (vtype, val) in meta.items():
        w.add_array(name, val) if vtype == gguf.GGUFValueType.ARRAY else w.add_key_value(name, val, vtype)
    for t in reader.tensors:
        w.add_tensor(t.name, np.array((tensors or {}).get(t.name, t.data)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(dst)


def copy_hf(src: str, dst, **config_changes):
    shutil.copytree(src, dst)
    if config_changes:
        c = json.loads((dst / "config.json").read_text())
        c.update(config_changes)
        (dst / "config.json").write_text(json.dumps(c))
    return dst


U32, F32, STR = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.STRING

# -- A1: a corrupt GGUF array length ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["tokenizer.ggml.token_type", "tokenizer.ggml.tokens"])
def test_gguf_huge_array_length_is_refused_at_once(tmp_path, tiny_gguf, key):
    data = open(tiny_gguf, "rb").read()
    i = data.find(key.encode()) + len(key)
    (vtype, itype, n) = struct.unpack("<IIQ", data[i:i + 16])
    assert vtype == gguf.GGUFValueType.ARRAY and n == 306
    p = tmp_path / "len.gguf"
    p.write_bytes(data[:i + 8] + struct.pack("<Q", 2**40) + data[i + 16:])
    with pytest.raises(ModelFileError, match=rf"len.gguf: corrupt or truncated GGUF file \(metadata array '{key}' "
                                             rf"declares 1099511627776 items at byte {i + 16}, more than the"):
        import_model(p)
    with pytest.raises(ModelFileError, match="declares 1099511627776 items"):
        describe(p)


def test_gguf_huge_key_length_and_unsupported_version(tmp_path, tiny_gguf):
    data = open(tiny_gguf, "rb").read()
    p = tmp_path / "k.gguf"
    p.write_bytes(data[:24] + struct.pack("<Q", 2**62) + data[32:])
    with pytest.raises(ModelFileError, match=r"metadata key #0 declares 4611686018427387904 bytes at byte 32"):
        import_model(p)
    p.write_bytes(data[:4] + struct.pack("<I", 9) + data[8:])
    with pytest.raises(ModelFileError, match=r"k.gguf: GGUF version 9 is not supported \(edge_sdk reads GGUF versions 2 and 3\)"):
        import_model(p)


# -- A2, B2, C2, D4: GGUF metadata values ----------------------------------------------------------


@pytest.mark.parametrize("key, value, message", [
    ("llama.block_count", (U32, 2**32 - 1), r"n_layers=4294967295 exceeds the limit 4096"),
    ("llama.vocab_size", (U32, 2**32 - 1), r"vocab_size=4294967295 exceeds the limit 4194304"),
    ("llama.rope.freq_base", (F32, float("nan")), r"rope_theta=nan must be a finite number > 0"),
    ("llama.rope.freq_base", (F32, 0.0), r"rope_theta=0.0 must be a finite number > 0"),
    ("llama.attention.layer_norm_rms_epsilon", (F32, -1.0), r"rms_eps=-1.0 must be a finite number > 0"),
    ("llama.attention.layer_norm_rms_epsilon", (F32, float("inf")), r"rms_eps=inf must be a finite number > 0"),
    ("llama.attention.head_count_kv", (U32, 0), r"n_kv_heads=0 must be positive"),
])
def test_gguf_impossible_config_names_the_file(tmp_path, tiny_gguf, key, value, message):
    p = rewrite_gguf(tiny_gguf, tmp_path / "bad.gguf", {key: value})
    with pytest.raises(ModelFileError, match=r"bad.gguf: invalid LLaMA config: " + message):
        import_model(p)
    with pytest.raises(ModelFileError, match=message):
        describe(p)  # `edge-sdk info`: no "4294967295 layers" summary


def test_gguf_linear_rope_factor_zero(tmp_path, tiny_gguf):
    p = rewrite_gguf(tiny_gguf, tmp_path / "lin.gguf", {"llama.rope.scaling.type": (STR, "linear"),
                                                          "llama.rope.scaling.factor": (F32, 0.0)})
    with pytest.raises(ModelFileError, match=r"lin.gguf: invalid RoPE scaling: rope_scaling.factor=0.0 must be a finite number > 0"):
        import_model(p)


def test_gguf_metadata_of_the_wrong_type(tmp_path, tiny_gguf):
    p = rewrite_gguf(tiny_gguf, tmp_path / "s.gguf", {"llama.attention.head_count": (STR, "four")})
    with pytest.raises(ModelFileError, match=r"s.gguf: GGUF metadata key 'llama.attention.head_count' should be an integer, got 'four'"):
        import_model(p)
    p = rewrite_gguf(tiny_gguf, tmp_path / "a.gguf", {"llama.attention.head_count_kv": (gguf.GGUFValueType.ARRAY, [2, 2])})
    with pytest.raises(UnsupportedModelError, match=r"a.gguf: GGUF metadata key 'llama.attention.head_count_kv' holds one "
                                                    r"value per layer \(2 values\)"):
        import_model(p)


def test_gguf_zero_heads_is_not_called_partial_rotary(tmp_path, tiny_gguf):
    p = rewrite_gguf(tiny_gguf, tmp_path / "h0.gguf", {"llama.attention.head_count": (U32, 0)})
    with pytest.raises(ModelFileError, match=r"h0.gguf: invalid LLaMA config: embedding_length=64 and "
                                             r"attention.head_count=0 must be positive"):
        import_model(p)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_gguf_rope_freqs_must_be_positive(tmp_path, tiny_cfg, tiny_float_weights, tiny_vocab, value):
    src = write_gguf(str(tmp_path / "src.gguf"), tiny_cfg, tiny_float_weights, tiny_vocab)
    reader = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(str(tmp_path / "rf.gguf"), "llama")
    from edge_sdk.importers.gguf_meta import field_value

    for name, f in reader.fields.items():
        if not name.startswith("GGUF.") and name != "general.architecture":
            (w.add_array if f.types[0] == gguf.GGUFValueType.ARRAY else lambda n, v: w.add_key_value(n, v, f.types[0]))(
                name, field_value(f))
    for t in reader.tensors:
        w.add_tensor(t.name, np.array(t.data))
    w.add_tensor("rope_freqs.weight", np.full(tiny_cfg.head_dim // 2, value, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFileError, match=rf"rf.gguf: tensor rope_freqs.weight holds 8 values that are not finite "
                                             rf"numbers > 0 \(first: {value}\)"):
        import_model(tmp_path / "rf.gguf")


# -- C3: Q rows that do not fit the head layout ----------------------------------------------------


def test_gguf_q_rows_checked_before_unpermuting(tmp_path, tiny_gguf, tiny_float_weights):
    wq = permute_rope_rows(tiny_float_weights.layers[0].wq, 4)[:60]
    p = rewrite_gguf(tiny_gguf, tmp_path / "q.gguf", tensors={"blk.0.attn_q.weight": wq})
    with pytest.raises(ModelFileError, match=r"q.gguf: tensor layer 0 wq \(blk.0.attn_q.weight\) has shape \(60, 64\), "
                                             r"expected \(64, 64\) from the config"):
        import_model(p)


# -- C1, B2, A2: Hugging Face config.json ----------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    ({"num_attention_heads": 0}, r"field 'num_attention_heads' should be positive, got 0"),
    ({"num_attention_heads": "4x"}, r"field 'num_attention_heads' should be an integer, got '4x'"),
    ({"num_attention_heads": None}, r"field 'num_attention_heads' should be an integer, got None"),
    ({"rope_theta": "big"}, r"field 'rope_theta' should be a number, got 'big'"),
    ({"rope_scaling": [1, 2]}, r"field 'rope_scaling' should be an object or null, got \[1, 2\]"),
    ({"rope_theta": 0}, r"invalid LLaMA config: rope_theta=0.0 must be a finite number > 0"),
    ({"rms_norm_eps": -1}, r"invalid LLaMA config: rms_eps=-1.0 must be a finite number > 0"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 0}}, r"invalid RoPE scaling: rope_scaling.factor=0.0 must be"),
    ({"num_hidden_layers": 10**12}, rf"invalid LLaMA config: n_layers=1000000000000 exceeds the limit {MAX_LAYERS}"),
])
def test_hf_config_fields(tmp_path, tiny_hf_dir, changes, message):
    d = copy_hf(tiny_hf_dir, tmp_path / "hf", **changes)
    with pytest.raises(ModelFileError, match=rf"hf{os.sep}config.json: {message}"):
        import_model(d)
    with pytest.raises(ModelFileError, match=message):
        describe(d)


def test_hf_config_that_is_not_an_object(tmp_path, tiny_hf_dir):
    d = copy_hf(tiny_hf_dir, tmp_path / "hf")
    (d / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelFileError, match=r"config.json: expected a JSON object, got list"):
        import_model(d)


def test_hf_huge_float_dimension(tmp_path, tiny_hf_dir):
    d = copy_hf(tiny_hf_dir, tmp_path / "hf")
    (d / "config.json").write_text((d / "config.json").read_text().replace('"hidden_size": 64', '"hidden_size": 1e400'))
    with pytest.raises(ModelFileError, match=r"field 'hidden_size' should be an integer, got inf"):
        import_model(d)


# -- B4, B5, C4: safetensors dtypes -----------------------------------------------------------------


def bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits by truncation (exact for values that are bfloat16 already)."""
    return (np.ascontiguousarray(a, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def write_mixed_safetensors(path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    """A safetensors file whose tensors each have their own dtype: {name: (dtype, raw array)}."""
    header, blobs, off = {}, [], 0
    for name, (dtype, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


@pytest.mark.parametrize("other", ["F16", "F32"])
def test_bf16_mixed_with_other_float_dtypes(tmp_path, tiny_hf_dir, other):
    d = copy_hf(tiny_hf_dir, tmp_path / "hf")
    tensors = load_file(str(d / "model.safetensors"))
    # round every weight to a bfloat16 value so that the file holds exactly what we compare against
    want = {k: (bf16_bits(v).astype(np.uint32) << 16).view(np.float32) for k, v in tensors.items()}
    odd = "model.embed_tokens.weight" if other == "F16" else "model.norm.weight"
    stored = {k: ("BF16", bf16_bits(v)) for k, v in want.items()}
    stored[odd] = (other, want[odd].astype(np.float16 if other == "F16" else np.float32))
    os.remove(d / "model.safetensors")
    write_mixed_safetensors(d / "model.safetensors", stored)
    m = import_model(d)
    assert np.array_equal(m.weights.layers[1].wq, want["model.layers.1.self_attn.q_proj.weight"])
    got = m.weights.tok_embd if other == "F16" else m.weights.out_norm
    assert np.array_equal(got, stored[odd][1].astype(np.float32))


@pytest.mark.parametrize("dtype, array", [("I8", np.ones((64, 64), np.int8)), ("BOOL", np.ones((64, 64), np.bool_)),
                                          ("F8_E4M3", np.ones((64, 64), np.uint8))])
def test_non_float_weights_are_refused(tmp_path, tiny_hf_dir, dtype, array):
    d = copy_hf(tiny_hf_dir, tmp_path / "hf")
    tensors = load_file(str(d / "model.safetensors"))
    stored = {k: ("F32", v) for k, v in tensors.items()}
    stored["model.layers.0.self_attn.q_proj.weight"] = (dtype, array)
    write_mixed_safetensors(d / "model.safetensors", stored)
    with pytest.raises(UnsupportedModelError, match=rf"model.safetensors: tensor model.layers.0.self_attn.q_proj.weight is "
                                                    rf"stored as {dtype}; only float weights \(F32, F16, BF16\) are supported"):
        import_model(d)


def test_quantization_config_is_refused(tmp_path, tiny_hf_dir):
    d = copy_hf(tiny_hf_dir, tmp_path / "hf", quantization_config={"quant_method": "bitsandbytes", "load_in_8bit": True})
    with pytest.raises(UnsupportedModelError, match=r"pre-quantized checkpoints \(quantization_config, quant_method "
                                                    r"'bitsandbytes'\) are not supported"):
        import_model(d)


def test_data_offsets_must_match_the_shape(tmp_path, tiny_hf_dir):
    d = copy_hf(tiny_hf_dir, tmp_path / "hf")
    tensors = load_file(str(d / "model.safetensors"))
    stored = {k: ("F32", v) for k, v in tensors.items()}
    write_mixed_safetensors(d / "model.safetensors", stored)
    data = (d / "model.safetensors").read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["model.norm.weight"]["shape"] = [65]
    h = json.dumps(header).encode()
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + data[8 + n:])
    with pytest.raises(ModelFileError, match=r"model.safetensors: corrupt or truncated safetensors file \(Error while "
                                             r"deserializing header: invalid shape, data type, or offset for tensor\)"):
        import_model(d)


# -- C5: the shard index ---------------------------------------------------------------------------


@pytest.mark.parametrize("index, message", [
    ([1, 2], r"no weight_map object"),
    ({"weight_map": {"a": 5}}, r"weight_map entry 'a' names 5, not a file name in the directory"),
    ({"weight_map": {"a": "../../etc/passwd"}}, r"weight_map entry 'a' names '../../etc/passwd', not a file name"),
])
def test_malformed_shard_index(tmp_path, tiny_hf_dir, index, message):
    d = copy_hf(tiny_hf_dir, tmp_path / "hf")
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelFileError, match=r"model.safetensors.index.json: " + message):
        import_model(d)


# -- C6, C7, D1: tokenizer files -------------------------------------------------------------------


@pytest.mark.parametrize("eos", ["abc", 2.5, {"a": 1}, True])
def test_generation_config_eos_of_the_wrong_type(tmp_path, tiny_hf_dir, eos):
    d = copy_hf(tiny_hf_dir, tmp_path / "hf")
    (d / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}))
    with pytest.raises(TokenizerError, match=r"generation_config.json: eos_token_id should be an integer or a list of "
                                             rf"integers, got {json.loads(json.dumps(eos))!r}".replace("{", r"\{").replace("}", r"\}")):
        import_model(d)


def test_binary_chat_template_file(tmp_path, tiny_hf_dir):
    d = copy_hf(tiny_hf_dir, tmp_path / "hf")
    cfg = d / "tokenizer_config.json"
    if cfg.exists():
        c = json.loads(cfg.read_text())
        c.pop("chat_template", None)
        cfg.write_text(json.dumps(c))
    (d / "chat_template.jinja").write_bytes(b"\xff\xfe{{ x }}")
    with pytest.raises(TokenizerError, match=r"chat_template.jinja: unreadable chat template \('utf-8' codec"):
        import_model(d)


def test_gguf_tokenizer_errors_name_the_file(tmp_path, tiny_gguf):
    p = rewrite_gguf(tiny_gguf, tmp_path / "t.gguf", {"tokenizer.ggml.model": (STR, "bert")})
    with pytest.raises(TokenizerError, match=r"t.gguf: unsupported tokenizer model 'bert'"):
        import_model(p)


def test_hf_tokenizer_errors_name_the_directory(tmp_path, tiny_hf_dir):
    d = copy_hf(tiny_hf_dir, tmp_path / "hf")
    (d / "generation_config.json").write_text(json.dumps({"eos_token_id": 1_000_000}))
    with pytest.raises(TokenizerError, match=r"hf: eos_ids 1000000 is outside the vocabulary \(size 306\)"):
        import_model(d)


# -- packages: B1 (table vs config, manifest checksum), B3, C8, C9, D2, D3 ------------------------


@pytest.fixture(scope="module")
def good_pkg(tmp_path_factory, tiny_gguf):
    out = tmp_path_factory.mktemp("good") / "pkg"
    convert(tiny_gguf, out)
    return out


@pytest.fixture()
def pkg(tmp_path, good_pkg):
    d = tmp_path / "p"
    shutil.copytree(good_pkg, d)
    return d


def edit(d, fn, reseal: bool = True) -> dict:
    """Change the manifest with fn(manifest); reseal: recompute manifest_sha256 (as a careful forger would)."""
    m = json.loads((d / "manifest.json").read_text())
    fn(m)
    if reseal:
        m[MANIFEST_DIGEST] = manifest_digest(m)
    (d / "manifest.json").write_text(json.dumps(m))
    return m


def test_manifest_is_checksummed(pkg):
    m = json.loads((pkg / "manifest.json").read_text())
    assert m[MANIFEST_DIGEST] == manifest_digest(m) and len(m[MANIFEST_DIGEST]) == 64
    edit(pkg, lambda m: m["model"].update(n_layers=1), reseal=False)
    with pytest.raises(PackageError, match=r"manifest.json: manifest_sha256 does not match the manifest's content"):
        load_package(pkg)


NO_DIGEST = r"manifest.json: no manifest_sha256 \(the manifest's own checksum\); the package was edited or not written by edge_sdk"


def test_manifest_without_checksum_is_refused(pkg):
    """No package lacks manifest_sha256 (every one edge_sdk writes has it), so none may skip the self-check: an
    edited rope_theta, or weight bits flipped with the file's sha256 rewritten, used to load and generate other text."""
    import hashlib

    edit(pkg, lambda m: m.pop(MANIFEST_DIGEST), reseal=False)
    with pytest.raises(PackageError, match=NO_DIGEST):
        load_package(pkg)
    edit(pkg, lambda m: m["model"].update(rope_theta=500000.0), reseal=False)
    with pytest.raises(PackageError, match=NO_DIGEST):
        load_package(pkg)
    with pytest.raises(PackageError, match=NO_DIGEST):
        load_package(pkg, verify=False)
    data = bytearray((pkg / "weights.bin").read_bytes())
    off = json.loads((pkg / "manifest.json").read_text())["tensors"]["layers.0.wq.q"]["offset"]
    data[off] ^= 0x40
    (pkg / "weights.bin").write_bytes(bytes(data))
    edit(pkg, lambda m: m["files"].update({"weights.bin": hashlib.sha256(bytes(data)).hexdigest()}), reseal=False)
    with pytest.raises(PackageError, match=NO_DIGEST):
        load_package(pkg)


@pytest.mark.parametrize("change, message", [
    (lambda m: m["model"].update(n_layers=3), r"missing 16 tensors \(layers.2.attn_norm, layers.2.ffn_norm, layers.2.wq.q, ...\)"),
    (lambda m: m["model"].update(vocab_size=400), r"tensor tok_embd.q: shape \[306, 64\], expected \[400, 64\] from the model config"),
    (lambda m: m["model"].update(n_heads=8), r"tensor layers.0.wq.q: shape \[64, 64\], expected \[128, 64\]"),
    (lambda m: m["tensors"]["layers.0.wq.q"].update(dtype="|u1"), r"tensor layers.0.wq.q: dtype '\|u1', expected '\|i1'"),
    (lambda m: m["tensors"]["out_norm"].update(shape=[]), r"tensor out_norm: shape \[\], expected \[64\] from the model config"),
    (lambda m: m["tensors"]["layers.0.wq.q"].update(offset=m["tensors"]["layers.0.wq.q"]["offset"] + 0.5),
     r"tensor layers.0.wq.q: offset \d+\.5 is not an integer"),
    (lambda m: m["tensors"]["layers.0.wq.q"].update(offset=m["tensors"]["layers.0.attn_norm"]["offset"]),
     r"tensors layers.0.attn_norm and layers.0.wq.q overlap in weights.bin"),
    (lambda m: m["tensors"]["layers.0.wq.scale"].update(dtype="<f2"), r"tensor layers.0.wq.scale: dtype '<f2', expected '<f4'"),
    (lambda m: m["model"].update(arch="gpt2"), r"model: invalid LLaMA config: arch='gpt2' is not supported \(llama only\)"),
    (lambda m: m["model"].update(rope_theta=float("nan")), r"model: invalid LLaMA config: rope_theta=nan must be a finite number > 0"),
    (lambda m: m["model"].update(rms_eps=-1), r"model: invalid LLaMA config: rms_eps=-1 must be a finite number > 0"),
    (lambda m: m["model"].update(n_layers=10**9), r"model: invalid LLaMA config: n_layers=1000000000 exceeds the limit 4096"),
    (lambda m: m["model"].update(dim="64"), r"model: invalid LLaMA config: dim='64' must be an integer"),
    (lambda m: m.update(tensors=[]), r"'tensors' should be an object \(tensor name -> entry\)"),
    (lambda m: m.pop("model"), r"the 'model' section is missing or not an object"),
    (lambda m: m["model"].update(foo=1), r"model: ModelConfig.__init__\(\) got an unexpected keyword argument 'foo'"),
    (lambda m: m.update(graphs="x"), r"'graphs' should be a list of graph records"),
    (lambda m: m["quant"].update(group_size=32.0), r"quant: group_size=32.0 must be an integer"),
])
def test_manifest_checked_against_tensor_table(pkg, change, message):
    edit(pkg, change)
    with pytest.raises(PackageError, match=r"p[/\\]manifest.json: .*" + message):
        load_package(pkg)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("model"), r"the 'model' section is missing or not an object"),
    (lambda m: m["model"].update(rope_scaling="x"), r"model: rope_scaling must be a JSON object, got str"),
    (lambda m: m.update(graphs="x"), r"'graphs' should be a list of graph records"),
    (lambda m: m.update(graphs=[{"name": "embed"}]), r"graph record 'embed' is incomplete \(KeyError: 'kind'\)"),
])
def test_info_on_a_bad_package(pkg, change, message):
    edit(pkg, change)
    with pytest.raises(PackageError, match=r"manifest.json: " + message):
        describe(pkg)


@pytest.mark.parametrize("version, message", [
    (0, "malformed format_version 0"), (-5, "malformed format_version -5"), (True, "malformed format_version True"),
    ("1", "malformed format_version '1'"), (1.0, "malformed format_version 1.0"), (None, "malformed format_version None"),
    (2, r"format version 2 is newer than this edge_sdk reads \(1\)"),
])
def test_format_version_checked_strictly(pkg, version, message):
    edit(pkg, lambda m: m.update(format_version=version))
    with pytest.raises(PackageError, match=r"manifest.json: " + message):
        load_package(pkg)


def poke_float(pkg, tensor: str, value: float) -> None:
    """Set the first float32 of a tensor in weights.bin and re-seal its sha256 in the manifest."""
    import hashlib

    m = json.loads((pkg / "manifest.json").read_text())
    data = bytearray((pkg / "weights.bin").read_bytes())
    off = m["tensors"][tensor]["offset"]
    data[off:off + 4] = struct.pack("<f", value)
    (pkg / "weights.bin").write_bytes(bytes(data))
    edit(pkg, lambda m: m["files"].update({"weights.bin": hashlib.sha256(bytes(data)).hexdigest()}))


@pytest.mark.parametrize("tensor, value, message", [
    ("layers.0.wq.scale", float("nan"), "tensor layers.0.wq.scale holds values that are not finite and >= 0"),
    ("out_norm", float("inf"), "tensor out_norm holds values that are not finite"),
])
def test_non_finite_scales_and_norms(pkg, tensor, value, message):
    poke_float(pkg, tensor, value)
    with pytest.raises(PackageError, match=r"weights.bin: " + message):
        load_package(pkg)


def test_package_file_errors_name_the_file(pkg):
    tokenizer_json = (pkg / "tokenizer.json").read_bytes()
    edit(pkg, lambda m: m["files"].pop("tokenizer.json"))
    with pytest.raises(PackageError, match=r"manifest.json: 'files' does not list tokenizer.json"):
        load_package(pkg)
    os.remove(pkg / "tokenizer.json")
    with pytest.raises(PackageError, match=r"tokenizer.json: unreadable \(FileNotFoundError"):
        load_package(pkg, verify=False)
    (pkg / "tokenizer.json").write_bytes(b"\xff\xfe")
    with pytest.raises(PackageError, match=r"p[/\\]tokenizer.json: unreadable \(UnicodeDecodeError"):
        load_package(pkg, verify=False)
    (pkg / "tokenizer.json").write_bytes(tokenizer_json)  # the tokenizer is read first, then weights.bin
    (pkg / "weights.bin").write_bytes(b"")
    with pytest.raises(PackageError, match=r"p[/\\]weights.bin: tensor tok_embd.q at offset 0 \(\+19584 bytes\) is misaligned "
                                           r"or outside the file"):
        load_package(pkg, verify=False)


# -- B6, C10: convert -o ---------------------------------------------------------------------------


def test_failed_convert_keeps_the_old_package(tmp_path_factory, tiny_cfg, tiny_vocab, good_pkg, monkeypatch):
    from tiny_models import tiny_weights

    other = write_gguf(str(tmp_path_factory.mktemp("other") / "other.gguf"), tiny_cfg, tiny_weights(tiny_cfg, seed=7), tiny_vocab)
    tmp_path = tmp_path_factory.mktemp("out")
    victim = tmp_path / "victim"
    shutil.copytree(good_pkg, victim)
    before = {p.name: p.read_bytes() for p in victim.iterdir()}

    def interrupted(*a, **k):
        raise KeyboardInterrupt  # Ctrl-C while the ONNX files are written, after weights.bin

    monkeypatch.setattr("edge_sdk.export.onnx.write_onnx_graphs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert(other, victim)
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ["victim"]  # no temporary directory left behind
    assert load_package(victim).config.n_layers == 2


def test_convert_replaces_a_package_and_refuses_other_outputs(tmp_path, tiny_gguf, good_pkg):
    out = tmp_path / "out"
    shutil.copytree(good_pkg, out)
    (out / "stale.txt").write_text("from an older conversion")
    convert(tiny_gguf, out)
    assert not (out / "stale.txt").exists() and load_package(out).config.vocab_size == 306
    (tmp_path / "afile").write_text("x")
    with pytest.raises(PackageError, match=r"afile: exists and is not a directory"):
        convert(tiny_gguf, tmp_path / "afile")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(PackageError, match=r"notes: a non-empty directory that is not an edge package; refusing to replace it"):
        convert(tiny_gguf, tmp_path / "notes")
    assert (tmp_path / "notes" / "a.txt").read_text() == "mine"
    blocked = tmp_path / "afile" / "x"
    with pytest.raises(PackageError, match=r"afile[/\\]x: cannot create the package directory"):
        convert(tiny_gguf, blocked)


# -- config bounds ---------------------------------------------------------------------------------


def test_model_config_bounds_and_types():
    base = dict(vocab_size=306, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96)
    assert ModelConfig(**{**base, "n_layers": MAX_LAYERS}).n_layers == MAX_LAYERS
    for change, message in [
        ({"n_layers": MAX_LAYERS + 1}, "n_layers=4097 exceeds the limit 4096"),
        ({"dim": 2**20 + 64}, "dim=1048640 exceeds the limit 1048576"),
        ({"vocab_size": 2**22 + 1}, "vocab_size=4194305 exceeds the limit 4194304"),
        ({"max_ctx": 2**24 + 1}, "max_ctx=16777217 exceeds the limit 16777216"),
        ({"dim": 64.0}, "dim=64.0 must be an integer"),
        ({"n_layers": True}, "n_layers=True must be an integer"),
        ({"tied_embeddings": "yes"}, "tied_embeddings='yes' must be true or false"),
    ]:
        with pytest.raises(UnsupportedModelError, match=r"invalid LLaMA config: " + message):
            ModelConfig(**{**base, **change})


# -- found by fuzzing (tools/fuzz.py; each input is also in tests/fuzz/corpus/) ---------------------


def test_manifest_nested_too_deeply(pkg):
    """JSON nesting that json.load (or, a few frames deeper, json.dumps for manifest_sha256) cannot follow."""
    def fails(depth: int) -> bool:
        try:
            json.loads("[" * depth + "]" * depth)
        except RecursionError:
            return True
        return False

    lo, hi = 1, 1 << 20  # the shallowest nesting json.loads refuses at this stack depth
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fails(mid) else (mid + 1, hi)
    good = (pkg / "manifest.json").read_text().rstrip()
    for depth in range(lo - 24, lo + 4):  # each side of where json.load, and json.dumps, stop
        (pkg / "manifest.json").write_text(good[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}")
        with pytest.raises(PackageError, match=r"manifest.json: (JSON nested too deeply for a manifest|"
                                               r"manifest_sha256 does not match)"):
            load_package(pkg)


@pytest.mark.parametrize("change, message", [
    (lambda g: g[0]["tensors"][0].update(shape=[float("inf"), 64]),
     r"graph record 'embed' is incomplete \(OverflowError: cannot convert float infinity to integer\)"),
    (lambda g: g[0]["tensors"][0].update(name=["tok_embd.q"]),
     r"graph record 'embed' is incomplete \(TypeError: name should be a string, got list\)"),
    (lambda g: g[1].update(file={"a": 1}), r"graph record 'layers_0_2' is incomplete \(TypeError: file should be a string, got dict\)"),
    (lambda g: g[2]["ops"][0].update(kind=[1]), r"graph record 'head' is incomplete \(TypeError: kind should be a string, got list\)"),
])
def test_graph_record_fields_of_the_wrong_type(pkg, change, message):
    edit(pkg, lambda m: change(m["graphs"]))
    with pytest.raises(PackageError, match=r"manifest.json: " + message):
        load_package(pkg)


@pytest.mark.parametrize("change, lists_onnx", [
    (lambda m: m.update(graphs=5), False),
    (lambda m: m.update(files=5), True),
    (lambda m: m.update(graphs=[5]), False),
    (lambda m: m["graphs"][0].update(file=["graph_embed.onnx"]), False),
    (lambda m: m.update(runtimes={"tflite": {"linear": ["blocks"]}}), True),
])
def test_cache_questions_answer_no_for_a_manifest_of_the_wrong_shape(pkg, change, lists_onnx):
    """What the loader asks of a cached package before loading it: a wrong shape is "no", never a TypeError."""
    from edge_sdk.export.convert import _ready, has_onnx_graphs, has_tflite_graphs, tflite_linear_of

    assert has_onnx_graphs(pkg) and _ready(pkg, tflite=False)
    edit(pkg, change)
    assert (has_onnx_graphs(pkg), _ready(pkg, tflite=False)) == (lists_onnx, lists_onnx)
    assert (has_tflite_graphs(pkg), tflite_linear_of(pkg), _ready(pkg, tflite=True)) == (False, None, False)


@pytest.mark.parametrize("change, message", [
    (lambda m: m["model"].pop("rope_theta"), r"model: missing rope_theta \(a package lists every field\)"),
    (lambda m: m["model"]["rope_scaling"].pop("kind"), r"model.rope_scaling: missing kind \(a package lists every field\)"),
    (lambda m: m.update(quant={}), r"quant: missing group_size, act_block, bits \(a package lists every field\)"),
    (lambda m: m["tokenizer"].update(add_bos="no"), r"tokenizer add_bos='no' should be true or false"),
    (lambda m: m["tokenizer"].update(add_eos=1), r"tokenizer add_eos=1 should be true or false"),
    (lambda m: m["tokenizer"].pop("add_eos"), r"tokenizer: missing add_eos \(a package lists every field\)"),
    (lambda m: m["tokenizer"].pop("chat_template"), r"tokenizer: missing chat_template \(a package lists every field\)"),
    (lambda m: m.pop("generation"), r"no 'generation' section \(the model's sampling defaults"),
])
def test_manifest_fields_never_load_as_defaults_or_truth_values(pkg, change, message):
    """A field left out loaded as its default (rope_theta 10000.0, group_size 32) and add_bos "no" as True."""
    edit(pkg, change)
    with pytest.raises(PackageError, match=r"manifest.json: " + message):
        load_package(pkg)


def test_a_cached_package_without_todays_sections_is_converted_again(pkg):
    """The cache's own packages from before the manifest held the sampling defaults are not ready: converted again."""
    from edge_sdk.export.convert import _ready

    assert _ready(pkg, tflite=False)
    edit(pkg, lambda m: m.pop("generation"))
    assert not _ready(pkg, tflite=False)
