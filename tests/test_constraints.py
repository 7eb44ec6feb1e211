"""Constrained generation on the tiny model: outputs that always match, masks no sampler can get past,
forced tokens fed as one chunk, every backend alike, and bad constraints refused before any token."""

from __future__ import annotations

import json
import re
import threading

import jsonschema
import numpy as np
import pytest

import edge_sdk
from edge_sdk.errors import InvalidArgumentError
from edge_sdk.generate.constraints import ConstraintState, constraint_from_args
from edge_sdk.generate.sampling import Sampler, SamplingParams

pytest.importorskip("llguidance", reason="constrained generation needs llguidance (a dependency on x86-64/aarch64)")

ROBOT = {"type": "object", "properties": {
    "action": {"enum": ["forward", "back", "left", "right", "stop"]},
    "speed": {"type": "integer", "minimum": 0, "maximum": 100},
    "say": {"type": "string", "maxLength": 12}},
    "required": ["action", "speed"], "additionalProperties": False}
ROBOT_FORMAT = {"type": "json_schema", "json_schema": {"name": "robot", "schema": ROBOT, "strict": True}}
# greedy on the tiny (random) model: the "say" string is its 12 characters at most, whatever they are
GREEDY_ROBOT = '{"action":"back","speed":36,"say":"\ubac7<# aR\u066b\u2315 m(\u0712"}'
SAMPLERS = [dict(temperature=0), dict(temperature=1.5, seed=1), dict(temperature=2.0, top_k=5, seed=2),
            dict(temperature=1.0, top_p=0.5, min_p=0.1, seed=3), dict(temperature=1.3, repetition_penalty=1.8, seed=4)]


@pytest.fixture(scope="module")
def model(tiny_gguf):
    with edge_sdk.load(tiny_gguf, backend="numpy", ctx=128, kv_dtype="f32") as m:
        yield m


@pytest.fixture(scope="module")
def long_model(tmp_path_factory, tiny_vocab):
    """The tiny model with room for a prompt that lists tools (its vocabulary spells them a byte at a time)."""
    from tiny_models import tiny_config, tiny_weights, write_gguf

    cfg = tiny_config(len(tiny_vocab["tokens"]), max_ctx=2048)
    path = write_gguf(str(tmp_path_factory.mktemp("long") / "long.gguf"), cfg, tiny_weights(cfg, seed=0), tiny_vocab)
    with edge_sdk.load(path, backend="numpy", ctx=2048, kv_dtype="f32") as m:
        yield m


@pytest.mark.parametrize("sampling", SAMPLERS)
def test_choices_regex_and_schemas_always_match(model, sampling):
    got = model.generate("The cat", choices=["go left", "go right", "stop"], **sampling)
    assert got in ("go left", "go right", "stop") and model.last_stats["finish_reason"] == "stop"
    got = model.generate("The cat", regex=r"[0-9]{3}-[0-9]{4}", **sampling)
    assert re.fullmatch(r"[0-9]{3}-[0-9]{4}", got) and model.last_stats["finish_reason"] == "stop"
    got = model.generate("The cat", response_format=ROBOT_FORMAT, max_tokens=80, **sampling)
    assert model.last_stats["finish_reason"] == "stop" and model.last_stats["constraint"] == "satisfied"
    jsonschema.validate(json.loads(got), ROBOT)
    got = model.generate("The cat", response_format={"type": "json_object"}, max_tokens=80, **sampling)
    if model.last_stats["finish_reason"] == "stop":  # a random model may write a long object
        assert isinstance(json.loads(got), dict)


def test_greedy_tokens_and_counts_are_pinned(model):
    """Greedy under the robot schema: the keys, quotes and braces are forced; only the values are sampled."""
    got = model.generate("The cat", response_format=ROBOT_FORMAT, max_tokens=80)
    assert got == GREEDY_ROBOT and len(json.loads(got)["say"]) == 12
    s = model.last_stats
    assert (s["forced_tokens"], s["sampled_tokens"], s["generated_tokens"]) == (31, 20, 51)
    assert (s["stop_reason"], s["finish_reason"], s["constraint"]) == ("eos", "stop", "satisfied")


