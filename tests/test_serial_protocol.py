"""Serial protocol: COBS, frame layout, the receiver's faults, payload codecs.

Exact bytes are pinned here; the C client in examples/mcu_client/ is held to
the same bytes through its committed test vectors (checked below as well).
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from edge_sdk.errors import InvalidArgumentError, ProtocolError
from edge_sdk.serial import cobs, messages
from edge_sdk.serial.protocol import ACK, CANCEL, CHAT, DONE, ERROR, FLAG_MORE, GENERATE, REGISTER, MAX_ENCODED, MAX_PAYLOAD, MAX_WIRE, PING, TOKEN, ErrorCode, Frame, FrameFault, FrameReader, Message, MessageFault, RequestAssembler, decode_body, encode_frame, split_message

ROOT = Path(__file__).resolve().parents[1]
MCU = ROOT / "examples" / "mcu_client"

# ------------------------------------------------------------------ COBS

# Examples 1-11 of the COBS article on Wikipedia (canonical encoder output).
COBS_CASES = [
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
    (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255))),
    (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
]


@pytest.mark.parametrize("raw,encoded", COBS_CASES, ids=range(1, 12))
def test_cobs_known_vectors(raw: bytes, encoded: bytes) -> None:
    assert cobs.encode(raw) == encoded
    assert cobs.decode(encoded) == raw


def test_cobs_round_trip_awkward_lengths() -> None:
    rng = random.Random(7)
    for n in (0, 1, 3, 7, 253, 254, 255, 507, 508, 509, 1034):
        for zeros in (0.0, 0.01, 0.5):
            raw = bytes(0 if rng.random() < zeros else rng.randrange(1, 256) for _ in range(n))
            enc = cobs.encode(raw)
            assert 0 not in enc
            assert len(enc) <= cobs.max_encoded_size(n)
            assert cobs.decode(enc) == raw


@pytest.mark.parametrize(
    "bad,why",
    [
        (b"\x05\x11\x22", "group at offset 0 needs 4 bytes, only 2 left"),
        (b"\x03\x11\x00", "zero byte inside the group at offset 0"),
        (b"\x02\x11\x00\x01", "zero byte at offset 2 inside a frame"),
    ],
)
def test_cobs_rejects_what_no_encoder_makes(bad: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        cobs.decode(bad)


# --------------------------------------------------------------- frames


def test_frame_layout_exact_bytes() -> None:
    wire = encode_frame(Frame(TOKEN, 0x1234, b"Hi"))
    body = bytes([2, TOKEN, 0x34, 0x12, 2, 0]) + b"Hi"
    body += struct.pack("<I", zlib.crc32(body))
    assert wire == b"\x00" + cobs.encode(body) + b"\x00"
    assert wire.hex(" ") == "00 06 02 83 34 12 02 07 48 69 58 7d f5 bd 00"
    assert decode_body(wire[1:-1]) == Frame(TOKEN, 0x1234, b"Hi")


def test_crc_is_ieee_crc32() -> None:
    # The check value of CRC-32/ISO-HDLC; the C client pins the same number.
    assert zlib.crc32(b"123456789") == 0xCBF43926


def test_size_limits() -> None:
    assert (MAX_PAYLOAD, MAX_ENCODED, MAX_WIRE) == (1024, 1039, 1041)
    biggest = encode_frame(Frame(GENERATE, 1, b"\xff" * MAX_PAYLOAD))
    assert len(biggest) <= MAX_WIRE
    with pytest.raises(ValueError, match="over the 1024-byte frame limit"):
        encode_frame(Frame(GENERATE, 1, b"x" * (MAX_PAYLOAD + 1)))
    with pytest.raises(ValueError, match="seq 70000 does not fit in u16"):
        encode_frame(Frame(PING, 70000))


def _corrupt(wire: bytes, index: int) -> bytes:
    """Flip one bit of the frame body (not the COBS codes) and re-frame it."""
    body = bytearray(cobs.decode(wire[1:-1]))
    body[index] ^= 0x04
    return b"\x00" + cobs.encode(bytes(body)) + b"\x00"


def test_reader_faults_are_exact() -> None:
    ping = encode_frame(Frame(PING, 3))
    gen = encode_frame(Frame(GENERATE, 4, messages.encode_generate("Hello there")))
    body = cobs.decode(gen[1:-1])
    truncated = b"\x00" + cobs.encode(body[:-6]) + b"\x00"
    flipped = _corrupt(gen, 10)
    said = zlib.crc32(body[:-4])  # the CRC the frame still carries
    actual = zlib.crc32(cobs.decode(flipped[1:-1])[:-4])
    assert said != actual
    stream = b"\xff" * 40 + ping + flipped + truncated + b"\x00\x00\x00" + ping
    out = FrameReader().feed(stream)
    assert out == [
        FrameFault(ErrorCode.BAD_FRAME, "COBS: group at offset 0 needs 254 bytes, only 39 left"),
        Frame(PING, 3),
        FrameFault(ErrorCode.BAD_CRC, f"CRC-32 is 0x{actual:08x}, frame says 0x{said:08x}"),
        FrameFault(ErrorCode.BAD_LENGTH, "header says 14 payload bytes, frame carries 8"),
        Frame(PING, 3),
    ]


def test_reader_is_fed_one_byte_at_a_time() -> None:
    wire = split_message(GENERATE, 77, messages.encode_generate("é" * 600, max_tokens=3))
    reader = FrameReader()
    frames = [f for b in wire for f in reader.feed(bytes([b]))]
    assert [(f.type, f.seq, len(f.payload)) for f in frames] == [(GENERATE | FLAG_MORE, 77, 1024), (GENERATE, 77, 186)]


def test_reader_memory_is_bounded_under_a_flood() -> None:
    reader = FrameReader()
    rng = random.Random(3)
    for _ in range(100):
        reader.feed(bytes(rng.randrange(1, 256) for _ in range(1000)))
        assert reader.buffered <= MAX_ENCODED
    out = reader.feed(encode_frame(Frame(PING, 5)))
    assert out == [FrameFault(ErrorCode.TOO_LARGE, "frame longer than 1039 encoded bytes discarded"), Frame(PING, 5)]
    assert reader.discarded_bytes == 100_000
    assert reader.buffered == 0


def test_oversized_frame_is_dropped_and_the_next_one_kept() -> None:
    body = bytes([1, GENERATE, 1, 0]) + struct.pack("<H", 1100) + b"a" * 1100
    body += struct.pack("<I", zlib.crc32(body))
    wire = b"\x00" + cobs.encode(body) + b"\x00" + encode_frame(Frame(PING, 2))
    out = FrameReader().feed(wire)
    assert [type(x).__name__ for x in out] == ["FrameFault", "Frame"]
    assert out[0].code == ErrorCode.TOO_LARGE and out[1] == Frame(PING, 2)


def test_payload_over_the_limit_that_encodes_within_it_is_refused() -> None:
    """COBS adds one byte per 254, so a payload of MAX_PAYLOAD + 4 with zeros in it fits MAX_ENCODED:
    the header's length refuses it (the server could not echo it back in a PONG)."""
    payload = bytes(0 if i % 50 == 0 else 0x61 for i in range(MAX_PAYLOAD + 4))
    body = bytes([1, PING, 1, 0]) + struct.pack("<H", len(payload)) + payload
    body += struct.pack("<I", zlib.crc32(body))
    assert len(cobs.encode(body)) <= MAX_ENCODED
    assert decode_body(cobs.encode(body)) == FrameFault(ErrorCode.TOO_LARGE, "payload of 1028 bytes is over the 1024-byte frame limit")


