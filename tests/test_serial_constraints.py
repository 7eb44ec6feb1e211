"""Constraints registered on the serial line: a board declares its actions once and always gets a valid one.

Over real pseudo-terminals (as tests/test_serial_server.py), with the tiny random model of tests/tiny_models.py
on the numpy backend: at temperature 0 the answers are pinned to the exact text the Python API gives for the
same constraint; every bad registration gets its exact ERROR code before anything is generated, and the
server keeps serving. The last test sends a robot action schema to SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import jsonschema
import pytest
import serial

import edge_sdk
from edge_sdk.errors import BackendError
from edge_sdk.serial import RemoteError, SerialClient, SerialServer, messages
from edge_sdk.serial.protocol import ACK, CHAT, DONE, ERROR, GENERATE, PONG, REGISTER, TOKEN, UNREGISTER, ErrorCode, Frame, FrameReader, encode_frame, split_message
from test_serial_server import STATS, FakeModel, RawLine, open_pty, ping, wait_for

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="needs POSIX pseudo-terminals (/dev/ptmx)")
pytest.importorskip("llguidance", reason="constrained generation needs llguidance (a dependency on x86-64/aarch64)")

ACTIONS = ["forward", "back", "left", "right", "stop"]
ROBOT = {"type": "object", "properties": {
    "action": {"enum": ACTIONS},
    "speed": {"type": "integer", "minimum": 0, "maximum": 100}},
    "required": ["action", "speed"], "additionalProperties": False}
MOVE_GRAMMAR = 'start: "move " DIR " " NUM\nDIR: "left" | "right"\nNUM: /[0-9]{1,3}/'
MOVE_REGEX = r"(LEFT|RIGHT) [1-9][0-9]?"


@pytest.fixture(scope="module")
def tiny(tiny_gguf):
    with edge_sdk.load(tiny_gguf, backend="numpy", ctx=128, kv_dtype="f32") as m:
        yield m


@pytest.fixture
def serve():
    """serve(model, **kw) -> (server, slave path); stopped at the end of the test."""
    started: list[tuple[SerialServer, serial.Serial]] = []

    def start(model: Any, **kw: Any) -> tuple[SerialServer, str]:
        master, path = open_pty()
        srv = SerialServer(model, master, **kw).start()
        started.append((srv, master))
        return srv, path

    yield start
    for srv, master in started:
        gate = getattr(srv.model, "gate", None)
        if gate is not None:
            gate.release(1000)
        srv.stop()
        master.close()


def register(seq: int, cid: int, **constraint: Any) -> bytes:
    return split_message(REGISTER, seq, messages.encode_register(cid, **constraint))


def generate(seq: int, prompt: str, **options: Any) -> bytes:
    return encode_frame(Frame(GENERATE, seq, messages.encode_generate(prompt, **options)))


def ack(seq: int, cid: int | None, held: int) -> Frame:
    return Frame(ACK, seq, messages.encode_ack({"constraint": cid, "constraints_held": held}))


def seq_of(wire: bytes) -> int:
    """The seq of the (first) frame in `wire`."""
    return FrameReader().feed(wire)[0].seq


def error_of(frame: Frame) -> tuple[int, int, str]:
    assert frame.type == ERROR, frame
    code, text = messages.decode_error(frame.payload)
    return frame.seq, code, text


def stream_of(line: RawLine, seq: int) -> tuple[str, dict[str, Any]]:
    """The text and DONE statistics of request `seq`, read off the line."""
    text = ""
    while True:
        (f,) = line.frames(1, timeout=20)
        assert f.seq == seq and f.type in (TOKEN, DONE), f
        if f.type == DONE:
            return text, messages.decode_done(f.payload)
        text += f.payload.decode()


# ------------------------------------------------------------------ service


def test_registered_constraints_give_the_pinned_answers(serve, tiny) -> None:
    """Each kind, registered once and named by id: at temperature 0 the exact text the Python API gives for
    the same constraint, and DONE says the constraint was completed."""
    direct = {
        "choices": tiny.generate("Obstacle ahead. Action:", choices=ACTIONS, temperature=0),
        "schema": tiny.generate("The cat", response_format={"type": "json_schema", "json_schema": {
            "name": "robot", "schema": ROBOT}}, temperature=0, max_tokens=40),
        "regex": tiny.generate("Obstacle ahead. Action:", regex=MOVE_REGEX, temperature=0),
        "grammar": tiny.generate("Obstacle ahead. Action:", grammar=MOVE_GRAMMAR, temperature=0),
        "chat": tiny.chat([{"role": "user", "content": "Go"}], choices=ACTIONS, temperature=0),
    }
    assert direct == {"choices": "forward", "schema": '{"action":"back","speed":36}', "regex": "RIGHT 19",
                      "grammar": "move left 191", "chat": "right"}
    srv, path = serve(tiny)
    with SerialClient(path, timeout=20) as client:
        info = client.info()
        assert (info["protocol_version"], info["max_constraints"], info["max_constraint_size"]) == (2, 16, 4096)
        assert client.register_choices(1, ACTIONS) == {"constraint": 1, "constraints_held": 1}
        assert client.register_schema(2, ROBOT) == {"constraint": 2, "constraints_held": 2}
        assert client.register_regex(3, MOVE_REGEX) == {"constraint": 3, "constraints_held": 3}
        assert client.register_grammar(4, MOVE_GRAMMAR) == {"constraint": 4, "constraints_held": 4}

        assert client.generate("Obstacle ahead. Action:", constraint=1, temperature=0) == "forward"
        s = client.last_stats
        assert (s["stop_reason"], s["finish_reason"], s["constraint"], s["generated_tokens"]) == ("eos", "stop", "satisfied", 6)
        out = client.generate("The cat", constraint=2, temperature=0, max_tokens=40)
        assert out == '{"action":"back","speed":36}' and client.last_stats["finish_reason"] == "stop"
        jsonschema.validate(json.loads(out), ROBOT)
        assert client.generate("Obstacle ahead. Action:", constraint=3, temperature=0) == "RIGHT 19"
        assert client.generate("Obstacle ahead. Action:", constraint=4, temperature=0) == "move left 191"
        assert client.chat([{"role": "user", "content": "Go"}], constraint=1, temperature=0) == "right"
        assert client.last_stats["finish_reason"] == "stop"
        # Sampled, the answer is still one of the choices.
        for seed in range(1, 6):
            assert client.generate("The cat", constraint=1, temperature=1.5, seed=seed) in ACTIONS
            assert (client.last_stats["finish_reason"], client.last_stats["constraint"]) == ("stop", "satisfied")
        # Cut short by max_tokens: the text is not an answer, and DONE says so.
        assert client.generate("The cat", constraint=2, temperature=0, max_tokens=5) == '{"act'
        s = client.last_stats
        assert (s["stop_reason"], s["finish_reason"], s["constraint"], s["generated_tokens"]) == ("length", "length", "incomplete", 5)
        # Without a constraint DONE has no constraint field; finish_reason is the text's end.
        client.generate("The cat", temperature=0, max_tokens=3)
        assert (client.last_stats["finish_reason"], "constraint" in client.last_stats) == ("length", False)

        # An id registered again is replaced; an id dropped is unknown afterwards.
        assert client.register_choices(1, ["stop"]) == {"constraint": 1, "constraints_held": 4}
        assert client.generate("Obstacle ahead. Action:", constraint=1, temperature=0) == "stop"
        assert client.unregister(3) == {"constraint": 3, "constraints_held": 3}
        with pytest.raises(RemoteError) as e:
            client.generate("x", constraint=3)
        assert (e.value.code, e.value.message) == (ErrorCode.UNKNOWN_CONSTRAINT,
                                                   "constraint 3 is not registered on this line (held: ids 1, 2, 4)")
        assert client.unregister() == {"constraints_held": 0}
    assert srv.stats["registered"] == 5 and srv.stats["requests"] == 13


def _raw_register(seq: int, payload: bytes) -> bytes:
    return encode_frame(Frame(REGISTER, seq, payload))


CID_2 = bytes.fromhex("18 04 00 02 00 00 00")  # constraint id 2, which the test holds

# (what, request bytes, code, message as a regex): each is answered with exactly this ERROR. The line holds
# ids 2 and 3, the most it may (max_constraints=2): a bad REGISTER of id 2 is refused for its own fault.
BAD_REQUESTS: list[tuple[str, bytes, ErrorCode, str]] = [
    ("schema that is not JSON", register(10, 2, json_schema='{"type": "object",'), ErrorCode.BAD_CONSTRAINT,
     r"constraint 2 \(json_schema\): not JSON: Expecting property name enclosed in double quotes: line 1 column 19 \(char 18\)"),
    ("JSON that is not a schema", register(11, 2, json_schema="[1, 2]"), ErrorCode.BAD_CONSTRAINT,
     r"constraint 2 \(json_schema\): the schema must be a JSON Schema object, got list"),
    ("schema with a wrong type name", register(12, 2, json_schema={"type": "intger"}), ErrorCode.BAD_CONSTRAINT,
     r"constraint 2 \(json_schema\): the schema\.type: not a valid JSON Schema: .*"),
    ("schema keyword the engine does not implement",
     register(13, 2, json_schema={"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
     ErrorCode.BAD_CONSTRAINT, r"constraint 2 \(json_schema\): the schema: the constraint cannot be compiled: .*uniqueItems.*"),
    ("schema nothing satisfies", register(14, 2, json_schema={"type": "integer", "minimum": 5, "maximum": 1}),
     ErrorCode.BAD_CONSTRAINT, r"constraint 2 \(json_schema\): the schema: the constraint cannot be compiled: .*[Uu]nsatisfiable.*"),
    ("a choice listed twice", register(15, 2, choices=["left", "right", "left"]), ErrorCode.BAD_CONSTRAINT,
     r"constraint 2 \(choices\): choices lists 'left' twice"),
    ("an empty choice", register(16, 2, choices=["left", ""]), ErrorCode.BAD_CONSTRAINT,
     r"constraint 2 \(choices\): choices must be non-empty strings, got ''"),
    ("a regex that matches nothing", register(17, 2, regex=r"[^\s\S]"), ErrorCode.BAD_CONSTRAINT,
     r"constraint 2 \(regex\): regex: the constraint admits no text \(nothing can match it\)"),
    ("a regex that does not parse", register(18, 2, regex="("), ErrorCode.BAD_CONSTRAINT,
     r"constraint 2 \(regex\): regex: the constraint cannot be compiled: .*invalid regex \"\(\".*unclosed group.*"),
    ("an empty regex", register(19, 2, regex=""), ErrorCode.BAD_CONSTRAINT,
     r"constraint 2 \(regex\): regex must be a non-empty string, got ''"),
    ("a grammar that does not parse", register(20, 2, grammar="start: ("), ErrorCode.BAD_CONSTRAINT,
     r"constraint 2 \(grammar\): grammar: the constraint cannot be compiled: .+"),
    ("an empty choice list (no constraint field at all)", _raw_register(21, CID_2), ErrorCode.BAD_PAYLOAD,
     r"REGISTER of constraint 2 gives no constraint: one of json_schema \(0x40\), choice \(0x41, repeated\), "
     r"regex \(0x42\) or grammar \(0x43\)"),
    ("two kinds under one id", _raw_register(22, CID_2 + bytes.fromhex("41 01 00 61 42 01 00 61")), ErrorCode.BAD_PAYLOAD,
     r"REGISTER gives choices \(0x41\) and regex \(0x42\): register one constraint per id"),
    ("id 0", _raw_register(23, bytes.fromhex("18 04 00 00 00 00 00 41 01 00 61")), ErrorCode.BAD_PAYLOAD,
     r"constraint id 0 is outside 1\.\.255"),
    ("id 256", _raw_register(24, bytes.fromhex("18 04 00 00 01 00 00 41 01 00 61")), ErrorCode.BAD_PAYLOAD,
     r"constraint id 256 is outside 1\.\.255"),
    ("no id", _raw_register(25, bytes.fromhex("41 01 00 61")), ErrorCode.BAD_PAYLOAD,
     r"REGISTER has no constraint field \(0x18\): the id to register under"),
    ("an unknown tag", _raw_register(26, CID_2 + bytes.fromhex("7f 00 00")), ErrorCode.BAD_PAYLOAD, r"unknown field tag 0x7f"),
    ("a regex over the size limit", register(27, 2, regex="a" * 65), ErrorCode.CONSTRAINT_LIMIT,
     r"constraint 2 \(regex\) is 65 bytes; this server takes at most 64 bytes per constraint"),
    ("GENERATE naming an id never registered", generate(28, "Go", constraint=9), ErrorCode.UNKNOWN_CONSTRAINT,
     r"constraint 9 is not registered on this line \(held: ids 2, 3\)"),
    ("CHAT naming an id never registered",
     encode_frame(Frame(CHAT, 29, messages.encode_chat([{"role": "user", "content": "Go"}], constraint=200))),
     ErrorCode.UNKNOWN_CONSTRAINT, r"constraint 200 is not registered on this line \(held: ids 2, 3\)"),
    ("UNREGISTER of an id never registered", encode_frame(Frame(UNREGISTER, 30, messages.encode_unregister(7))),
     ErrorCode.UNKNOWN_CONSTRAINT, r"constraint 7 is not registered on this line \(held: ids 2, 3\)"),
    ("a third id where two are the most", register(31, 4, choices=["x"]), ErrorCode.CONSTRAINT_LIMIT,
     r"this line holds 2 constraints \(ids 2, 3\), the most this server takes; unregister one or reuse an id"),
]


def test_bad_input_gets_the_exact_error_code_and_service_continues(serve, tiny) -> None:
    srv, path = serve(tiny, max_constraints=2, max_constraint_size=64)
    line = RawLine(path)
    line.send(register(1, 2, choices=["left", "right"]) + register(2, 3, regex="[0-9]{2}"))
    assert line.frames(2) == [ack(1, 2, 1), ack(2, 3, 2)]
    for i, (what, request, code, message) in enumerate(BAD_REQUESTS):
        line.send(request + ping(100 + i))
        reply, pong = line.frames(2, timeout=10)
        seq, got_code, text = error_of(reply)
        assert (seq, got_code) == (seq_of(request), code), what
        assert re.fullmatch(message, text, re.S), (what, text)
        assert pong == Frame(PONG, 100 + i), what
    assert srv.stats["requests"] == 0  # nothing was generated
    # A REGISTER that fails leaves the id as it was; replacing a held id is not a new one.
    line.send(register(40, 2, choices=["go", "go"]) + register(41, 3, choices=["stop"]))
    assert error_of(line.frames(1)[0])[:2] == (40, ErrorCode.BAD_CONSTRAINT)
    assert line.frames(1) == [ack(41, 3, 2)]
    line.send(generate(42, "Obstacle ahead. Action:", constraint=2, temperature=0))
    assert stream_of(line, 42)[0] in ("left", "right")
    line.send(generate(43, "Obstacle ahead. Action:", constraint=3, temperature=0))
    assert stream_of(line, 43)[0] == "stop"
    assert srv.stats["registered"] == 3
    line.close()


def test_garbage_between_frames_is_reported_and_the_requests_around_it_served(serve, tiny) -> None:
    """Noise before a REGISTER, between the two fragments of a long one, and before a GENERATE: each piece
    of noise is an ERROR with seq 0, and every request is answered as if it had come alone."""
    srv, path = serve(tiny)
    line = RawLine(path)
    noise = b"\xff" * 40
    line.send(noise + register(1, 1, choices=ACTIONS))
    assert error_of(line.frames(1)[0]) == (0, ErrorCode.BAD_FRAME, "COBS: group at offset 0 needs 254 bytes, only 39 left")
    assert line.frames(1) == [ack(1, 1, 1)]
    # A REGISTER of 1,411 bytes travels as two fragments; noise between them does not break it.
    colors = [f"colour-{i:03d}" for i in range(100)]
    big = {"type": "object", "properties": {"paint": {"enum": colors}}, "required": ["paint"], "additionalProperties": False}
    first, second = (encode_frame(f) for f in FrameReader().feed(register(2, 2, json_schema=big)))
    assert len(messages.encode_register(2, json_schema=big)) == 1411 and first[3] == REGISTER | 0x40
    line.send(first + noise + second)
    assert error_of(line.frames(1)[0])[:2] == (0, ErrorCode.BAD_FRAME)
    assert line.frames(1) == [ack(2, 2, 2)]
    line.send(b"\x13\x37" + generate(3, "The cat", constraint=2, temperature=0, max_tokens=40))
    assert error_of(line.frames(1)[0])[:2] == (0, ErrorCode.BAD_FRAME)
    text, done = stream_of(line, 3)
    assert json.loads(text)["paint"] in colors and done["finish_reason"] == "stop"
    assert text == tiny.generate("The cat", temperature=0, max_tokens=40, response_format={
        "type": "json_schema", "json_schema": {"name": "paint", "schema": big}})
    # Noise and a PING that arrive while the stream runs are answered between its tokens.
    line.send(generate(4, "Obstacle ahead. Action:", constraint=1, temperature=0) + noise + ping(5))
    got: list[Frame] = []
    while not any(f.type == DONE for f in got) or Frame(PONG, 5) not in got:
        got += line.frames(1, timeout=20)
    assert b"".join(f.payload for f in got if f.type == TOKEN and f.seq == 4) == b"forward"
    others = [f for f in got if f.seq != 4]
    assert len(others) == 2 and error_of(others[0])[:2] == (0, ErrorCode.BAD_FRAME) and others[1] == Frame(PONG, 5)
    (last,) = [f for f in got if f.type == DONE]
    assert messages.decode_done(last.payload)["finish_reason"] == "stop"
    assert srv.stats["faults"] == 4
    line.close()


# ---------------------------------------------------------- fake models


class ConstrainedFake(FakeModel):
    """The fake model of the server tests, with a `compile_constraint` that records what it was given."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.compiled: list[dict[str, Any]] = []

    def compile_constraint(self, **constraint: Any) -> None:
        self.compiled.append(constraint)