def test_a_masked_token_is_never_sampled():
    """Whatever the logits and sampler settings, the draw lands on an allowed id."""
    rng = np.random.default_rng(0)
    allowed = np.zeros(64, dtype=bool)
    allowed[[3, 17, 40]] = True

    class FakeState(ConstraintState):
        def __init__(self) -> None:
            pass

        def _compute(self) -> np.ndarray:
            return allowed

    state = FakeState()
    for i in range(300):
        logits = rng.normal(0, 5, 64).astype(np.float32)
        logits[allowed] -= 20  # the allowed tokens are the least likely
        kw = SAMPLERS[i % len(SAMPLERS)] | {"seed": i}
        tok = Sampler(SamplingParams(**kw)).sample(state.mask(logits), history=[3, 3, 17, 5])
        assert allowed[tok], (kw, tok)


class CountingBackend:
    """A backend wrapper that records how many tokens each forward call gets."""

    def __init__(self, backend) -> None:
        self._b, self.calls = backend, []
        self.name, self.config, self.ctx = backend.name, backend.config, backend.ctx

    def forward(self, tokens, pos, last_only=False):
        self.calls.append(len(np.asarray(tokens).reshape(-1)))
        return self._b.forward(tokens, pos, last_only)

    def close(self) -> None:
        self._b.close()


def test_forced_tokens_go_through_the_model_as_one_chunk(model):
    from edge_sdk.generate.generator import Generator

    counting = CountingBackend(model.backend)
    gen = Generator(counting, model.tokenizer, prefill_chunk=64)
    compiled = model._constraints.compile(constraint_from_args(response_format=ROBOT_FORMAT))
    prompt = model.tokenize("The cat")
    ids = list(gen.stream_tokens(prompt, SamplingParams(max_tokens=80), constraint=ConstraintState(compiled)))
    assert model.detokenize(ids) == GREEDY_ROBOT
    # the prompt, then '{"action":"' forced as one chunk, the sampled 'back', '","speed":' forced, ...; the
    # closing '}' is forced too, and the end needs no forward pass at all
    assert counting.calls[0] == len(prompt)
    assert max(counting.calls[1:]) > 1 and sum(counting.calls[1:]) == gen.stats.generated_tokens
    assert len(counting.calls) - 1 < gen.stats.generated_tokens  # fewer calls than tokens


def _backends() -> list[str]:
    import importlib.util

    from edge_sdk.backends.native.library import available

    have = ["numpy"] + (["native"] if available()[0] else [])
    have += ["onnx"] if importlib.util.find_spec("onnxruntime") else []
    have += ["tflite"] if importlib.util.find_spec("ai_edge_litert") else []
    return have


def test_every_backend_masks_alike(tiny_gguf, tmp_path, monkeypatch):
    """The mask is the generator's, the same for every backend: every output validates on each of them, and the
    greedy text is the same on those that compute the same logits (the native core is the numpy reference bit
    for bit, ONNX Runtime within 1e-5 here); LiteRT's XNNPACK rounding may part from them at a near tie."""
    monkeypatch.setenv("EDGE_SDK_CACHE", str(tmp_path / "cache"))
    greedy = {}
    for backend in _backends():
        with edge_sdk.load(tiny_gguf, backend=backend, ctx=128, kv_dtype="f32") as m:
            for sampling in SAMPLERS:
                got = m.generate("The cat", response_format=ROBOT_FORMAT, max_tokens=80, **sampling)
                assert m.last_stats["finish_reason"] == "stop", (backend, sampling)
                jsonschema.validate(json.loads(got), ROBOT)
                assert m.generate("The cat", choices=["yes", "no"], **sampling) in ("yes", "no")
                if sampling["temperature"] == 0:
                    greedy[backend] = got
    exact = {b: g for b, g in greedy.items() if b != "tflite"}
    assert set(exact.values()) == {GREEDY_ROBOT}, greedy


def test_incomplete_outputs_never_pass_as_valid(model):
    got = model.generate("The cat", response_format=ROBOT_FORMAT, max_tokens=5)
    s = model.last_stats
    assert (s["stop_reason"], s["finish_reason"], s["constraint"]) == ("length", "length", "incomplete")
    with pytest.raises(ValueError):
        json.loads(got)
    cancel = threading.Event()
    cancel.set()
    model.generate("The cat", regex="[a-z]{5}", cancel=cancel)
    assert model.last_stats["finish_reason"] == "cancelled" and model.last_stats["constraint"] == "incomplete"
    model.generate("The cat", regex="[a-z]{5}", timeout=0)
    assert model.last_stats["finish_reason"] == "timeout"


