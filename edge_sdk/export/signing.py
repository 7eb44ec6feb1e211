"""Package signatures: Ed25519 over a package's manifest digest, so that a fleet runs only packages it built.

A package's manifest lists the sha256 of every file and carries `manifest_sha256`, the sha256 of its own
canonical JSON (`package.manifest_digest`); signing that one digest therefore covers every byte of the
package. Signatures live next to the manifest, in `manifest.sig`::

    {"format": "edge-sdk-signature", "format_version": 1, "algorithm": "ed25519",
     "manifest_sha256": "<hex>", "signatures": [{"key_id": "<16 hex>", "signature": "<128 hex>"}]}

The signed message is `MESSAGE_PREFIX + manifest_sha256` (ASCII hex), so a signature made for a package
can be taken for nothing else. More than one key may sign (a fleet rotating keys signs with both).

Keys are two small text files (`make_key_pair`, `edge-sdk keygen -o KEY`): KEY holds the 32-byte Ed25519
seed, KEY.pub the public key, each as a label line and one line of hex. The private key file is created
with mode 0600 and never overwritten.

Where trusted keys are configured (`load(..., trusted_keys=[...])`, or `$EDGE_SDK_TRUSTED_KEYS`, public key
files separated by ':'), a package without a valid signature by one of them is refused (`SignatureError`,
naming the file). A key file that cannot be read is an error too: a typo must not turn the check off.

Ed25519 comes from PyNaCl (libsodium), an extra: `pip install 'edge-sdk[sign]'`; it is imported only when a
key is used (+1.2 MiB resident).

Example::

    make_key_pair("fleet.key")                        # fleet.key, fleet.key.pub
    sign_package("pkg/", load_secret_key("fleet.key"))
    check_signature("pkg/", read_manifest("pkg/"), ["fleet.key.pub"])
"""

from __future__ import annotations

import hashlib
import json
import os
import string
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import SignatureError

SIGNATURE_FILE = "manifest.sig"
SIGNATURE_FORMAT = "edge-sdk-signature"
SIGNATURE_VERSION = 1
TRUSTED_KEYS_ENV = "EDGE_SDK_TRUSTED_KEYS"
MESSAGE_PREFIX = b"edge-sdk package manifest_sha256 "
SECRET_LABEL = "edge-sdk ed25519 secret key"
PUBLIC_LABEL = "edge-sdk ed25519 public key"
KEY_BYTES = 32
SIGNATURE_BYTES = 64
INSTALL_HINT = "pip install 'edge-sdk[sign]'"


def _nacl() -> Any:
    try:
        import nacl.exceptions
        import nacl.signing
    except ImportError as e:
        raise SignatureError(f"package signatures need PyNaCl ({e}); install it with `{INSTALL_HINT}`") from None
    return nacl


# ---- keys ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    raw: bytes  # 32 bytes
    source: str  # the file it was read from

    @property
    def key_id(self) -> str:
        """The first 16 hex digits of the key's sha256: what signatures and messages name it by."""
        return hashlib.sha256(self.raw).hexdigest()[:16]


@dataclass(frozen=True)
class SecretKey:
    seed: bytes  # 32 bytes
    source: str

    @property
    def public(self) -> PublicKey:
        raw = bytes(_nacl().signing.SigningKey(self.seed).verify_key)
        return PublicKey(raw, self.source + ".pub")