def test_register_while_streaming_is_busy(serve) -> None:
    model = ConstrainedFake(gated=True)
    srv, path = serve(model)
    line = RawLine(path)
    line.send(generate(1, "one"))
    line.send(register(2, 1, choices=["a"]) + encode_frame(Frame(UNREGISTER, 3, b"")))
    wait_for(lambda: srv.stats["frames_in"] == 3)
    model.gate.release(1)
    got = line.frames(3)
    assert got[0] == Frame(TOKEN, 1, b"The")
    assert [error_of(f) for f in got[1:]] == [(2, ErrorCode.BUSY, "busy: request 1 is streaming"),
                                              (3, ErrorCode.BUSY, "busy: request 1 is streaming")]
    model.gate.release(100)
    assert stream_of(line, 1)[1]["finish_reason"] == "stop"
    line.send(register(4, 1, choices=["a"]))
    assert line.frames(1) == [ack(4, 1, 1)]
    assert model.compiled == [{"choices": ["a"]}]
    line.close()


def test_a_model_that_does_not_say_how_far_its_constraint_got_is_incomplete(serve) -> None:
    """The fake's stats have no "constraint": its DONE must not claim a valid answer."""
    model = ConstrainedFake()
    srv, path = serve(model)
    line = RawLine(path)
    line.send(register(1, 5, json_schema=ROBOT) + generate(2, "go", constraint=5, max_tokens=2))
    assert line.frames(4) == [ack(1, 5, 1), Frame(TOKEN, 2, b"The"), Frame(TOKEN, 2, b" quick"), Frame(DONE, 2, messages.encode_done(
        {"prompt_tokens": 1, "generated_tokens": 2, **STATS, "stop_reason": "length", "finish_reason": "length",
         "constraint": "incomplete"}))]
    schema_rf = {"type": "json_schema", "json_schema": {"name": "constraint_5", "schema": ROBOT, "strict": True}}
    assert model.compiled == [{"response_format": schema_rf}]
    assert model.calls[-1] == ("stream", "go", {"max_tokens": 2, "response_format": schema_rf})
    line.close()


