"""Package signatures for fleets: keygen, convert --sign, trusted keys at load (argument and environment)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

import edge_sdk
from edge_sdk.cli import main
from edge_sdk.export.convert import convert
from edge_sdk.errors import SignatureError
from edge_sdk.export.package import MANIFEST_DIGEST, load_package, manifest_digest
from edge_sdk.export.signing import SIGNATURE_FILE, TRUSTED_KEYS_ENV, load_public_key, make_key_pair, message

pytest.importorskip("nacl.signing", reason="PyNaCl (edge-sdk[sign]) is not installed")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    for name in ("fleet", "other"):
        make_key_pair(d / name)
    return d


@pytest.fixture(scope="module")
def signed_pkg(tmp_path_factory, tiny_gguf, keys):
    out = tmp_path_factory.mktemp("signed") / "pkg"
    info = convert(tiny_gguf, out, sign=keys / "fleet")
    assert info["signed_by"] == load_public_key(keys / "fleet.pub").key_id
    return out


@pytest.fixture()
def pkg(tmp_path, signed_pkg):
    d = tmp_path / "p"
    shutil.copytree(signed_pkg, d)
    return d


@pytest.fixture(autouse=True)
def no_env_keys(monkeypatch):
    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)


def test_keygen_cli(tmp_path, capsys):
    assert main(["keygen", "-o", str(tmp_path / "k")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "k.pub")
    assert os.stat(tmp_path / "k").st_mode & 0o777 == 0o600
    secret, public = (tmp_path / "k").read_text().splitlines(), (tmp_path / "k.pub").read_text().splitlines()
    assert secret[0] == "edge-sdk ed25519 secret key" and len(secret[1]) == 64
    assert public[0] == "edge-sdk ed25519 public key" and len(public[1]) == 64
    before = (tmp_path / "k").read_bytes()
    assert main(["keygen", "-o", str(tmp_path / "k")]) == 1  # never overwrites a key
    assert "k: exists; refusing to overwrite a key" in capsys.readouterr().err
    assert (tmp_path / "k").read_bytes() == before


def test_signed_package_loads_with_its_key(pkg, keys, tiny_gguf, tmp_path):
    sig = json.loads((pkg / SIGNATURE_FILE).read_text())
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert sig["manifest_sha256"] == manifest[MANIFEST_DIGEST] and len(sig["signatures"]) == 1
    assert sig["signatures"][0]["key_id"] == load_public_key(keys / "fleet.pub").key_id
    assert message(manifest[MANIFEST_DIGEST]) == b"edge-sdk package manifest_sha256 " + manifest[MANIFEST_DIGEST].encode()
    convert(tiny_gguf, tmp_path / "plain")  # the same model, unsigned: the same text
    with edge_sdk.load(str(tmp_path / "plain"), backend="native") as m:
        want = m.generate("the cat", max_tokens=6)
    with edge_sdk.load(str(pkg), backend="native", trusted_keys=[keys / "other.pub", keys / "fleet.pub"]) as m:
        assert m.generate("the cat", max_tokens=6) == want
        with open(pkg / SIGNATURE_FILE, "a") as f:  # the signature file is one of the files a request checks
            f.write(" ")
        with pytest.raises(edge_sdk.errors.PackageChangedError, match=r"manifest.sig: size"):
            m.generate("the cat", max_tokens=6)


def test_unsigned_or_wrongly_signed_is_refused(pkg, keys, tmp_path, tiny_gguf):
    with pytest.raises(SignatureError, match=r"p[/\\]manifest.sig: signed by [0-9a-f]{16}, none of them trusted "
                                             r"\(trusted_keys=: [0-9a-f]{16}\)"):
        load_package(pkg, trusted_keys=[keys / "other.pub"])
    os.remove(pkg / SIGNATURE_FILE)
    with pytest.raises(SignatureError, match=r"p[/\\]manifest.sig: missing: the package is not signed, and only packages "
                                             r"signed by [0-9a-f]{16} are trusted \(trusted_keys=\); sign it with "
                                             r"`edge-sdk convert MODEL -o DIR --sign KEY`"):
        edge_sdk.load(str(pkg), backend="native", trusted_keys=[keys / "fleet.pub"])
    assert load_package(pkg).config.n_layers == 2  # no keys configured: no signature needed


def test_a_resealed_manifest_or_a_forged_signature_is_refused(pkg, keys):
    """A forger who edits the config and recomputes manifest_sha256 (as the self-check allows) cannot re-sign."""
    trusted = [keys / "fleet.pub"]
    mpath = pkg / "manifest.json"
    m = json.loads(mpath.read_text())
    m["model"]["rope_theta"] = 500000.0
    m[MANIFEST_DIGEST] = manifest_digest(m)
    mpath.write_text(json.dumps(m))
    with pytest.raises(SignatureError, match=r"manifest.sig: signs manifest_sha256 [0-9a-f]{16}\.\.\., not this "
                                             r"manifest's [0-9a-f]{16}\.\.\. \(the package changed after it was signed\)"):
        load_package(pkg, trusted_keys=trusted)
    sig = json.loads((pkg / SIGNATURE_FILE).read_text())
    sig["manifest_sha256"] = m[MANIFEST_DIGEST]  # the forger's signature file names the new digest
    (pkg / SIGNATURE_FILE).write_text(json.dumps(sig))
    with pytest.raises(SignatureError, match=r"manifest.sig: the signature by key [0-9a-f]{16} \(.*fleet.pub\) does not "
                                             r"verify \(the package or its signature was altered\)"):
        load_package(pkg, trusted_keys=trusted)


def test_trusted_keys_from_the_environment(pkg, keys, monkeypatch):
    from edge_sdk.backends.onnx_backend import OnnxBackend

    monkeypatch.setenv(TRUSTED_KEYS_ENV, f"{keys / 'other.pub'}{os.pathsep}{keys / 'fleet.pub'}")
    assert load_package(pkg).config.n_layers == 2
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(keys / "other.pub"))
    with pytest.raises(SignatureError, match=rf"none of them trusted \(\${TRUSTED_KEYS_ENV}: "):
        load_package(pkg)
    with pytest.raises(SignatureError, match="none of them trusted"):  # a backend opening the package itself too
        OnnxBackend(str(pkg), ctx=8)
    assert load_package(pkg, trusted_keys=[]).config.n_layers == 2  # an explicit list replaces the environment's
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(keys / "typo.pub"))  # a key that cannot be read never turns the check off
    with pytest.raises(SignatureError, match=rf"typo.pub: cannot read this public key \(No such file or directory\) "
                                             rf"\(a trusted key, from \${TRUSTED_KEYS_ENV}\)"):
        load_package(pkg)


def test_registered_models_and_model_files_are_refused_with_keys(keys, tiny_gguf, monkeypatch):
    """Cached packages that load() converts are unsigned: with trusted keys, a registered name or a model file is
    refused before anything is downloaded or converted, saying how to convert and sign it."""
    from edge_sdk.importers import registry as models

    def no_download(*a, **k):
        raise AssertionError("resolved (downloaded) although it is refused")

    monkeypatch.setattr(models, "resolve", no_download)
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(keys / "fleet.pub"))
    with pytest.raises(SignatureError, match=r"smollm2-135m: not a package, and only signed packages are trusted "
                                             rf"\(\${TRUSTED_KEYS_ENV}\): registered models and model files are "
                                             r"converted here unsigned; convert and sign it once with `edge-sdk convert "
                                             r"smollm2-135m -o DIR --sign KEY` and load DIR"):
        edge_sdk.load("smollm2-135m")
    with pytest.raises(SignatureError, match=r"tiny.gguf: not a package"):
        edge_sdk.load(tiny_gguf, trusted_keys=[keys / "fleet.pub"])


def test_convert_cli_signs_and_refuses_a_bad_key(tmp_path, tiny_gguf, keys, capsys):
    out = tmp_path / "pkg"
    assert main(["convert", tiny_gguf, "-o", str(out), "--sign", str(keys / "fleet")]) == 0
    assert load_package(out, trusted_keys=[keys / "fleet.pub"]).config.n_layers == 2
    capsys.readouterr()
    assert main(["convert", tiny_gguf, "-o", str(tmp_path / "p2"), "--sign", str(keys / "fleet.pub")]) == 1
    assert "fleet.pub: not an edge-sdk private key file" in capsys.readouterr().err
    assert not (tmp_path / "p2").exists()  # refused before any work


def test_signing_without_pynacl_says_what_to_install(tmp_path, tiny_gguf, keys, pkg, monkeypatch):
    for name in [m for m in sys.modules if m == "nacl" or m.startswith("nacl.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "nacl", None)  # import nacl raises ImportError
    with pytest.raises(SignatureError, match=r"package signatures need PyNaCl .*; install it with "
                                             r"`pip install 'edge-sdk\[sign\]'`"):
        convert(tiny_gguf, tmp_path / "out", sign=keys / "fleet")
    with pytest.raises(SignatureError, match=r"package signatures need PyNaCl"):
        load_package(pkg, trusted_keys=[keys / "fleet.pub"])
    with pytest.raises(SignatureError, match=r"package signatures need PyNaCl"):
        make_key_pair(tmp_path / "k")