# ----------------------------------------------------------- reassembly


def test_assembler_joins_fragments_and_checks_requests() -> None:
    prompt = "x" * 2500
    frames = FrameReader().feed(split_message(GENERATE, 9, messages.encode_generate(prompt, seed=1)))
    assert [f.type for f in frames] == [GENERATE | FLAG_MORE, GENERATE | FLAG_MORE, GENERATE]
    asm = RequestAssembler()
    got = [m for f in frames for m in asm.push(f)]
    assert len(got) == 1 and got[0].seq == 9
    assert messages.decode_generate(got[0].payload) == (prompt, {"seed": 1})

    assert asm.push(Frame(0x7E, 4)) == [MessageFault(ErrorCode.UNKNOWN_TYPE, 4, "frame type 0x7e is not a request")]
    # Responses (an echoing line, another server) get no reply, so nothing can ping-pong.
    assert asm.push(Frame(TOKEN, 4)) == [] and asm.push(Frame(ERROR, 0, b"\x01\x00")) == []
    assert asm.ignored == 2
    # A version-1 client is told in version 1 (its ERROR layout is ours); a version we do not know, in ours.
    assert asm.push(Frame(PING, 5, version=1)) == [
        MessageFault(ErrorCode.BAD_VERSION, 5, "protocol version 1 is not supported; this server speaks 2", 1)
    ]
    assert asm.push(Frame(PING, 5, version=3)) == [
        MessageFault(ErrorCode.BAD_VERSION, 5, "protocol version 3 is not supported; this server speaks 2", 2)
    ]
    assert asm.push(Frame(PING, 0)) == [MessageFault(ErrorCode.BAD_SEQ, 0, "seq 0 is reserved; number requests from 1")]
    # A fragment left hanging by another request is reported under its own seq.
    assert asm.push(Frame(CHAT | FLAG_MORE, 6, b"ab")) == []
    assert asm.push(Frame(PING, 7)) == [
        MessageFault(ErrorCode.BAD_PAYLOAD, 6, "fragmented CHAT interrupted by PING seq 7"),
        Message(PING, 7),
    ]


