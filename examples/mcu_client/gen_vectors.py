"""Write test_vectors.h: frames made by the Python reference (edge_sdk.serial).

The C test holds the C encoder to these bytes and feeds the response frames to
the C decoder. Run it after any protocol change and commit the result:

    python examples/mcu_client/gen_vectors.py

tests/test_serial_protocol.py fails while the committed file is out of date.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from edge_sdk.serial import cobs, messages  # noqa: E402
from edge_sdk.serial.protocol import ACK, CANCEL, CHAT, DONE, ERROR, GENERATE, INFO, INFO_REPLY, PING, PONG, PROTOCOL_VERSION, REGISTER, TOKEN, UNREGISTER, ErrorCode, Frame, encode_frame

# The values below are repeated in test_edge_serial.c, which checks that the C
# side builds and parses them the same way.
FULL_SAMPLING = dict(
    max_tokens=32, temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, repetition_penalty=1.1, seed=42, stop=["\n", "User:"]
)
DONE_STATS = dict(prompt_tokens=5, generated_tokens=3, prefill_tok_s=120.5, decode_tok_s=33.25, stop_reason="stop",
                  finish_reason="stop")
INFO_FIELDS = dict(name="SmolLM2-135M-Instruct", ctx=8192, backend="native", protocol_version=2, max_payload=1024,
                   max_constraints=16, max_constraint_size=4096)
CAPPED_STATS = dict(prompt_tokens=4, generated_tokens=125, stop_reason="context", capped_max_tokens=125,
                    finish_reason="length")
# Constraints: the C test registers the same ones, from the same strings.
ACTIONS = ["forward", "back", "left", "right", "stop"]
ROBOT_SCHEMA = ('{"type":"object","properties":{"action":{"enum":["forward","back","left","right","stop"]},'
                '"cm":{"type":"integer","minimum":1,"maximum":500}},"required":["action","cm"],"additionalProperties":false}')
MOVE_REGEX = "(LEFT|RIGHT) [1-9][0-9]?"
MOVE_GRAMMAR = 'start: "move " DIR " " NUM\nDIR: "left" | "right"\nNUM: /[0-9]{1,3}/'
CONSTRAINED_STATS = dict(prompt_tokens=6, generated_tokens=2, stop_reason="eos", finish_reason="stop", constraint="satisfied")
INCOMPLETE_STATS = dict(prompt_tokens=6, generated_tokens=8, stop_reason="length", finish_reason="length",
                        constraint="incomplete")


def _frame(t: int, seq: int, payload: bytes = b"", version: int = PROTOCOL_VERSION) -> bytes:
    return encode_frame(Frame(t, seq, payload, version))


def _flip_bit(wire: bytes, index: int) -> bytes:
    body = bytearray(cobs.decode(wire[1:-1]))
    body[index] ^= 0x10
    return b"\x00" + cobs.encode(bytes(body)) + b"\x00"


def _truncated(wire: bytes, drop: int) -> bytes:
    body = cobs.decode(wire[1:-1])
    return b"\x00" + cobs.encode(body[:-drop]) + b"\x00"


def vectors() -> list[tuple[str, str, bytes]]:
    """(C name, comment, bytes) of every vector."""
    gen1 = _frame(GENERATE, 1, messages.encode_generate("Hello, robot!", **FULL_SAMPLING))
    tok = [_frame(TOKEN, 1, t.encode()) for t in ("Hello", ",", " world")]
    done = _frame(DONE, 1, messages.encode_done(DONE_STATS))
    return [
        # Requests: the C builders must write exactly these bytes.
        ("vec_ping_1", "PING seq 1, empty payload", _frame(PING, 1)),
        ("vec_info_2", "INFO seq 2", _frame(INFO, 2)),
        ("vec_cancel_2_target_1", "CANCEL seq 2 of request 1", _frame(CANCEL, 2, messages.encode_cancel(1))),
        ("vec_generate_1", "GENERATE seq 1, 'Hello, robot!', FULL_SAMPLING", gen1),
        ("vec_generate_min_5", "GENERATE seq 5, 'Hi', no sampling fields", _frame(GENERATE, 5, messages.encode_generate("Hi"))),
        (
            "vec_generate_long_256",
            "GENERATE seq 256 (a zero byte in seq), prompt of 300 'a' (COBS groups of 254), max_tokens 0",
            _frame(GENERATE, 256, messages.encode_generate("a" * 300, max_tokens=0)),
        ),
        (
            "vec_chat_6",
            "CHAT seq 6: system 'Be brief.', user 'Wave.'; max_tokens 8, temperature 0",
            _frame(
                CHAT,
                6,
                messages.encode_chat(
                    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Wave."}], max_tokens=8, temperature=0.0
                ),
            ),
        ),
        ("vec_register_choices_1", "REGISTER seq 1: id 1, CHOICE x5 (ACTIONS)",
         _frame(REGISTER, 1, messages.encode_register(1, choices=ACTIONS))),
        ("vec_register_schema_2", "REGISTER seq 2: id 2, JSON_SCHEMA ROBOT_SCHEMA",
         _frame(REGISTER, 2, messages.encode_register(2, json_schema=ROBOT_SCHEMA))),
        ("vec_register_regex_3", "REGISTER seq 3: id 3, REGEX MOVE_REGEX", _frame(REGISTER, 3, messages.encode_register(3, regex=MOVE_REGEX))),
        ("vec_register_grammar_4", "REGISTER seq 4: id 255, GRAMMAR MOVE_GRAMMAR",
         _frame(REGISTER, 4, messages.encode_register(255, grammar=MOVE_GRAMMAR))),
        ("vec_unregister_all_5", "UNREGISTER seq 5, empty: every constraint", _frame(UNREGISTER, 5, messages.encode_unregister())),
        ("vec_unregister_2_6", "UNREGISTER seq 6 of id 2", _frame(UNREGISTER, 6, messages.encode_unregister(2))),
        ("vec_generate_constrained_2", "GENERATE seq 2, 'Obstacle ahead. Action:', max_tokens 8, temperature 0, constraint 1",
         _frame(GENERATE, 2, messages.encode_generate("Obstacle ahead. Action:", max_tokens=8, temperature=0.0, constraint=1))),
        # Responses: the C receiver must decode these.
        ("vec_pong_1", "PONG seq 1", _frame(PONG, 1)),
        ("vec_stream_1", "TOKEN 'Hello', TOKEN ',', TOKEN ' world', DONE DONE_STATS; all seq 1", b"".join(tok) + done),
        (
            "vec_done_cancelled_1",
            "DONE seq 1: generated 1, stop_reason 'cancelled'",
            _frame(DONE, 1, messages.encode_done({"generated_tokens": 1, "stop_reason": "cancelled"})),
        ),
        ("vec_token_a_1", "TOKEN seq 1 'a'", _frame(TOKEN, 1, b"a")),
        ("vec_token_stale_9", "TOKEN seq 9 'stale' (a late reply to another request)", _frame(TOKEN, 9, b"stale")),
        (
            "vec_error_busy_1",
            "ERROR seq 1: BUSY 'busy: request 3 is streaming'",
            _frame(ERROR, 1, messages.encode_error(ErrorCode.BUSY, "busy: request 3 is streaming")),
        ),
        (
            "vec_error_bad_crc_0",
            "ERROR seq 0 (unattributed): BAD_CRC 'CRC-32 mismatch'",
            _frame(ERROR, 0, messages.encode_error(ErrorCode.BAD_CRC, "CRC-32 mismatch")),
        ),
        ("vec_info_reply_2", "INFO_REPLY seq 2 with INFO_FIELDS", _frame(INFO_REPLY, 2, messages.encode_info_reply(INFO_FIELDS))),
        (
            "vec_done_unknown_tag_1",
            "DONE seq 1: generated_tokens 7, then a field with unknown tag 0x7f, then stop_reason 'eos'",
            _frame(DONE, 1, bytes.fromhex("31 04 00 07 00 00 00 7f 02 00 aa bb 34 03 00") + b"eos"),
        ),
        (
            "vec_done_capped_1",
            "DONE seq 1: prompt 4, generated 125, stop_reason 'context', capped_max_tokens 125 (max_tokens 0xFFFFFFFF asked)",
            _frame(DONE, 1, messages.encode_done(CAPPED_STATS)),
        ),
        ("vec_ack_1", "ACK seq 1: constraint 1, constraints_held 1", _frame(ACK, 1, messages.encode_ack({"constraint": 1, "constraints_held": 1}))),
        ("vec_ack_all_5", "ACK seq 5 of dropping all: constraints_held 0", _frame(ACK, 5, messages.encode_ack({"constraints_held": 0}))),
        ("vec_done_constrained_2", "DONE seq 2: CONSTRAINED_STATS (finish_reason stop, constraint satisfied)",
         _frame(DONE, 2, messages.encode_done(CONSTRAINED_STATS))),
        ("vec_done_incomplete_2", "DONE seq 2: INCOMPLETE_STATS (finish_reason length, constraint incomplete)",
         _frame(DONE, 2, messages.encode_done(INCOMPLETE_STATS))),
        ("vec_token_forward_2", "TOKEN seq 2 'forward'", _frame(TOKEN, 2, b"forward")),
        ("vec_error_bad_constraint_1", "ERROR seq 1: BAD_CONSTRAINT \"constraint 1 (choices): choices lists 'left' twice\"",
         _frame(ERROR, 1, messages.encode_error(ErrorCode.BAD_CONSTRAINT, "constraint 1 (choices): choices lists 'left' twice"))),
        ("vec_error_unknown_constraint_2", "ERROR seq 2: UNKNOWN_CONSTRAINT",
         _frame(ERROR, 2, messages.encode_error(ErrorCode.UNKNOWN_CONSTRAINT, "constraint 1 is not registered on this line (held: none)"))),
        # Faults: each must be dropped with the right status, and what follows kept.
        ("vec_noise", "40 bytes of 0xff, no delimiter (fails COBS)", b"\xff" * 40),
        ("vec_token_flipped_1", "TOKEN seq 1 ' world' with bit 4 of body byte 7 flipped (bad CRC)", _flip_bit(tok[2], 7)),
        ("vec_done_truncated_1", "the DONE of vec_stream_1 with its last 5 body bytes cut (bad length)", _truncated(done, 5)),
        ("vec_pong_v1_1", "PONG seq 1 in protocol version 1 (a server of the old version)", _frame(PONG, 1, version=1)),
        ("vec_short", "a 3-byte chunk: COBS-valid but shorter than header + CRC", b"\x00" + cobs.encode(b"\x01\x83\x01") + b"\x00"),
        # Writes cut short (the server's write timeout): the next frame's leading 0x00 ends them.
        ("vec_pong_cut_1", "the first 6 bytes of PONG seq 1 (vec_pong_1), no closing delimiter", _frame(PONG, 1)[:6]),
        ("vec_token_cut_1", "the first 5 bytes of TOKEN seq 1 'a' (vec_token_a_1), no closing delimiter", _frame(TOKEN, 1, b"a")[:5]),
    ]


def _c_array(name: str, comment: str, data: bytes) -> str:
    rows = [", ".join(f"0x{b:02x}" for b in data[i : i + 12]) for i in range(0, len(data), 12)]
    body = ",\n    ".join(rows)
    return f"/* {comment} */\nstatic const uint8_t {name}[{len(data)}] = {{\n    {body}\n}};\n"


def render() -> str:
    parts = [
        f"/* Test vectors for the edge_sdk serial protocol, version {PROTOCOL_VERSION}.\n"
        " * Generated by gen_vectors.py from the Python reference (edge_sdk.serial); do not edit. */\n"
        "#ifndef EDGE_SERIAL_TEST_VECTORS_H\n#define EDGE_SERIAL_TEST_VECTORS_H\n\n#include <stdint.h>\n",
        f"/* CRC-32 (IEEE) check value: zlib.crc32(b'123456789') */\n#define VEC_CRC_CHECK 0x{zlib.crc32(b'123456789'):08x}u\n",
        f"/* f32 bytes of 0.7 as the Python encoder writes them */\n#define VEC_F32_0_7 0x{struct.unpack('<I', struct.pack('<f', 0.7))[0]:08x}u\n",
    ]
    parts += [_c_array(*v) for v in vectors()]
    parts.append("#endif\n")
    return "\n".join(parts)


def main() -> None:
    out = HERE / "test_vectors.h"
    out.write_text(render())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
