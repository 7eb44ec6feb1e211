#!/usr/bin/env python3
"""Fuzz the parsers that read untrusted bytes: GGUF files, edge packages, the serial line.

    python tools/fuzz.py                      # every target, 60 s each (atheris, coverage-guided)
    python tools/fuzz.py serial --seconds 10  # one target
    python tools/fuzz.py --replay             # run the seed corpus once (what tests/test_fuzz_corpus.py does)
    python tools/fuzz.py --make-seeds         # rewrite tests/fuzz/corpus/ from tests/tiny_models.py

The property, for every input: it loads or parses, or it raises an `edge_sdk.errors.EdgeSDKError`
with a one-line message (naming the file, for the file targets). Any other exception, an error
without a message, an input that runs longer than `--timeout` seconds or a process that grows past
`--rss-mb` is a finding: the input is written to `--out` and the run fails. A finding that is fixed
belongs in `tests/fuzz/corpus/TARGET/` (and a regression test in the normal test files).

Targets:
  gguf     the bytes are a .gguf file, imported with `edge_sdk.importers.import_model` (header
           pre-scan, `gguf.GGUFReader`, config, tensors, the tokenizer from the metadata)
  package  the bytes are `flags u8 | manifest_len u32 LE | manifest.json | weights.bin` of a tiny
           converted package (its tokenizer.json is tests/fuzz/package_tokenizer.json), opened with
           `load_package` and `edge-sdk info`'s `describe`, and asked what the cache asks of it
           (`has_onnx_graphs`, `has_tflite_graphs`, `tflite_linear_of`: answers, never errors);
           flags bit 0 rewrites the files' sha256 in the manifest and bit 1 its manifest_sha256, so
           that mutations get past the checksums to the checks behind them; a package that loads
           must hold the manifest's model, quant and tokenizer fields as written (no defaults, no
           coercions)
  serial   the bytes are a serial line: `FrameReader` (fed in pieces, which must give what one feed
           gives), `RequestAssembler` and every payload decoder (requests and replies) on each frame
           and on the raw bytes; frames, COBS and messages that decode must encode back to themselves

Engines: `atheris` (libFuzzer over instrumented Python; `pip install -e '.[fuzz]'`, x86-64 wheels)
or, where it is not installed, `random` (seed mutation without coverage feedback, same limits).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fuzz" / "corpus"
PACKAGE_TOKENIZER = ROOT / "tests" / "fuzz" / "package_tokenizer.json"
TARGETS = ("gguf", "package", "serial")
INSTRUMENTED = ["edge_sdk", "gguf"]  # Python packages whose branches atheris measures


class Finding(AssertionError):
    """An input broke the property (an error that is not an EdgeSDKError is reported as itself)."""


def check_error(e: BaseException, names: tuple[str, ...] = ()) -> None:
    """An EdgeSDKError must carry a one-line message that names one of `names` (when given)."""
    msg = str(e)
    if not msg.strip():
        raise Finding(f"{type(e).__name__} without a message") from e
    if "\n" in msg:
        raise Finding(f"{type(e).__name__} with a message of several lines: {msg!r}") from e
    if names and not any(n in msg for n in names):
        raise Finding(f"{type(e).__name__} does not name {names[0]}: {msg!r}") from e


def expect_clean(fn: Callable[[], Any], *names: str) -> Any:
    """`fn()`; an EdgeSDKError is checked (check_error) and gives None, any other exception propagates."""
    from edge_sdk.errors import EdgeSDKError

    try:
        return fn()
    except EdgeSDKError as e:
        check_error(e, names)
        return None


# ---------------------------------------------------------------- target: gguf


class GGUFTarget:
    def __init__(self, work: Path) -> None:
        self.path = work / "fuzz.gguf"

    def __call__(self, data: bytes) -> None:
        from edge_sdk.importers import import_model

        self.path.write_bytes(data)
        expect_clean(lambda: import_model(self.path), str(self.path))


# ------------------------------------------------------------- target: package

_PKG_HEAD = struct.Struct("<BI")


def pack_package_input(flags: int, manifest: bytes, weights: bytes) -> bytes:
    return _PKG_HEAD.pack(flags, len(manifest)) + manifest + weights


def unpack_package_input(data: bytes) -> tuple[int, bytes, bytes]:
    if len(data) < _PKG_HEAD.size:
        return 0, data, b""
    flags, n = _PKG_HEAD.unpack_from(data)
    body = data[_PKG_HEAD.size :]
    return flags, body[:n], body[n:]


class PackageTarget:
    def __init__(self, work: Path) -> None:
        self.dir = work / "pkg"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tokenizer = PACKAGE_TOKENIZER.read_bytes()
        (self.dir / "tokenizer.json").write_bytes(self.tokenizer)

    def _rewrite_checksums(self, flags: int, manifest: bytes, weights: bytes) -> bytes:
        from edge_sdk.export.package import MANIFEST_DIGEST, manifest_digest

        try:
            m = json.loads(manifest)
        except (ValueError, RecursionError):
            return manifest
        if not isinstance(m, dict):
            return manifest
        if flags & 1 and isinstance(m.get("files"), dict):
            sums = {"weights.bin": hashlib.sha256(weights).hexdigest(),
                    "tokenizer.json": hashlib.sha256(self.tokenizer).hexdigest()}
            m["files"] = {k: sums.get(k, v) for k, v in m["files"].items()}
        try:
            if flags & 2:
                m[MANIFEST_DIGEST] = manifest_digest(m)
            return json.dumps(m).encode()
        except RecursionError:  # nested deeper than json.dumps goes: left as the fuzzer made it
            return manifest

    def __call__(self, data: bytes) -> None:
        from edge_sdk.export.convert import has_onnx_graphs, has_tflite_graphs, tflite_linear_of
        from edge_sdk.export.describe import describe
        from edge_sdk.export.package import load_package

        flags, manifest, weights = unpack_package_input(data)
        if flags & 3:
            manifest = self._rewrite_checksums(flags, manifest, weights)
        (self.dir / "manifest.json").write_bytes(manifest)
        (self.dir / "weights.bin").write_bytes(weights)
        pkg = expect_clean(lambda: load_package(self.dir), str(self.dir))
        if pkg is not None:  # what loaded is what the manifest says, not a coercion of it
            m = pkg.manifest
            t = m["tokenizer"]  # the model's own EOS is always one of the tokens that end generation
            eos = set(t["eos_ids"]) | ({t["eos_id"]} if t.get("eos_id") is not None else set())
            if pkg.tokenizer.meta() != {**t, "eos_id": pkg.tokenizer.eos_id, "eos_ids": sorted(eos)}:
                raise Finding(f"tokenizer fields {m['tokenizer']} load as {pkg.tokenizer.meta()}")
            if json.loads(json.dumps(pkg.config.to_dict())) != m["model"]:
                raise Finding(f"model config {m['model']} loads as {pkg.config.to_dict()}")
            if pkg.quant.to_dict() != m["quant"]:
                raise Finding(f"quant config {m['quant']} loads as {pkg.quant.to_dict()}")
        expect_clean(lambda: describe(self.dir), str(self.dir))  # edge-sdk info
        # what the loader asks of a cached package before using it: answers, never errors
        for ask in (has_onnx_graphs, has_tflite_graphs, tflite_linear_of):
            ask(self.dir)


# -------------------------------------------------------------- target: serial


def _same_value(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (a decoded f32 may be NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return a == b


def _finite_sampling(sampling: dict[str, Any]) -> bool:
    return all(not isinstance(v, float) or math.isfinite(v) for v in sampling.values())


class SerialTarget:
    def __init__(self, work: Path) -> None:
        pass

    def _payload(self, p: bytes) -> None:
        """Every decoder on one payload: an error is a ProtocolError, a success encodes back to itself."""
        from edge_sdk.serial import messages as m

        got = expect_clean(lambda: m.decode_generate(p))
        if got is not None and _finite_sampling(got[1]):
            again = m.decode_generate(m.encode_generate(got[0], **got[1]))
            if not _same_value(list(again), list(got)):
                raise Finding(f"GENERATE {p.hex()} decodes to {got}, its re-encoding to {again}")
        got = expect_clean(lambda: m.decode_chat(p))
        if got is not None and _finite_sampling(got[1]):
            again = m.decode_chat(m.encode_chat(got[0], **got[1]))
            if not _same_value(list(again), list(got)):
                raise Finding(f"CHAT {p.hex()} decodes to {got}, its re-encoding to {again}")
        reg = expect_clean(lambda: m.decode_register(p))
        if reg is not None:
            again = m.decode_register(m.encode_register(reg[0], **{reg[1]: reg[2]}))
            if again != reg:
                raise Finding(f"REGISTER {p.hex()} decodes to {reg}, its re-encoding to {again}")
        cid = expect_clean(lambda: m.decode_unregister(p))
        if cid is not None and 1 <= cid <= m.MAX_CONSTRAINT_ID and m.decode_unregister(m.encode_unregister(cid)) != cid:
            raise Finding(f"UNREGISTER {p.hex()} decodes to {cid}, which does not round-trip")
        seq = expect_clean(lambda: m.decode_cancel(p))
        if seq is not None and seq and m.encode_cancel(seq) != p:
            raise Finding(f"CANCEL {p.hex()} decodes to {seq}, which encodes to {m.encode_cancel(seq).hex()}")
        for decode, encode in ((m.decode_info_reply, m.encode_info_reply), (m.decode_done, m.encode_done),
                               (m.decode_ack, m.encode_ack)):
            got = expect_clean(lambda: decode(p))
            if got is not None and _finite_sampling(got):
                again = decode(encode(got))
                if not _same_value(again, got):
                    raise Finding(f"{decode.__name__}({p.hex()}) = {got}, its re-encoding gives {again}")
        err = expect_clean(lambda: m.decode_error(p))
        if err is not None and not isinstance(err[1], str):
            raise Finding(f"decode_error gave {err!r}")

    def __call__(self, data: bytes) -> None:
        from edge_sdk.serial import cobs
        from edge_sdk.serial.protocol import Frame, FrameReader, Message, RequestAssembler, encode_frame

        if cobs.decode(cobs.encode(data)) != data:
            raise Finding(f"COBS does not round-trip {data.hex()}")
        whole = FrameReader().feed(data)
        # the same bytes in pieces whose sizes come from the data itself
        reader, pieces, i, step = FrameReader(), [], 0, 1
        while i < len(data):
            step = (data[i] % 17) + 1
            pieces += reader.feed(data[i : i + step])
            i += step
        if pieces != whole:
            raise Finding(f"FrameReader gives {pieces} fed in pieces, {whole} in one feed")
        assembler = RequestAssembler()
        for item in whole:
            if not isinstance(item, Frame):
                if not item.detail:
                    raise Finding(f"fault {item} without a detail")
                continue
            wire = encode_frame(item)
            if FrameReader().feed(wire) != [item]:
                raise Finding(f"frame {item} does not survive encode_frame -> FrameReader")
            self._payload(item.payload)
            for msg in assembler.push(item):
                if isinstance(msg, Message):
                    self._payload(msg.payload)
                elif not msg.detail:
                    raise Finding(f"message fault {msg} without a detail")
        self._payload(data)


# ------------------------------------------------------- structure-aware mutators
# Byte-level mutation rarely keeps a JSON manifest parseable or a frame's CRC right, so half of the
# package and serial mutations are made on the structure (a manifest value, a frame's fields) and the
# result is serialized again; `bytes_mutate` is the engine's own byte mutator for the rest.

JSON_VALUES: list[Any] = [0, -1, 1, 2, 63, 64, 65, 2**31, 2**32, 2**53 + 1, 2**63, 2**64, -(2**63), 1e308, -1e-300,
                          float("nan"), float("inf"), -0.0, 0.5, "", "x", "<f4", "|i1", "..", "/etc/passwd", None, True,
                          False, [], {}, [0], [1, 2], {"a": 1}]


def _json_nodes(v: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """(container, key) of every value inside `v`."""
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    for k, child in items:
        out.append((v, k))
        _json_nodes(child, out)
    return out


def mutate_json(doc: Any, rng: random.Random) -> Any:
    """One to three edits; half the time all inside one top-level section (a small section such as the
    tokenizer's fields is then edited as often as the tensor table, which holds most of the values)."""
    nodes = _json_nodes(doc, [])
    if isinstance(doc, dict) and doc and rng.random() < 0.5:
        section = rng.choice(list(doc))
        nodes = [(doc, section)] + _json_nodes(doc[section], [])
    if not nodes:
        return rng.choice(JSON_VALUES)
    for _ in range(rng.randint(1, 3)):
        parent, key = rng.choice(nodes)
        old = parent[key]
        op = rng.randrange(6)
        if op == 0:
            parent[key] = rng.choice(JSON_VALUES)
        elif op == 1 and isinstance(old, (int, float)) and not isinstance(old, bool) and math.isfinite(old):
            parent[key] = rng.choice((old + 1, old - 1, old * 2, old // 2, -old, old + 64, old - 64))
        elif op == 2:  # delete
            del parent[key]
            return doc
        elif op == 3 and isinstance(parent, list):
            parent.insert(key, json.loads(json.dumps(old)))
            return doc
        elif op == 4 and isinstance(parent, dict):
            parent[key + rng.choice(("", "x", "."))] = json.loads(json.dumps(rng.choice(list(parent.values()))))
        elif op == 5 and isinstance(old, str):
            parent[key] = old[: rng.randrange(len(old) + 1)] + rng.choice(("", "0", "é", "\x00", "/.."))
    return doc


def mutate_package(data: bytes, max_size: int, rng: random.Random, bytes_mutate: Callable[[bytes, int], bytes]) -> bytes:
    flags, manifest, weights = unpack_package_input(data)
    r = rng.random()
    if r < 0.5:
        try:
            doc = json.loads(manifest)
        except (ValueError, RecursionError):
            return bytes_mutate(data, max_size)
        manifest = json.dumps(mutate_json(doc, rng), indent=rng.choice((None, 1))).encode()
        flags = 3 if rng.random() < 0.9 else flags
    elif r < 0.75:
        weights = bytes_mutate(weights, len(weights) + 256)
    else:
        return bytes_mutate(data, max_size)
    return pack_package_input(flags, manifest, weights)[:max_size]


def mutate_serial(data: bytes, max_size: int, rng: random.Random, bytes_mutate: Callable[[bytes, int], bytes]) -> bytes:
    from edge_sdk.serial.protocol import FLAG_MORE, MAX_PAYLOAD, REQUEST_TYPES, RESPONSE_TYPES, Frame, FrameReader, encode_frame

    frames = [f for f in FrameReader().feed(data) if isinstance(f, Frame)]
    if not frames or rng.random() < 0.5:
        return bytes_mutate(data, max_size)
    i = rng.randrange(len(frames))
    f = frames[i]
    op = rng.randrange(5)
    if op == 0:
        frames[i] = Frame(f.type, f.seq, bytes_mutate(f.payload, MAX_PAYLOAD)[:MAX_PAYLOAD], f.version)
    elif op == 1:
        t = rng.choice(sorted(REQUEST_TYPES | RESPONSE_TYPES)) | (FLAG_MORE if rng.random() < 0.2 else 0)
        frames[i] = Frame(t, f.seq, f.payload, f.version)
    elif op == 2:
        frames[i] = Frame(f.type, rng.choice((0, 1, (f.seq + 1) & 0xFFFF, 0xFFFF)), f.payload, rng.choice((f.version,) * 5 + (0, 2, 0xFF)))
    elif op == 3:
        frames.insert(i, f)
    else:
        del frames[i]
    return b"".join(encode_frame(x) for x in frames)[:max_size]


_GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, width) of the counts, lengths, types, dimensions and numeric values in a GGUF header
    (little-endian, as far as it parses): where a mutation changes what the reader is told."""
    out: list[tuple[int, int]] = [(4, 4), (8, 8), (16, 8)]
    pos = 24

    def take(width: int) -> int:
        nonlocal pos
        if pos + width > len(data):
            raise IndexError
        out.append((pos, width))
        pos += width
        return int.from_bytes(data[pos - width : pos], "little")

    def string() -> None:
        nonlocal pos
        n = take(8)
        pos += n

    def value(vtype: int) -> None:
        nonlocal pos
        if vtype in _GGUF_SCALARS:
            take(_GGUF_SCALARS[vtype])
        elif vtype == 8:
            string()
        elif vtype == 9:
            itype, n = take(4), take(8)
            for k in range(n):
                if k < 4 or itype not in _GGUF_SCALARS:
                    value(itype)
                else:  # the rest of a numeric array in one step
                    pos += (n - k) * _GGUF_SCALARS[itype]
                    break
        else:
            raise IndexError

    try:
        n_tensors, n_kv = int.from_bytes(data[8:16], "little"), int.from_bytes(data[16:24], "little")
        for _ in range(min(n_kv, 4096)):
            string()
            value(take(4))
        for _ in range(min(n_tensors, 4096)):
            string()
            for _ in range(min(take(4), 8)):
                take(8)
            take(4)
            take(8)
    except IndexError:
        pass
    return out


def mutate_gguf(data: bytes, max_size: int, rng: random.Random, bytes_mutate: Callable[[bytes, int], bytes]) -> bytes:
    fields = gguf_fields(data) if data[:4] == b"GGUF" else []
    if not fields or rng.random() < 0.4:
        return bytes_mutate(data, max_size)
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        pos, width = rng.choice(fields)
        old = int.from_bytes(b[pos : pos + width], "little")
        if width == 4 and rng.random() < 0.3:  # maybe a float32
            new = struct.unpack("<I", struct.pack("<f", rng.choice((0.0, -1.0, 1e-30, 1e30, float("nan"), float("inf")))))[0]
        else:
            new = rng.choice(INTERESTING + [old + 1, old - 1, old * 2, old // 2, old + 32, old ^ 0x80])
        b[pos : pos + width] = (new % (1 << 8 * width)).to_bytes(width, "little")
    return bytes(b[:max_size])


MUTATORS = {"gguf": mutate_gguf, "package": mutate_package, "serial": mutate_serial}
DEFAULT_MAX_LEN = {"gguf": 65536, "package": 65536, "serial": 8192}

# ------------------------------------------------------------------- engines

TARGET_CLASSES = {"gguf": GGUFTarget, "package": PackageTarget, "serial": SerialTarget}


def make_target(name: str, work: Path) -> Callable[[bytes], None]:
    return TARGET_CLASSES[name](work)


def seed_files(name: str) -> list[Path]:
    d = CORPUS / name
    return sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def child_atheris(args: argparse.Namespace) -> None:
    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED):
        import edge_sdk.export.convert  # noqa: F401
        import edge_sdk.graphs.spec  # noqa: F401
        import edge_sdk.importers  # noqa: F401
        import edge_sdk.importers.registry  # noqa: F401
        import edge_sdk.importers.gguf_import  # noqa: F401
        import edge_sdk.export.package  # noqa: F401
        import edge_sdk.serial.protocol  # noqa: F401
        import edge_sdk.serial.messages  # noqa: F401
        import edge_sdk.text.tokenizer  # noqa: F401
        import gguf  # noqa: F401
    target = make_target(args.target, Path(args.work))
    corpus = Path(args.out) / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    argv = [sys.argv[0], str(corpus), str(CORPUS / args.target),
            f"-max_total_time={args.seconds}", f"-timeout={args.timeout}", f"-rss_limit_mb={args.rss_mb}",
            f"-artifact_prefix={args.out}/", "-print_final_stats=1", f"-seed={args.seed}"]
    max_len = args.max_len or DEFAULT_MAX_LEN.get(args.target)
    if max_len:
        argv.append(f"-max_len={max_len}")
    mutator = MUTATORS.get(args.target)
    if mutator is None:
        atheris.Setup(argv, target)
    else:
        def custom(data: bytes, max_size: int, seed: int) -> bytes:
            return mutator(data, max_size, random.Random(seed), atheris.Mutate)

        atheris.Setup(argv, target, custom_mutator=custom)
    atheris.Fuzz()


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**63 - 1, 2**63, 2**64 - 1]


def mutate(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """1-8 random byte-level edits (flip, set, interesting integers, insert, delete, splice)."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(7)
        i = rng.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[i] = rng.randrange(256)
        elif op == 2 and b:
            width = rng.choice((1, 2, 4, 8))
            v = rng.choice(INTERESTING) & ((1 << 8 * width) - 1)
            b[i : i + width] = v.to_bytes(width, rng.choice(("little", "big")))
        elif op == 3:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4 and b:
            del b[i : i + rng.randint(1, 64)]
        elif op == 5 and b:
            j = rng.randrange(len(b))
            b[i:i] = b[j : j + rng.randint(1, 64)]
        elif op == 6 and seeds:
            other = rng.choice(seeds)
            j = rng.randrange(len(other)) if other else 0
            b[i:] = other[j:]
    return bytes(b)


def child_random(args: argparse.Namespace) -> None:
    """Mutation without coverage feedback; a watchdog thread enforces the time and memory limits."""
    target = make_target(args.target, Path(args.work))
    seeds = [p.read_bytes() for p in seed_files(args.target)] or [b""]
    rng = random.Random(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"data": b"", "start": None}

    def report(kind: str, data: bytes, detail: str) -> None:
        p = out / f"{kind}-{hashlib.sha1(data).hexdigest()}"
        p.write_bytes(data)
        print(f"==FINDING== {kind}: {detail}\nartifact: {p}", file=sys.stderr, flush=True)

    def watchdog() -> None:
        import faulthandler

        while True:
            time.sleep(0.1)
            start = state["start"]
            if start is not None and time.monotonic() - start > args.timeout:
                report("timeout", state["data"], f"one input ran over {args.timeout} s")
                faulthandler.dump_traceback(all_threads=True)
                os._exit(70)
            if _rss_mb() > args.rss_mb:
                report("oom", state["data"], f"resident memory {_rss_mb():.0f} MiB is over {args.rss_mb} MiB")
                os._exit(71)

    threading.Thread(target=watchdog, daemon=True).start()
    t_end = time.monotonic() + args.seconds
    runs = 0
    max_len = args.max_len or DEFAULT_MAX_LEN.get(args.target) or 2 * max(map(len, seeds))
    structured = MUTATORS.get(args.target)

    def bytes_mutate(data: bytes, max_size: int) -> bytes:
        return mutate(data, rng, seeds)[:max_size]

    while time.monotonic() < t_end:
        if runs < len(seeds):
            data = seeds[runs]
        elif structured is not None:
            data = structured(rng.choice(seeds), max_len, rng, bytes_mutate)
        else:
            data = bytes_mutate(rng.choice(seeds), max_len)
        state["data"], state["start"] = data, time.monotonic()
        try:
            target(data)
        except BaseException as e:  # noqa: BLE001 - every escape is a finding
            state["start"] = None
            report("crash", data, f"{type(e).__name__}: {e}")
            traceback.print_exc()
            sys.exit(1)
        state["start"] = None
        runs += 1
    elapsed = args.seconds
    print(f"#{runs} DONE exec/s: {runs / elapsed:.0f} (random mutation, no coverage feedback)", file=sys.stderr)


def replay(name: str, files: list[Path] | None = None) -> list[str]:
    """Run each corpus input of `name` once; the findings, as text (empty when all pass)."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="edge_sdk_fuzz_") as work:
        target = make_target(name, Path(work))
        for p in files if files is not None else seed_files(name):
            try:
                target(p.read_bytes())
            except BaseException as e:  # noqa: BLE001
                problems.append(f"{p.name}: {type(e).__name__}: {e}")
    return problems


# ------------------------------------------------------------ seed corpus


def make_seeds() -> None:
    """Write the seeds of tests/fuzz/corpus/ (and the package tokenizer) from tests/tiny_models.py's writers;
    the inputs of fixed findings next to them are kept."""
    sys.path.insert(0, str(ROOT / "tests"))
    import numpy as np
    from tiny_models import tiny_weights, write_gguf
    from tiny_vocab import tiny_gpt2_vocab, tiny_spm_vocab

    from edge_sdk.model.config import ModelConfig, QuantConfig
    from edge_sdk.export.convert import convert
    from edge_sdk.serial import messages as m
    from edge_sdk.serial.protocol import ACK, CANCEL, CHAT, DONE, ERROR, GENERATE, INFO_REPLY, PING, REGISTER, TOKEN, UNREGISTER, Frame, encode_frame, split_message

    small = dict(n_layers=1, n_heads=2, n_kv_heads=1, max_ctx=64, rope_theta=10000.0, rms_eps=1e-5)
    gdir = CORPUS / "gguf"
    gdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        gpt2, spm = tiny_gpt2_vocab(), tiny_spm_vocab()
        models = [  # (file, config, vocab, tensor type)
            ("f32_no_tokenizer.gguf", ModelConfig(vocab_size=16, dim=16, ffn_dim=32, tied_embeddings=True, **small), None, "F32"),
            ("q8_0_gpt2.gguf", ModelConfig(vocab_size=len(gpt2["tokens"]), dim=32, ffn_dim=32, tied_embeddings=True, **small), gpt2, "Q8_0"),
            ("f16_spm_head.gguf", ModelConfig(vocab_size=len(spm["tokens"]), dim=16, ffn_dim=16, **small), spm, "F16"),
        ]
        for fname, cfg, vocab, qtype in models:
            write_gguf(str(gdir / fname), cfg, tiny_weights(cfg, seed=1), vocab, qtype=qtype)
        pkg = Path(tmp) / "pkg"
        convert(str(gdir / "q8_0_gpt2.gguf"), str(pkg), QuantConfig(group_size=32), onnx_graphs=False)
        manifest, weights = (pkg / "manifest.json").read_bytes(), (pkg / "weights.bin").read_bytes()
        shutil.copyfile(pkg / "tokenizer.json", PACKAGE_TOKENIZER)
    pdir = CORPUS / "package"
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / "as_written").write_bytes(pack_package_input(0, manifest, weights))
    (pdir / "checksums_rewritten").write_bytes(pack_package_input(3, manifest, weights))
    sdir = CORPUS / "serial"
    sdir.mkdir(parents=True, exist_ok=True)
    serial_seeds = {
        "ping": encode_frame(Frame(PING, 1, b"hello")),
        "generate": split_message(GENERATE, 2, m.encode_generate("Hi", max_tokens=8, temperature=0.7, top_p=0.9, seed=3, stop=["\n", "."])),
        "chat_fragmented": split_message(CHAT, 3, m.encode_chat([{"role": "user", "content": "x" * 1100}], top_k=4)),
        "cancel": encode_frame(Frame(CANCEL, 4, m.encode_cancel(2))),
        "replies": b"".join(encode_frame(Frame(t, 2, p)) for t, p in (
            (INFO_REPLY, m.encode_info_reply({"name": "tiny", "ctx": 64, "backend": "numpy", "protocol_version": 2, "max_payload": 1024})),
            (TOKEN, "é".encode()), (DONE, m.encode_done({"prompt_tokens": 3, "generated_tokens": 8, "decode_tok_s": 12.5, "stop_reason": "length"})),
            (ERROR, m.encode_error(8, "busy")))),
        "noise_then_frame": bytes(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8)) + encode_frame(Frame(PING, 5)),
        "constraints": b"".join((
            split_message(REGISTER, 6, m.encode_register(1, choices=["forward", "back", "stop"])),
            split_message(REGISTER, 7, m.encode_register(2, json_schema={"type": "object", "properties": {
                "paint": {"enum": [f"colour-{i:03d}" for i in range(100)]}}})),
            split_message(REGISTER, 8, m.encode_register(3, regex="[0-9]{1,3}")),
            encode_frame(Frame(UNREGISTER, 9, m.encode_unregister(3))),
            encode_frame(Frame(GENERATE, 10, m.encode_generate("Go", max_tokens=8, constraint=1))),
            encode_frame(Frame(ACK, 6, m.encode_ack({"constraint": 1, "constraints_held": 1}))),
            encode_frame(Frame(DONE, 10, m.encode_done({"generated_tokens": 2, "stop_reason": "eos", "finish_reason": "stop",
                                                        "constraint": "satisfied"}))))),
    }
    for name, data in serial_seeds.items():
        (sdir / name).write_bytes(data)


# ------------------------------------------------------------------- runner

PROGRESS = re.compile(r"#\d+\s+(NEW|REDUCE|pulse|INITED|RELOAD)\s")
RUNS = re.compile(r"^#(\d+)\s", re.M)
EXECS = re.compile(r"exec/s: (\d+)")
COV = re.compile(r"cov: (\d+) ft: (\d+)")


def run_target(name: str, args: argparse.Namespace, engine: str) -> tuple[int, str]:
    """Fuzz one target in a child process; (exit status, one summary line)."""
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edge_sdk_fuzz_", dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as work:
        cmd = [sys.executable, __file__, name, "--child", engine, "--work", work, "--out", str(out),
               "--seconds", str(args.seconds), "--timeout", str(args.timeout), "--rss-mb", str(args.rss_mb),
               "--seed", str(args.seed), "--max-len", str(args.max_len)]
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, errors="replace",
                               timeout=args.seconds + 120)
            rc, err = p.returncode, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, err = 124, (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    took = time.monotonic() - t0
    stats = dict(re.findall(r"^stat::(\w+):\s+(\d+)", err, re.M))
    runs = stats.get("number_of_executed_units") or (RUNS.findall(err) or ["?"])[-1]
    eps = stats.get("average_exec_per_sec") or (EXECS.findall(err) or ["?"])[-1]
    cov = COV.findall(err)
    cov_text = f", coverage {cov[-1][0]} edges / {cov[-1][1]} features" if cov else ""
    line = f"{name}: {runs} inputs in {took:.0f} s ({eps} exec/s{cov_text}), {'ok' if rc == 0 else f'FINDING (exit {rc})'}"
    if args.verbose:
        sys.stderr.write(err)
    elif rc != 0:  # the finding without libFuzzer's progress lines
        sys.stderr.write("\n".join(ln for ln in err.splitlines() if not PROGRESS.match(ln))[-20000:] + "\n")
    return rc, line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("targets", nargs="*", metavar="TARGET", help=f"{', '.join(TARGETS)} (default: all)")
    ap.add_argument("--seconds", type=int, default=60, help="fuzzing time per target (default 60)")
    ap.add_argument("--timeout", type=int, default=10, help="seconds one input may take (default 10)")
    ap.add_argument("--rss-mb", type=int, default=2048, help="resident memory limit of a fuzzing process (default 2048)")
    ap.add_argument("--max-len", type=int, default=0, help="longest input (default: libFuzzer's, from the seeds)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "edge_sdk_fuzz"),
                    help="findings and the grown corpus go here (default: $TMPDIR/edge_sdk_fuzz)")
    ap.add_argument("--replay", action="store_true", help="run the seed corpus once, no fuzzing")
    ap.add_argument("--make-seeds", action="store_true", help="rewrite the seed corpus")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the fuzzer's own output")
    ap.add_argument("--child", choices=("atheris", "random"), help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        ap.error(f"unknown target {unknown[0]!r} (targets: {', '.join(TARGETS)})")
    sys.path.insert(0, str(ROOT))
    names = args.targets or list(TARGETS)
    if args.child:
        args.target = names[0]
        (child_atheris if args.child == "atheris" else child_random)(args)
        return 0
    if args.make_seeds:
        make_seeds()
        return 0
    if args.replay:
        bad = [f"{n}/{p}" for n in names for p in replay(n)]
        print("\n".join(bad) or f"seed corpus: {sum(len(seed_files(n)) for n in names)} inputs, all pass")
        return 1 if bad else 0
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if have_atheris() else "random"
        if engine == "random":
            print("atheris is not installed (pip install -e '.[fuzz]'): random mutation without coverage feedback",
                  file=sys.stderr)
    failed = 0
    for n in names:
        rc, line = run_target(n, args, engine)
        print(line, flush=True)
        failed += rc != 0
    if failed:
        print(f"findings in {failed} target(s); inputs under {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