def test_assembler_limits_message_size() -> None:
    asm = RequestAssembler(max_message=2048)
    frames = FrameReader().feed(split_message(CHAT, 3, b"z" * 3000))
    out = [m for f in frames for m in asm.push(f)]
    assert out == [MessageFault(ErrorCode.TOO_LARGE, 3, "message of 3000 bytes is over the 2048-byte limit")]


# -------------------------------------------------------------- payloads

SAMPLING = dict(
    max_tokens=64, temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, repetition_penalty=1.1, seed=42, stop=["\n\n", "User:"]
)


def test_generate_payload_exact_bytes_and_round_trip() -> None:
    p = messages.encode_generate("Hi", **SAMPLING)
    assert p.hex(" ") == (
        "01 02 00 48 69 "
        "10 04 00 40 00 00 00 "
        "11 04 00 33 33 33 3f "
        "12 04 00 28 00 00 00 "
        "13 04 00 66 66 66 3f "
        "14 04 00 cd cc 4c 3d "
        "15 04 00 cd cc 8c 3f "
        "16 04 00 2a 00 00 00 "
        "17 02 00 0a 0a "
        "17 05 00 55 73 65 72 3a"
    )
    assert messages.decode_generate(p) == ("Hi", SAMPLING)


def test_none_means_default_and_bad_values_are_refused() -> None:
    assert messages.encode_generate("a", temperature=None, stop="x") == bytes.fromhex("01 01 00 61 17 01 00 78")
    with pytest.raises(TypeError, match=r"unknown field\(s\) \['topk'\]"):
        messages.encode_generate("a", topk=3)
    with pytest.raises(ValueError, match="seed=-1 is outside 0..4294967295"):
        messages.encode_generate("a", seed=-1)
    with pytest.raises(TypeError, match="max_tokens must be an int, got float"):
        messages.encode_generate("a", max_tokens=3.0)
    with pytest.raises(ValueError, match="temperature=nan is not finite"):
        messages.encode_generate("a", temperature=float("nan"))