def _read_key_file(path: str | os.PathLike, label: str, what: str) -> bytes:
    path = os.fspath(path)
    try:
        with open(path, encoding="ascii") as f:
            lines = [line.strip() for line in f.read().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise SignatureError(f"{path}: cannot read this {what} ({getattr(e, 'strerror', None) or e})") from None
    if len(lines) != 2 or lines[0] != label:
        raise SignatureError(f"{path}: not an edge-sdk {what} file (expected the line {label!r} and one line of hex; "
                             "make one with `edge-sdk keygen -o KEY`)")
    text = lines[1]
    if len(text) != 2 * KEY_BYTES or any(c not in string.hexdigits for c in text):
        raise SignatureError(f"{path}: the {what} should be {2 * KEY_BYTES} hex digits")
    return bytes.fromhex(text)


def load_public_key(path: str | os.PathLike) -> PublicKey:
    return PublicKey(_read_key_file(path, PUBLIC_LABEL, "public key"), os.fspath(path))


def load_secret_key(path: str | os.PathLike) -> SecretKey:
    key = SecretKey(_read_key_file(path, SECRET_LABEL, "private key"), os.fspath(path))
    _nacl()  # refuse at once, before any work, when the library is missing
    return key


def make_key_pair(path: str | os.PathLike) -> tuple[str, PublicKey]:
    """Write a new private key to `path` (mode 0600) and its public key to `path.pub`; neither may exist yet.

    Returns (public key path, public key)."""
    nacl = _nacl()
    path = os.fspath(path)
    pub_path = path + ".pub"
    for p in (path, pub_path):
        if os.path.lexists(p):
            raise SignatureError(f"{p}: exists; refusing to overwrite a key (choose another name)")
    sk = nacl.signing.SigningKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(f"{SECRET_LABEL}\n{bytes(sk).hex()}\n")
        with open(pub_path, "x", encoding="ascii") as f:
            f.write(f"{PUBLIC_LABEL}\n{bytes(sk.verify_key).hex()}\n")
    except OSError as e:
        raise SignatureError(f"{e.filename or path}: cannot write the key ({e.strerror or e})") from None
    return pub_path, PublicKey(bytes(sk.verify_key), pub_path)


def trusted_key_files(trusted_keys: Sequence[str | os.PathLike] | None) -> tuple[list[str], str]:
    """(the public key files to trust, where the list came from): the argument, else $EDGE_SDK_TRUSTED_KEYS."""
    if trusted_keys is not None:
        if isinstance(trusted_keys, (str, bytes, os.PathLike)):
            raise SignatureError(f"trusted_keys must be a list of public key files, got {trusted_keys!r}")
        return [os.fspath(k) for k in trusted_keys], "trusted_keys="
    env = os.environ.get(TRUSTED_KEYS_ENV, "")
    return [p for p in env.split(os.pathsep) if p.strip()], f"${TRUSTED_KEYS_ENV}"


def trusted_public_keys(files: Sequence[str], source: str) -> list[PublicKey]:
    """The public keys of `files`; one that cannot be read is an error naming where the list came from."""
    keys = []
    for f in files:
        try:
            keys.append(load_public_key(f))
        except SignatureError as e:
            raise SignatureError(f"{e} (a trusted key, from {source})") from None
    return keys


# ---- signing and checking ------------------------------------------------------------------------------------


def message(manifest_sha256: str) -> bytes:
    return MESSAGE_PREFIX + manifest_sha256.encode("ascii")


def _read_signatures(path: str) -> tuple[dict[str, Any] | None, tuple[int, int, int, int, int] | None]:
    """The checked content of manifest.sig and its file stamp, or (None, None) when there is none."""
    from .package import file_stamp

    spath = os.path.join(path, SIGNATURE_FILE)
    try:
        with open(spath, "rb") as f:
            st = os.fstat(f.fileno())
            doc = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:
        raise SignatureError(f"{spath}: unreadable ({e})") from None
    sigs = doc.get("signatures") if isinstance(doc, dict) else None
    if (not isinstance(doc, dict) or doc.get("format") != SIGNATURE_FORMAT or doc.get("algorithm") != "ed25519"
            or not isinstance(sigs, list) or not all(isinstance(s, dict) for s in sigs)):
        raise SignatureError(f"{spath}: not an edge-sdk signature file (format {SIGNATURE_FORMAT!r}, ed25519)")
    if doc.get("format_version") != SIGNATURE_VERSION:
        raise SignatureError(f"{spath}: signature format version {doc.get('format_version')!r} is not "
                             f"{SIGNATURE_VERSION}; upgrade edge_sdk")
    return doc, file_stamp(st)


def sign_package(path: str | os.PathLike, key: SecretKey) -> str:
    """Add (or renew) `key`'s signature of the package's manifest digest in manifest.sig; returns its key id."""
    from .package import read_manifest

    nacl = _nacl()
    path = os.fspath(path)
    digest = read_manifest(path)["manifest_sha256"]
    doc, _ = _read_signatures(path)
    if doc is None or doc.get("manifest_sha256") != digest:
        doc = {"format": SIGNATURE_FORMAT, "format_version": SIGNATURE_VERSION, "algorithm": "ed25519",
               "manifest_sha256": digest, "signatures": []}
    public = key.public
    signature = nacl.signing.SigningKey(key.seed).sign(message(digest)).signature
    doc["signatures"] = [s for s in doc["signatures"] if s.get("key_id") != public.key_id] + [
        {"key_id": public.key_id, "signature": bytes(signature).hex()}]
    spath = os.path.join(path, SIGNATURE_FILE)
    tmp = spath + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, spath)
    except OSError as e:
        raise SignatureError(f"{spath}: cannot write the signature ({e.strerror or e})") from None
    return public.key_id