def test_no_engine_or_no_constraints_is_unsupported(serve, tiny, monkeypatch) -> None:
    srv, path = serve(FakeModel())  # no compile_constraint at all
    line = RawLine(path)
    line.send(register(1, 1, choices=["a"]))
    assert error_of(line.frames(1)[0]) == (1, ErrorCode.UNSUPPORTED, "this server's model cannot apply constraints")
    line.close()
    from edge_sdk.generate import constraints

    def no_engine() -> None:
        raise BackendError(constraints.ENGINE_MISSING)

    monkeypatch.setattr(constraints, "_engine", no_engine)
    srv, path = serve(tiny)
    line = RawLine(path)
    line.send(register(1, 1, regex="[ab]") + ping(2))
    assert [*error_of(line.frames(1)[0]), *line.frames(1)] == [1, ErrorCode.UNSUPPORTED, constraints.ENGINE_MISSING, Frame(PONG, 2)]
    line.close()


def test_a_new_connection_starts_with_no_constraints(serve) -> None:
    """A peer that closes the line and one that opens it next: the second does not inherit the first's ids."""
    model = ConstrainedFake()
    srv, path = serve(model, retry_s=0.05)
    line = RawLine(path)
    line.send(register(1, 1, choices=["a"]))
    assert line.frames(1) == [ack(1, 1, 1)]
    line.close()
    wait_for(lambda: srv.stats["read_errors"] > 0)
    line = RawLine(path)
    line.send(generate(2, "go", constraint=1))
    assert error_of(line.frames(1)[0]) == (2, ErrorCode.UNKNOWN_CONSTRAINT, "constraint 1 is not registered on this line (held: none)")
    line.close()


