"""The edge package on disk: conversion output, ONNX files sharing weights.bin, load-time checks, the convert CLI."""

from __future__ import annotations

import json
import os

import onnx
import pytest
from onnx import TensorProto

from edge_sdk.cli import main
from edge_sdk.model.config import QuantConfig
from edge_sdk.export.convert import convert, has_onnx_graphs, package_for
from edge_sdk.errors import PackageError
from edge_sdk.graphs import SplitPolicy, specs_from_manifest
from edge_sdk.export.package import load_package

GRAPH_FILES = ["graph_embed.onnx", "graph_layers_0_2.onnx", "graph_head.onnx"]


@pytest.fixture()
def pkg_dir(tmp_path, tiny_gguf):
    out = tmp_path / "pkg"
    convert(tiny_gguf, out)
    return out


def manifest(d) -> dict:
    return json.loads((d / "manifest.json").read_text())


def test_convert_writes_graphs_and_onnx_files(pkg_dir):
    m = manifest(pkg_dir)
    assert list(m["files"]) == ["weights.bin", "tokenizer.json", *GRAPH_FILES]
    assert all(len(digest) == 64 for digest in m["files"].values())
    specs = specs_from_manifest(m["graphs"])
    assert [(s.name, s.file) for s in specs] == list(zip(["embed", "layers_0_2", "head"], GRAPH_FILES))
    # 114,464 bytes of tensors + 48 bytes of padding after tok_embd.scale (306*2*4 = 2448 bytes ends at 22,032 -> 22,080)
    assert (pkg_dir / "weights.bin").stat().st_size == 114_512
    pkg = load_package(pkg_dir)
    assert pkg.graphs == m["graphs"] and pkg.quant == QuantConfig()


def test_onnx_files_point_into_weights_bin(pkg_dir):
    tensors = manifest(pkg_dir)["tensors"]
    for name in GRAPH_FILES:
        path = str(pkg_dir / name)
        onnx.checker.check_model(path)
        model = onnx.load(path, load_external_data=False)
        external = [t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
        inline = [t for t in model.graph.initializer if t.data_location != TensorProto.EXTERNAL]
        assert external, name
        for t in external:
            info = {e.key: e.value for e in t.external_data}
            entry = tensors[t.name.removesuffix(".blocks").removesuffix(".flat")]
            assert info["location"] == "weights.bin"
            assert int(info["offset"]) == entry["offset"], t.name
        # what the ONNX file itself stores: shape constants and scalars, never weights
        assert sum(len(t.raw_data) for t in inline) < 256, name
    assert (pkg_dir / "graph_layers_0_2.onnx").stat().st_size < 16_384


@pytest.mark.parametrize("victim", ["weights.bin", "tokenizer.json", "graph_layers_0_2.onnx"])
def test_tampered_file_is_named(pkg_dir, victim):
    path = pkg_dir / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(PackageError, match=rf"{victim}: sha256 does not match the manifest"):
        load_package(pkg_dir)


def test_missing_file_is_named(pkg_dir):
    os.remove(pkg_dir / "graph_head.onnx")
    with pytest.raises(PackageError, match=r"graph_head.onnx: listed in the manifest but missing"):
        load_package(pkg_dir)


def test_newer_format_version_is_refused(pkg_dir):
    m = manifest(pkg_dir)
    m["format_version"] += 1
    (pkg_dir / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PackageError, match=rf"manifest.json: format version {m['format_version']} is newer"):
        load_package(pkg_dir)


def test_package_without_onnx(tmp_path, tiny_gguf):
    convert(tiny_gguf, tmp_path / "p", onnx_graphs=False)
    assert not has_onnx_graphs(tmp_path / "p")
    assert [g["file"] for g in manifest(tmp_path / "p")["graphs"]] == ["", "", ""]
    assert list(manifest(tmp_path / "p")["files"]) == ["weights.bin", "tokenizer.json"]


def test_convert_cli_split_and_group_size(tmp_path, tiny_gguf, capsys):
    out = tmp_path / "cli-pkg"
    assert main(["convert", tiny_gguf, "-o", str(out), "--layers-per-graph", "1", "--group-size", "0"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: ")
    m = manifest(out)
    assert [g["name"] for g in m["graphs"]] == ["embed", "layers_0_1", "layers_1_2", "head"]
    assert m["quant"]["group_size"] == 0
    assert has_onnx_graphs(out)
    with pytest.raises(SystemExit):
        main(["convert", tiny_gguf, "-o", str(out), "--layers-per-graph", "1", "--max-graph-bytes", "10"])
    assert main(["convert", tiny_gguf, "-o", str(out), "--group-size", "48"]) == 2


def test_package_for_converts_once_per_file_version(tmp_path, tiny_gguf, monkeypatch):
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    first = package_for(tiny_gguf, QuantConfig())
    stamp = (first / "manifest.json").stat().st_mtime_ns
    assert package_for(tiny_gguf, QuantConfig()) == first
    assert (first / "manifest.json").stat().st_mtime_ns == stamp
    assert package_for(tiny_gguf, QuantConfig(group_size=0)) != first
    assert str(first).startswith(str(tmp_path / "cache" / "packages"))


def test_split_policy_reaches_the_package(tmp_path, tiny_gguf):
    convert(tiny_gguf, tmp_path / "p", policy=SplitPolicy(layers_per_graph=1))
    assert list(manifest(tmp_path / "p")["files"])[2:] == [
        "graph_embed.onnx", "graph_layers_0_1.onnx", "graph_layers_1_2.onnx", "graph_head.onnx"]