def check_signature(path: str, manifest: dict[str, Any],
                    trusted_keys: Sequence[str | os.PathLike] | None) -> dict[str, tuple[int, int, int, int, int]]:
    """Where trusted keys are configured, require a valid signature of the manifest's digest by one of them.

    `manifest` is the checked manifest (its digest verified). Returns {"manifest.sig": file stamp} when the
    signature was checked, {} when no keys are configured. Raises SignatureError naming the file."""
    files, source = trusted_key_files(trusted_keys)
    if not files:
        return {}
    keys = trusted_public_keys(files, source)
    spath = os.path.join(path, SIGNATURE_FILE)
    trusted = ", ".join(k.key_id for k in keys)
    doc, st = _read_signatures(path)
    if doc is None:
        raise SignatureError(f"{spath}: missing: the package is not signed, and only packages signed by {trusted} "
                             f"are trusted ({source}); sign it with `edge-sdk convert MODEL -o DIR --sign KEY`")
    nacl = _nacl()
    digest = manifest["manifest_sha256"]
    if doc.get("manifest_sha256") != digest:
        raise SignatureError(f"{spath}: signs manifest_sha256 {str(doc.get('manifest_sha256'))[:16]}..., not this "
                             f"manifest's {digest[:16]}... (the package changed after it was signed)")
    by_id = {s.get("key_id"): s.get("signature") for s in doc["signatures"]}
    for key in keys:
        sig = by_id.get(key.key_id)
        if sig is None:
            continue
        try:
            if not isinstance(sig, str) or len(sig) != 2 * SIGNATURE_BYTES:
                raise ValueError("malformed")
            nacl.signing.VerifyKey(key.raw).verify(message(digest), bytes.fromhex(sig))
        except (ValueError, nacl.exceptions.BadSignatureError):
            raise SignatureError(f"{spath}: the signature by key {key.key_id} ({key.source}) does not verify "
                                 "(the package or its signature was altered)") from None
        return {SIGNATURE_FILE: st}  # type: ignore[dict-item]
    signers = ", ".join(str(k) for k in by_id) or "no key"
    raise SignatureError(f"{spath}: signed by {signers}, none of them trusted ({source}: {trusted})")


def refuse_unsigned_source(model: Any, name: str, trusted_keys: Sequence[str | os.PathLike] | None) -> None:
    """For `load(model)`: with trusted keys configured only a signed package may load. A registered model or a
    model file would be converted here, unsigned, so it is refused, with the way to convert and sign it."""
    from .package import is_package

    keys, source = trusted_key_files(trusted_keys)
    if keys and not (model is not None and is_package(model)):
        raise SignatureError(
            f"{name}: not a package, and only signed packages are trusted ({source}): registered models and model "
            f"files are converted here unsigned; convert and sign it once with `edge-sdk convert {name} -o DIR "
            "--sign KEY` and load DIR")