def test_compiled_constraints_are_cached(model):
    a = model.compile_constraint(response_format=ROBOT_FORMAT)
    engine = model._constraints
    first = engine.compile(a)
    assert engine.compile(constraint_from_args(response_format=ROBOT_FORMAT)) is first


@pytest.mark.parametrize("kw, message", [
    (dict(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "array", "uniqueItems": True}}}),
     r"response_format.json_schema.schema: the constraint cannot be compiled: .*uniqueItems"),
    (dict(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "intger"}}}),
     r"response_format.json_schema.schema.type: not a valid JSON Schema"),
    (dict(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "integer", "minimum": 5, "maximum": 1}}}),
     r"response_format.json_schema.schema: the constraint cannot be compiled: .*[Uu]nsatisfiable"),
    (dict(response_format={"type": "xml"}), r"response_format.type must be 'text', 'json_object' or 'json_schema'"),
    (dict(response_format={"type": "json_schema", "json_schema": {"schema": {}}}), r"json_schema.name must be"),
    (dict(choices=[]), r"choices is empty"),
    (dict(choices=["a", "b", "a"]), r"choices lists 'a' twice"),
    (dict(choices=["a", ""]), r"choices must be non-empty strings"),
    (dict(choices="ab"), r"choices must be a list of strings"),
    (dict(regex=r"[^\s\S]"), r"regex: the constraint admits no text"),
    (dict(regex="("), r"regex: the constraint cannot be compiled"),
    (dict(grammar="start: ("), r"grammar: the constraint cannot be compiled"),
    (dict(response_format={"type": "json_object"}, choices=["a"]), r"response_format and choices cannot be combined"),
    (dict(regex="a", grammar='start: "a"'), r"regex and grammar cannot be combined"),
])
def test_bad_constraints_are_refused_before_any_token(model, kw, message):
    model.last_stats = {"sentinel": True}
    with pytest.raises(InvalidArgumentError, match=message):
        model.generate("The cat", **kw)
    assert model.last_stats == {"sentinel": True}  # nothing ran


TOOLS = [
    {"type": "function", "function": {"name": "move", "description": "Drive", "parameters": {
        "type": "object", "properties": {"direction": {"enum": ["forward", "back"]},
                                         "cm": {"type": "integer", "minimum": 1, "maximum": 500}},
        "required": ["direction", "cm"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "say", "description": "Speak", "parameters": {
        "type": "object", "properties": {"text": {"type": "string", "maxLength": 10}}, "required": ["text"],
        "additionalProperties": False}}},
]


@pytest.mark.parametrize("sampling", SAMPLERS)
def test_required_tool_calls_validate(long_model, sampling):
    model = long_model
    msg = model.chat([{"role": "user", "content": "Drive forward."}], tools=TOOLS, tool_choice="required",
                     max_tokens=80, **sampling)
    assert msg["role"] == "assistant" and msg["content"] is None and len(msg["tool_calls"]) == 1
    call = msg["tool_calls"][0]
    assert call["type"] == "function" and re.fullmatch(r"call_[0-9a-f]{24}", call["id"])
    params = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}[call["function"]["name"]]
    jsonschema.validate(json.loads(call["function"]["arguments"]), params)
    assert model.last_stats["finish_reason"] == "tool_calls"


def test_named_tool_none_and_auto(long_model):
    model = long_model
    msg = model.chat([{"role": "user", "content": "Say hi."}], tools=TOOLS,
                     tool_choice={"type": "function", "function": {"name": "say"}}, max_tokens=80)
    assert msg["tool_calls"][0]["function"]["name"] == "say"
    msg = model.chat([{"role": "user", "content": "Say hi."}], tools=TOOLS, tool_choice="none", max_tokens=6)
    assert msg == {"role": "assistant", "content": msg["content"]} and isinstance(msg["content"], str)
    msg = model.chat([{"role": "user", "content": "Say hi."}], tools=TOOLS, max_tokens=80, temperature=1.0, seed=5)
    assert ("tool_calls" in msg) != (msg["content"] is not None)
    if msg["content"] is not None:
        assert "<" not in msg["content"]  # free text may not start a malformed call


def test_default_tool_prompt_and_history(model):
    """A template without a tools section gets the tools in a system message, and earlier calls as text."""
    history = [{"role": "user", "content": "Drive."},
               {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                   "name": "move", "arguments": '{"direction":"forward","cm":5}'}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "done"}]
    prompt = model.chat_prompt(history, tools=TOOLS)
    assert 'To call one, reply with only\n<tool_call>{"name": <the function\'s name>' in prompt
    assert '"name":"move","description":"Drive"' in prompt
    assert '<tool_call>{"name":"move","arguments":{"direction":"forward","cm":5}}</tool_call>' in prompt
    assert "<|im_start|>tool\ndone<|im_end|>" in prompt