# -------------------------------------------------------- the real model

RobotAction = {"type": "object", "properties": {
    "action": {"enum": ACTIONS},
    "cm": {"type": "integer", "minimum": 1, "maximum": 500}},
    "required": ["action", "cm"], "additionalProperties": False}


@pytest.mark.real_model
def test_a_robot_gets_a_valid_action_from_the_real_model(serve, real_gguf_path) -> None:
    with edge_sdk.load(real_gguf_path, ctx=1024) as model:
        srv, path = serve(model)
        with SerialClient(path, timeout=60) as client:
            assert client.register_schema(1, RobotAction) == {"constraint": 1, "constraints_held": 1}
            assert client.register_choices(2, ACTIONS) == {"constraint": 2, "constraints_held": 2}
            chat = [{"role": "system", "content": "You steer a robot. Answer with one JSON action."},
                    {"role": "user", "content": "There is a wall 30 cm ahead. Turn away from it."}]
            out = client.chat(chat, constraint=1, temperature=0, max_tokens=40)
            assert client.last_stats["finish_reason"] == "stop" and client.last_stats["constraint"] == "satisfied"
            jsonschema.validate(json.loads(out), RobotAction)
            assert out == model.chat(chat, temperature=0, max_tokens=40, response_format={
                "type": "json_schema", "json_schema": {"name": "robot", "schema": RobotAction}})
            word = client.chat([{"role": "user", "content": "The goal is straight ahead. Which way?"}], constraint=2,
                               temperature=0)
            assert word in ACTIONS and client.last_stats["finish_reason"] == "stop"
            # greedy on the default backend: the action is valid by construction; which one is the model's skill
            assert (out, word) == ('{"action":"left","cm":30}', "left")