def test_chat_payload_round_trip() -> None:
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Grüß dich"}]
    p = messages.encode_chat(chat, max_tokens=5)
    assert messages.decode_chat(p) == (chat, {"max_tokens": 5})
    assert p[:14].hex(" ") == "02 06 00 73 79 73 74 65 6d 03 09 00 42 65"


@pytest.mark.parametrize(
    "payload,why",
    [
        (bytes.fromhex("10 04 00 01 00 00 00"), "GENERATE has no prompt field"),
        (bytes.fromhex("01 05 00 48 69"), "field 0x01 at offset 0 says 5 bytes, only 2 left"),
        (bytes.fromhex("01 01 00 48 10"), r"field header cut at offset 4 \(1 bytes left, need 3\)"),
        (bytes.fromhex("01 01 00 48 10 02 00 01 00"), "field 0x10 must be 4 bytes"),
        (bytes.fromhex("01 01 00 48 7f 00 00"), "unknown field tag 0x7f"),
        (bytes.fromhex("01 01 00 48 01 01 00 49"), "field prompt"),
        (bytes.fromhex("01 02 00 c3 28"), "not valid UTF-8"),
    ],
)
def test_generate_payload_faults(payload: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        messages.decode_generate(payload)


def test_chat_payload_faults() -> None:
    with pytest.raises(ProtocolError, match="CHAT role 'user' has no content field"):
        messages.decode_chat(bytes.fromhex("02 04 00 75 73 65 72"))
    with pytest.raises(ProtocolError, match="content field without a role"):
        messages.decode_chat(bytes.fromhex("03 01 00 61"))
    with pytest.raises(ProtocolError, match="CHAT has no messages"):
        messages.decode_chat(b"")


def test_response_payloads() -> None:
    stats = {"prompt_tokens": 12, "generated_tokens": 30, "prefill_tok_s": 812.5, "decode_tok_s": 41.25, "stop_reason": "eos"}
    done = messages.encode_done({**stats, "elapsed_s": 1.0})
    assert messages.decode_done(done) == stats
    # A client skips tags it does not know.
    assert messages.decode_done(done + bytes.fromhex("7f 01 00 00")) == stats
    # A capped request's DONE: CAPPED_MAX_TOKENS (0x35) after STOP_REASON, in tag order.
    capped = messages.encode_done({"generated_tokens": 125, "stop_reason": "context", "capped_max_tokens": 125})
    assert capped.hex(" ") == "31 04 00 7d 00 00 00 34 07 00 63 6f 6e 74 65 78 74 35 04 00 7d 00 00 00"
    assert messages.decode_done(capped) == {"generated_tokens": 125, "stop_reason": "context", "capped_max_tokens": 125}
    info = {"name": "SmolLM2", "ctx": 8192, "backend": "native", "protocol_version": 1, "max_payload": 1024}
    assert messages.decode_info_reply(messages.encode_info_reply(info)) == info
    assert messages.encode_cancel(513) == b"\x01\x02" and messages.decode_cancel(b"\x01\x02") == 513
    with pytest.raises(ProtocolError, match="CANCEL payload must be 2 bytes"):
        messages.decode_cancel(b"\x01")
    assert messages.decode_error(messages.encode_error(ErrorCode.BUSY, "busy")) == (8, "busy")
    # 1022 bytes are left for the text: 340 whole three-byte characters fit.
    long = messages.encode_error(ErrorCode.INTERNAL, "€" * 400)
    assert len(long) == 2 + 1020 and messages.decode_error(long) == (11, "€" * 340)


def test_constraint_payloads_exact_bytes_and_round_trip() -> None:
    """REGISTER: CONSTRAINT (0x18, the id) then one kind; a schema dict travels as compact JSON, each choice
    as its own CHOICE field. GENERATE and CHAT name the id in CONSTRAINT, after the sampling fields."""
    choices = messages.encode_register(1, choices=["left", "right"])
    assert choices.hex(" ") == "18 04 00 01 00 00 00 41 04 00 6c 65 66 74 41 05 00 72 69 67 68 74"
    assert messages.decode_register(choices) == (1, "choices", ["left", "right"])
    schema = messages.encode_register(7, json_schema={"type": "object", "properties": {"a": {"enum": ["x", "y"]}}})
    assert schema[:10].hex(" ") == "18 04 00 07 00 00 00 40 37 00"
    assert messages.decode_register(schema) == (7, "json_schema", '{"type":"object","properties":{"a":{"enum":["x","y"]}}}')
    assert messages.encode_register(7, json_schema='{"type": "string"}') == bytes.fromhex("18 04 00 07 00 00 00 40 12 00") + b'{"type": "string"}'
    regex = messages.encode_register(3, regex="[0-9]+")
    assert regex.hex(" ") == "18 04 00 03 00 00 00 42 06 00 5b 30 2d 39 5d 2b"
    assert messages.decode_register(regex) == (3, "regex", "[0-9]+")
    grammar = messages.encode_register(255, grammar='start: "a"')
    assert grammar.hex(" ") == "18 04 00 ff 00 00 00 43 0a 00 73 74 61 72 74 3a 20 22 61 22"
    assert messages.decode_register(grammar) == (255, "grammar", 'start: "a"')
    assert messages.encode_unregister(5).hex(" ") == "18 04 00 05 00 00 00" and messages.encode_unregister() == b""
    assert messages.decode_unregister(bytes.fromhex("18 04 00 05 00 00 00")) == 5 and messages.decode_unregister(b"") is None
    ack = messages.encode_ack({"constraint": 5, "constraints_held": 2})
    assert ack.hex(" ") == "18 04 00 05 00 00 00 44 04 00 02 00 00 00"
    assert messages.decode_ack(ack) == {"constraint": 5, "constraints_held": 2}
    assert messages.decode_ack(messages.encode_ack({"constraint": None, "constraints_held": 0})) == {"constraints_held": 0}
    gen = messages.encode_generate("Go", max_tokens=4, constraint=3)
    assert gen.hex(" ") == "01 02 00 47 6f 10 04 00 04 00 00 00 18 04 00 03 00 00 00"
    assert messages.decode_generate(gen) == ("Go", {"max_tokens": 4, "constraint": 3})
    chat = messages.encode_chat([{"role": "user", "content": "Go"}], constraint=1)
    assert chat.hex(" ") == "02 04 00 75 73 65 72 03 02 00 47 6f 18 04 00 01 00 00 00"
    assert messages.decode_chat(chat) == ([{"role": "user", "content": "Go"}], {"constraint": 1})
    # DONE of a constrained request: FINISH_REASON (0x36) and CONSTRAINT_STATE (0x37) after STOP_REASON.
    done = messages.encode_done({"generated_tokens": 6, "stop_reason": "eos", "finish_reason": "stop", "constraint": "satisfied"})
    assert done.hex(" ") == "31 04 00 06 00 00 00 34 03 00 65 6f 73 36 04 00 73 74 6f 70 37 09 00 73 61 74 69 73 66 69 65 64"
    assert messages.decode_done(done) == {"generated_tokens": 6, "stop_reason": "eos", "finish_reason": "stop", "constraint": "satisfied"}


@pytest.mark.parametrize(
    "payload,why",
    [
        ("18 04 00 01 00 00 00", r"REGISTER of constraint 1 gives no constraint: one of json_schema \(0x40\)"),
        ("41 01 00 61", r"REGISTER has no constraint field \(0x18\): the id to register under"),
        ("18 04 00 00 00 00 00 41 01 00 61", r"constraint id 0 is outside 1..255"),
        ("18 04 00 00 01 00 00 41 01 00 61", r"constraint id 256 is outside 1..255"),
        ("18 04 00 01 00 00 00 18 04 00 01 00 00 00 41 01 00 61", r"field constraint \(0x18\) appears twice"),
        ("18 04 00 01 00 00 00 40 02 00 7b 7d 42 01 00 61", r"REGISTER gives json_schema \(0x40\) and regex \(0x42\): register one"),
        ("18 04 00 01 00 00 00 42 01 00 61 42 01 00 62", r"REGISTER gives regex \(0x42\) and regex \(0x42\): register one"),
        ("18 04 00 01 00 00 00 7f 00 00", r"unknown field tag 0x7f"),
        ("18 02 00 01 00 41 01 00 61", r"field 0x18 must be 4 bytes \(u32\), got 2"),
        ("18 04 00 01 00 00 00 41 02 00 c3 28", r"field 0x41 is not valid UTF-8"),
        ("18 04 00 01 00 00 00 41 05 00 61", r"field 0x41 at offset 7 says 5 bytes, only 1 left"),
    ],
)
def test_register_payload_faults(payload: str, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        messages.decode_register(bytes.fromhex(payload))


def test_register_encoder_refusals() -> None:
    with pytest.raises(InvalidArgumentError, match=r"REGISTER takes one constraint \(json_schema, choices, regex or grammar\), got none"):
        messages.encode_register(1)
    with pytest.raises(InvalidArgumentError, match=r"got choices, regex"):
        messages.encode_register(1, choices=["a"], regex="a")
    with pytest.raises(InvalidArgumentError, match="choices is empty"):
        messages.encode_register(1, choices=[])
    with pytest.raises(TypeError, match="choices must be a list of strings, got str"):
        messages.encode_register(1, choices="ab")
    for bad in (0, 256):
        with pytest.raises(InvalidArgumentError, match=f"constraint id {bad} is outside 1..255"):
            messages.encode_register(bad, regex="a")
    with pytest.raises(TypeError, match="a constraint id must be an int, got bool"):
        messages.encode_unregister(True)
    with pytest.raises(ProtocolError, match="unknown field tag 0x41"):
        messages.decode_unregister(bytes.fromhex("41 01 00 61"))


def test_split_utf8_keeps_characters_whole() -> None:
    text = "a" + "€" * 400  # 1 + 1200 bytes
    parts = messages.split_utf8(text, MAX_PAYLOAD)
    assert [len(p) for p in parts] == [1024, 177]
    assert b"".join(parts).decode("utf-8") == text
    for p in parts:
        p.decode("utf-8")


def test_split_utf8_refuses_pieces_too_small_for_a_character() -> None:
    """Found by review: a piece shorter than the next character, or of 0 bytes, made it loop forever."""
    assert messages.split_utf8("a€", 3) == [b"a", "€".encode()]
    with pytest.raises(InvalidArgumentError, match="a 3-byte character does not fit in pieces of 2 bytes"):
        messages.split_utf8("a€", 2)
    with pytest.raises(InvalidArgumentError, match="a 4-byte character does not fit in pieces of 3 bytes"):
        messages.split_utf8("\U0001F600", 3)
    with pytest.raises(InvalidArgumentError, match="pieces of 0 bytes cannot hold any text"):
        messages.split_utf8("a", 0)


def test_split_message_rejects_big_control_frames() -> None:
    with pytest.raises(ValueError, match="PING payload of 1025 bytes"):
        split_message(PING, 1, b"p" * 1025)
    assert len(FrameReader().feed(split_message(ERROR, 1, b""))) == 1
    assert FrameReader().feed(split_message(CANCEL, 2, b"\x01\x00")) == [Frame(CANCEL, 2, b"\x01\x00")]


# ------------------------------------------------------- the C client


def test_c_test_vectors_are_current() -> None:
    """examples/mcu_client/test_vectors.h is what gen_vectors.py writes today."""
    sys.path.insert(0, str(MCU))
    try:
        import gen_vectors
    finally:
        sys.path.remove(str(MCU))
    assert (MCU / "test_vectors.h").read_text() == gen_vectors.render()


@pytest.mark.skipif(shutil.which("cc") is None or shutil.which("make") is None, reason="needs a C compiler and make")
def test_c_client_passes_its_host_test(tmp_path: Path) -> None:
    res = subprocess.run(
        ["make", "-s", "-C", str(MCU), "test", f"BUILD={tmp_path}"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "all checks passed" in res.stdout


def test_specification_examples_are_what_the_encoder_writes() -> None:
    """docs/serial-protocol.md shows bytes; they must be today's bytes."""
    flat = " ".join((ROOT / "docs" / "serial-protocol.md").read_text().split())
    gen = messages.encode_generate("Hi", max_tokens=8, temperature=0.0)
    register = messages.encode_register(1, choices=["forward", "back", "left", "right", "stop"])
    ack = messages.encode_ack({"constraint": 1, "constraints_held": 1})
    constrained = messages.encode_generate("Go", max_tokens=8, temperature=0.0, constraint=1)
    done = messages.encode_done({"generated_tokens": 6, "stop_reason": "eos", "finish_reason": "stop", "constraint": "satisfied"})
    old = messages.encode_error(ErrorCode.BAD_VERSION, "protocol version 1 is not supported; this server speaks 2")
    shown = {
        "PING seq 1": encode_frame(Frame(PING, 1)),
        "TOKEN seq 7 'Hi'": encode_frame(Frame(TOKEN, 7, b"Hi")),
        "GENERATE payload": gen,
        "GENERATE seq 1": encode_frame(Frame(GENERATE, 1, gen)),
        "CANCEL seq 2 of 1": encode_frame(Frame(CANCEL, 2, messages.encode_cancel(1))),
        "REGISTER payload": register,
        "REGISTER seq 4": encode_frame(Frame(REGISTER, 4, register)),
        "ACK seq 4": encode_frame(Frame(ACK, 4, ack)),
        "constrained GENERATE payload": constrained,
        "constrained DONE seq 5": encode_frame(Frame(DONE, 5, done)),
        "version-1 PING": encode_frame(Frame(PING, 1, version=1)),
        "its version-1 ERROR": encode_frame(Frame(ERROR, 1, old, version=1)),
    }
    for what, data in shown.items():
        assert data.hex(" ") in flat, what
    assert "body 02 83 07 00 02 00 48 69 b9 cc 3b 25" in flat
    robot = {"type": "object", "properties": {"action": {"enum": ["forward", "back", "left", "right", "stop"]},
                                              "cm": {"type": "integer", "minimum": 1, "maximum": 500}},
             "required": ["action", "cm"], "additionalProperties": False}
    text = json.dumps(robot, separators=(",", ":"))
    assert f"`{text}`, is {len(text)} bytes" in flat
    for n in (1, 5, 243):
        assert len(encode_frame(Frame(TOKEN, 1, b"x" * n))) == n + 13  # "n + 13 bytes on the wire (n < 244)"


def test_specification_lists_every_field_tag() -> None:
    """Section 3's table has a row for each tag of messages.Tag, with its value and kind."""
    flat = " ".join((ROOT / "docs" / "serial-protocol.md").read_text().split())
    kinds = {tag: kind for spec in (messages.REQUEST_FIELDS, messages.INFO_FIELDS, messages.DONE_FIELDS, messages.ACK_FIELDS)
             for tag, kind in spec.values()}
    for tag in messages.Tag:
        kind = kinds.get(tag, messages.TEXT)  # PROMPT, ROLE, CONTENT and the REGISTER kinds are text
        assert f"| 0x{tag:02x} | {tag.name} | {kind} |" in flat, tag.name


@pytest.mark.parametrize("module", ["cobs", "protocol", "messages"])
def test_docstring_examples_hold(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"edge_sdk.serial.{module}"))
    assert result.attempted > 0 and result.failed == 0