@pytest.mark.parametrize("tools, choice, message", [
    (TOOLS + [TOOLS[0]], None, r"tools\[2\].function.name: two tools are named 'move'"),
    ([{"type": "function", "function": {"name": "x", "parameters": {"type": "object", "properties": 3}}}], None,
     r"tools\[0\].function.parameters.properties: not a valid JSON Schema"),
    ([{"type": "function", "function": {"name": "bad name"}}], None, r"tools\[0\].function.name must be"),
    ([{"type": "code"}], None, r"tools\[0\] must be"),
    ([], None, r"tools must be a non-empty list"),
    (TOOLS, {"type": "function", "function": {"name": "fly"}}, r"tool_choice.function.name 'fly' is not one of"),
    (TOOLS, "always", r"tool_choice must be one of auto, required, none"),
])
def test_bad_tools_are_refused(model, tools, choice, message):
    with pytest.raises(InvalidArgumentError, match=message):
        model.chat([{"role": "user", "content": "hi"}], tools=tools, tool_choice=choice)
    with pytest.raises(InvalidArgumentError, match=r"choices cannot be combined with tools"):
        model.chat([{"role": "user", "content": "hi"}], tools=TOOLS, choices=["a"])


def test_cli_constraints(tiny_gguf, tmp_path):
    from test_cli import cli

    schema = tmp_path / "robot.json"
    schema.write_text(json.dumps(ROBOT))
    base = ["run", "-m", tiny_gguf, "--backend", "numpy", "--raw", "--kv", "f32"]
    r = cli(*base, "--max-tokens", "80", "--json-schema", str(schema), "The cat")
    assert r.returncode == 0, r.stderr
    assert r.stdout == GREEDY_ROBOT + "\n"
    r = cli(*base, "--choice", "yes", "--choice", "no", "--temperature", "1.5", "--seed", "3", "The cat")
    assert r.returncode == 0 and r.stdout in ("yes\n", "no\n")
    r = cli(*base, "--regex", "[0-9]{4}", "The cat")
    assert r.returncode == 0 and re.fullmatch(r"[0-9]{4}\n", r.stdout)
    r = cli(*base, "--max-tokens", "4", "--json-schema", str(schema), "The cat")
    assert r.returncode == 1 and "before it matched the constraint; it is incomplete" in r.stderr
    schema.write_text('{"type": "array", "uniqueItems": true}')
    r = cli(*base, "--json-schema", str(schema), "The cat")
    assert r.returncode == 1 and "uniqueItems" in r.stderr and "Traceback" not in r.stderr
    r = cli(*base, "--json-schema", str(tmp_path / "missing.json"), "The cat")
    assert r.returncode == 1 and "--json-schema" in r.stderr and "cannot read" in r.stderr
    r = cli(*base, "--regex", "a", "--choice", "b", "The cat")
    assert r.returncode == 2 and "not allowed with argument" in r.stderr


def test_cli_chat_with_tools(long_model, tmp_path):
    from test_cli import cli

    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(TOOLS))
    path = long_model.name
    r = cli("chat", "-m", path, "--backend", "numpy", "--ctx", "2048", "--tools", str(tools), "--tool-choice",
            "required", "--max-tokens", "80", stdin="Drive.\ndone\n/exit\n")
    assert r.returncode == 0, r.stderr
    calls = [line for line in r.stdout.replace("> ", "\n").splitlines() if line.startswith("[tool call] ")]
    assert len(calls) == 2
    for line in calls:
        name, args = line[len("[tool call] "):].split(" ", 1)
        params = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}[name]
        jsonschema.validate(json.loads(args), params)
