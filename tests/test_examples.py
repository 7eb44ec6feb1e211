"""The examples (examples/robot.py, examples/kiosk.py) run against the tiny model.

They run as subprocesses exactly as a person would start them (`-m <tiny
gguf> --backend numpy`), and their pure parts (the action parser, the line
splitter, the history trimming) are checked on their own. The tiny model's
text is random bytes, so the robot's plain-chat path always falls back to
STOP; the constrained path (the SDK's regex constraint) always produces a valid action.

`tiny_gguf` has a 128-token context, too short for the robot's prompt (that
is one of the checked fallbacks); `tiny_gguf_512` is the same model with a
512-token context.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tiny_models import write_gguf

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
RUN_TIMEOUT_S = 120


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def robot():
    return load_example("robot")


@pytest.fixture(scope="module")
def kiosk():
    return load_example("kiosk")


@pytest.fixture(scope="module")
def tiny_gguf_512(tmp_path_factory, tiny_cfg, tiny_float_weights, tiny_vocab):
    path = tmp_path_factory.mktemp("tiny512") / "tiny512.gguf"
    return str(write_gguf(str(path), dataclasses.replace(tiny_cfg, max_ctx=512), tiny_float_weights, tiny_vocab))


def run_example(name: str, args: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args], input=stdin, capture_output=True,
                          timeout=RUN_TIMEOUT_S, cwd=ROOT)


COMMANDS = b"there is an obstacle ahead, the goal is to the left\n\xff\xfe\xfd noise\n\x00\x07\nthe goal is behind you\n"

# ------------------------------------------------------------------ the action parser

PARSE_TABLE = [
    ("FORWARD", "FORWARD"),
    ("FORWARD 20", "FORWARD 20"),
    ("left 90", "LEFT 90"),
    ("Right", "RIGHT"),
    ("  STOP.", "STOP"),
    ("BACK 5 cm", "BACK 5"),
    ("Action: RIGHT 45", "RIGHT 45"),
    ('"LEFT"', "LEFT"),
    ("LEFT, then FORWARD 20", "LEFT"),  # two actions: the first one counts
    ("FORWARD 10 LEFT 30", "FORWARD 10"),
    ("STOP\nFORWARD 20", "STOP"),  # only the first line counts
    ("FORWARD 999", "FORWARD 999"),
]

REJECT_TABLE = [
    ("", "no valid action in the reply ''"),
    ("I see a wall", "no valid action in the reply 'I see a wall'"),
    ("BACKWARD 20", "no valid action in the reply 'BACKWARD 20'"),
    ("STOPPED", "no valid action in the reply 'STOPPED'"),
    ("Go FORWARD", "no valid action in the reply 'Go FORWARD'"),
    ("\nLEFT", "no valid action in the reply '\\nLEFT'"),
    ("FORWARD 20cm", "malformed argument after FORWARD in the reply 'FORWARD 20cm'"),
    ("LEFT 1.5", "malformed argument after LEFT in the reply 'LEFT 1.5'"),
    ("FORWARD 0", "argument 0 of FORWARD is outside 1..999"),
    ("RIGHT 1000", "argument 1000 of RIGHT is outside 1..999"),
    ("\x8f\x00garbage", "no valid action in the reply '\\x8f\\x00garbage'"),
]


@pytest.mark.parametrize("reply,expected", PARSE_TABLE)
def test_parse_action_accepts(robot, reply, expected):
    action, reason = robot.parse_action(reply)
    assert (str(action), reason) == (expected, "")


@pytest.mark.parametrize("reply,reason", REJECT_TABLE)
def test_parse_action_rejects(robot, reply, reason):
    assert robot.parse_action(reply) == (None, reason)


@pytest.mark.parametrize("reply,cut", [("LEFT 9", True), ("BACK", True), ("FORWARD", True), ("LEFT 90 because", False),
                                       ("LEFT.", False), ("STOP\n", False), ("no action", False)])
def test_cut_at_action(robot, reply, cut):
    assert robot.cut_at_action(reply) is cut


class ScriptedModel:
    """Answers every chat with a fixed reply and stop reason."""

    def __init__(self, reply: str, stop_reason: str) -> None:
        self.reply, self.last_stats, self.calls = reply, {}, []
        self.stop_reason = stop_reason

    def chat(self, messages, **sampling):
        self.calls.append((messages, sampling))
        self.last_stats = {"stop_reason": self.stop_reason}
        return self.reply


CHAT_DECIDE_TABLE = [
    ("LEFT 90", "eos", "LEFT 90", ""),
    ("LEFT 90", "stop", "LEFT 90", ""),
    ("LEFT 90 because the", "length", "LEFT 90", ""),
    ("FORWARD 2", "length", "STOP", "the reply 'FORWARD 2' was cut by the 8-token limit right after the action"),
    ("BACK", "length", "STOP", "the reply 'BACK' was cut by the 8-token limit right after the action"),
    ("FORW", "timeout", "STOP", "the reply timed out after 2.5 s ('FORW' so far)"),
    ("I think", "eos", "STOP", "no valid action in the reply 'I think'"),
]


@pytest.mark.parametrize("reply,stop_reason,action,note", CHAT_DECIDE_TABLE)
def test_chat_decide(robot, reply, stop_reason, action, note):
    model = ScriptedModel(reply, stop_reason)
    got = robot.chat_decide(model, "the goal is to the left", max_tokens=8, timeout=2.5)
    assert (str(got[0]), got[1], got[2]) == (action, reply, note)
    (messages, sampling), = model.calls
    assert sampling == {"max_tokens": 8, "temperature": 0.0, "stop": ["\n"], "timeout": 2.5}
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert messages[-1]["content"] == "the goal is to the left"


def test_action_regex(robot):
    complete = ["FORWARD", "BACK 5", "LEFT 90", "RIGHT 360", "STOP", "STOP 999"]
    not_actions = ["", "FORW", "FORWARD ", "FORWARD 0", "LEFT 1000", "left", "FORWARDS", "BACK 20 "]
    assert [bool(re.fullmatch(robot.ACTION_REGEX, t)) for t in complete] == [True] * len(complete)
    assert [bool(re.fullmatch(robot.ACTION_REGEX, t)) for t in not_actions] == [False] * len(not_actions)
    # everything the constrained grammar completes, the parser accepts unchanged
    assert [str(robot.parse_action(t)[0]) for t in complete] == complete


def test_line_splitter_drops_long_lines(robot):
    s = robot.LineSplitter(limit=8)
    assert list(s.feed(b"go left\r\nsto")) == [b"go left"]
    assert list(s.feed(b"p\n" + b"x" * 20)) == [b"stop"]
    assert list(s.feed(b"yyy\nRIGHT\n")) == [b"RIGHT"]  # the 23-byte line is dropped whole


def test_command_text_skips_garbage(robot):
    assert robot.command_text(b"  turn left \r") == "turn left"
    assert robot.command_text(b"\xff\xfe noise") is None
    assert robot.command_text(b"a\x00b") is None
    assert robot.command_text(b"   ") is None


# ------------------------------------------------------------------ the robot, stdin


def robot_stdout(cmds: list[str], actions: list[str]) -> str:
    return "".join(f"command: {c}\naction: {a}\n" for c, a in zip(cmds, actions))


CMDS = ["there is an obstacle ahead, the goal is to the left", "the goal is behind you"]
SKIPS = ["robot: skipped a line that is not UTF-8 text (9 bytes)", "robot: skipped a line with control characters (2 bytes)"]


def test_robot_prompt_too_long_for_context_falls_back(tiny_gguf):
    r = run_example("robot", ["--stdin", "-m", tiny_gguf, "--backend", "numpy"], COMMANDS)
    assert r.returncode == 0, r.stderr.decode()
    note = "  (fallback: generation failed: the prompt has {} tokens but the context holds 128; " \
           "shorten the prompt or load the model with a larger ctx)"
    assert r.stdout.decode() == robot_stdout(CMDS, ["STOP" + note.format(394), "STOP" + note.format(378)])
    assert r.stderr.decode().splitlines() == ["robot: reading commands from stdin", *SKIPS, "robot: 2 commands handled"]


def test_robot_random_reply_falls_back_to_stop(tiny_gguf_512, robot):
    r = run_example("robot", ["--stdin", "-m", tiny_gguf_512, "--backend", "numpy"], COMMANDS)
    assert r.returncode == 0, r.stderr.decode()
    # greedy reply of the random tiny model, the same for both commands: six tokens of byte soup, then end of turn
    reply = "\ufffd\ufffdE'\ufffdJ"
    note = f"  (fallback: no valid action in the reply {reply!r})"
    assert r.stdout.decode() == robot_stdout(CMDS, ["STOP" + note] * 2)
    assert r.stderr.decode().splitlines() == ["robot: reading commands from stdin", *SKIPS, "robot: 2 commands handled"]

    import edge_sdk

    with edge_sdk.load(tiny_gguf_512, backend="numpy") as model:
        assert model.chat(robot.build_messages(CMDS[1]), max_tokens=8, stop=["\n"]) == reply
        assert (model.last_stats["generated_tokens"], model.last_stats["stop_reason"]) == (6, "eos")


def test_robot_time_limit_falls_back(tiny_gguf_512):
    r = run_example("robot", ["--stdin", "-m", tiny_gguf_512, "--backend", "numpy", "--seconds", "0"], COMMANDS)
    assert r.returncode == 0, r.stderr.decode()
    note = "  (fallback: the reply timed out after 0 s ('' so far))"
    assert r.stdout.decode() == robot_stdout(CMDS, ["STOP" + note] * 2)


def test_robot_constrained_decoding_gives_valid_actions(tiny_gguf_512, robot):
    r = run_example("robot", ["--stdin", "-m", tiny_gguf_512, "--backend", "numpy", "--constrained"],
                    COMMANDS + b"turn\n")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == robot_stdout(CMDS + ["turn"], ["BACK"] * 3)

    import edge_sdk

    with edge_sdk.load(tiny_gguf_512, backend="numpy") as model:
        # the tiny model's greedy pick: "B" sampled, then "ACK" is the only continuation (forced), then the end
        assert robot.constrained_decide(model, "the goal is behind you", 8, None) == (robot.Action("BACK"), "BACK", "")
        assert (model.last_stats["sampled_tokens"], model.last_stats["forced_tokens"]) == (1, 3)
        for sampling in ({"temperature": 1.5, "seed": s} for s in range(8)):  # whatever is sampled: an action
            reply = model.chat(robot.build_messages("turn"), max_tokens=8, regex=robot.ACTION_REGEX, **sampling)
            assert re.fullmatch(robot.ACTION_REGEX, reply) and robot.parse_action(reply)[0] is not None, reply
        # never act on a part of an action
        assert robot.constrained_decide(model, "turn", 8, 0.0) == (robot.STOP, "", "no complete action within 0 s")
        assert robot.constrained_decide(model, "turn", 1, None) == (
            robot.STOP, "B", "the reply 'B' did not end within 1 tokens")


class CountingLines(io.BytesIO):
    """stdin for the robot that counts the lines read from it."""

    read_so_far = 0

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        self.read_so_far += bool(line)
        return line


@pytest.mark.parametrize("mode", [["--constrained"], []], ids=["constrained", "chat"])
def test_robot_computes_the_shared_prompt_before_the_first_command(tiny_gguf_512, robot, monkeypatch, capsys, mode):
    """Every prompt starts with the same system rule and worked examples. The robot computes them before it
    reads a command, so the first command's prefill (inside its --seconds limit) is only its own tokens, as
    for every later command; on a busy machine the first command otherwise timed out into STOP."""
    import edge_sdk

    stdin = CountingLines(b"the goal is behind you\nturn\n")
    forwards: list[tuple[int, int, int]] = []  # (tokens, first position, lines read when the pass ran)
    real_load = edge_sdk.load

    def load(*args, **kwargs):
        model = real_load(*args, **kwargs)
        inner = model.backend.forward

        def forward(ids, pos, **kw):
            forwards.append((len(ids), pos, stdin.read_so_far))
            return inner(ids, pos, **kw)

        model.backend.forward = forward
        load.model = model
        return model

    monkeypatch.setattr(edge_sdk, "load", load)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
    assert robot.main(["--stdin", "-m", tiny_gguf_512, "--backend", "numpy", *mode]) == 0
    out = capsys.readouterr().out.splitlines()
    # the same actions as without the made-up command first (see the tests above)
    if mode:
        assert out == ["command: the goal is behind you", "action: BACK", "command: turn", "action: BACK"]
    else:
        reply = "\ufffd\ufffdE'\ufffdJ"  # the tiny model's greedy reply to this command
        assert out[:2] == ["command: the goal is behind you", f"action: STOP  (fallback: no valid action in the reply {reply!r})"]
        assert out[2] == "command: turn" and out[3].startswith("action: STOP  (fallback: ")

    tok = load.model.tokenizer
    ids = [tok.encode(load.model.chat_prompt(robot.build_messages(c)), special=True)
           for c in (robot.EXAMPLES[0][0], "the goal is behind you")]
    shared = next(i for i, (a, b) in enumerate(zip(*ids)) if a != b)
    assert (len(ids[0]), len(ids[1]), shared) == (397, 378, 352)  # the prompts part where the commands start
    before = [f for f in forwards if f[2] == 0]
    assert sum(n for n, pos, _ in before if pos < len(ids[0])) == len(ids[0])  # the whole made-up prompt, at start-up
    first = next(f for f in forwards if f[2] >= 1)
    assert first[:2] == (len(ids[1]) - shared, shared)  # the first command computes its own 26 tokens only


# ------------------------------------------------------------------ the robot, serial line


@pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="needs POSIX pseudo-terminals (/dev/ptmx)")
def test_robot_over_serial_pty(tiny_gguf_512, tmp_path):
    master, slave = os.openpty()
    path = os.ttyname(slave)
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "wb") as err:
        # The Ctrl-C below reaches the robot only if SIGINT is not ignored there. A child inherits an ignored
        # SIGINT (pytest run as a background job of a script, under nohup, by some CI runners), and Python
        # then installs no KeyboardInterrupt handler: the robot would never see it (no STOP, nothing read).
        proc = subprocess.Popen([sys.executable, str(EXAMPLES / "robot.py"), "--port", path, "--baud", "57600",
                                 "-m", tiny_gguf_512, "--backend", "numpy", "--constrained"],
                                stdout=subprocess.PIPE, stderr=err, cwd=ROOT, preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while b"listening on" not in err_path.read_bytes():
            assert proc.poll() is None, err_path.read_text()
            assert time.monotonic() < deadline, "the robot never opened the port"
            time.sleep(0.05)
        os.write(master, CMDS[0].encode() + b"\n" + b"\xff\xfe\xfd noise\n" + b"\x00\x07\n" + CMDS[1].encode() + b"\r\n")
        got = read_lines(master, 2)
        assert got == [b"BACK", b"BACK"]
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a last STOP, then a clean exit
        assert read_lines(master, 1) == [b"STOP"]
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0
    assert out.decode() == robot_stdout(CMDS, ["BACK", "BACK"]) + "action: STOP  (fallback: interrupted)\n"
    assert err_path.read_text().splitlines() == [
        f"robot: listening on {path} at 57600 baud", *SKIPS,
        "robot: interrupted; stopped"]


def default_sigint() -> None:
    """In the child before exec: SIGINT back to its default, whatever the test process inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def read_lines(fd: int, n: int, timeout: float = 60.0) -> list[bytes]:
    import select

    buf = b""
    deadline = time.monotonic() + timeout
    while buf.count(b"\n") < n and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            buf += os.read(fd, 256)
    lines = buf.split(b"\n")
    assert len(lines) > n, f"expected {n} lines, got {buf!r}"
    return lines[:n]


# ------------------------------------------------------------------ the kiosk


def test_trim_history_drops_oldest_turns(kiosk):
    count = lambda msgs: sum(len(m["content"].split()) for m in msgs)  # noqa: E731 - one token per word
    hist = [("q1 a b", "a1"), ("q2", "a2 c d e"), ("q3", "a3")]
    # no system prompt; the question is 2 tokens; the turns add 4, 5 and 2
    kw = dict(system="")
    assert kiosk.trim_history(hist, "new q", count, budget=100, max_turns=8, **kw) == hist
    assert kiosk.trim_history(hist, "new q", count, budget=13, max_turns=8, **kw) == hist
    assert kiosk.trim_history(hist, "new q", count, budget=12, max_turns=8, **kw) == hist[1:]
    assert kiosk.trim_history(hist, "new q", count, budget=9, max_turns=8, **kw) == hist[1:]
    assert kiosk.trim_history(hist, "new q", count, budget=8, max_turns=8, **kw) == hist[2:]
    assert kiosk.trim_history(hist, "new q", count, budget=3, max_turns=8, **kw) == []
    assert kiosk.trim_history(hist, "new q", count, budget=1, max_turns=8, **kw) is None
    assert kiosk.trim_history(hist, "new q", count, budget=100, max_turns=1, **kw) == hist[2:]
    assert kiosk.trim_history(hist, "new q", count, budget=100, max_turns=0, **kw) == []
    # the default system prompt counts too: 9 words
    assert kiosk.trim_history(hist, "new q", count, budget=22, max_turns=8) == hist
    assert kiosk.trim_history(hist, "new q", count, budget=21, max_turns=8) == hist[1:]
    with pytest.raises(ValueError, match="max_turns must be >= 0"):
        kiosk.trim_history(hist, "q", count, budget=100, max_turns=-1)


QUESTIONS = b"What is a robot?\nName one.\n"
KIOSK_ARGS = ["--backend", "numpy", "--max-tokens", "16"]


def test_kiosk_answers_and_trims_to_context(tiny_gguf, kiosk):
    r = run_example("kiosk", ["-m", tiny_gguf, *KIOSK_ARGS], QUESTIONS)
    assert r.returncode == 0, r.stderr.decode()
    # the second prompt (system, turn 1, question 2) would exceed 128 - 16 tokens: turn 1 is dropped
    assert r.stderr.decode() == "kiosk: dropped the 1 oldest turn(s) to fit the context\n"

    import edge_sdk

    with edge_sdk.load(tiny_gguf, backend="numpy") as model:
        out = io.StringIO()
        k = kiosk.Kiosk(model, answer_seconds=30, max_rss_mb=None, history_turns=4, max_tokens=16, out=out)
        a1 = k.ask("What is a robot?")
        assert model.last_stats["generated_tokens"] == 16
        count = kiosk.prompt_tokens(model)
        assert count(kiosk.build_messages([("What is a robot?", a1)], "Name one.")) > 112
        assert count(kiosk.build_messages([], "Name one.")) <= 112
        k.ask("Name one.")
        assert k.history[0][0] == "Name one." and len(k.history) == 1
    assert r.stdout.decode() == out.getvalue()


def test_kiosk_takes_its_instructions_from_system(tiny_gguf, kiosk):
    """--system replaces the default persona (which answers any question) in every prompt."""
    import edge_sdk

    rule = "Answer only questions about the museum."
    with edge_sdk.load(tiny_gguf, backend="numpy") as model:
        expected = model.chat([{"role": "system", "content": rule}, {"role": "user", "content": "What is a robot?"}],
                              max_tokens=16)
    r = run_example("kiosk", ["-m", tiny_gguf, *KIOSK_ARGS, "--system", rule], b"What is a robot?\n")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == expected + "\n"
    assert kiosk.SYSTEM_PROMPT == "You are a helpful assistant. Answer briefly and politely."


@pytest.mark.real_model
def test_kiosk_default_persona_answers_general_questions(real_gguf_path):
    """The old museum persona made SmolLM2 refuse "What is the capital of France?"; the default one answers it."""
    r = run_example("kiosk", ["-m", real_gguf_path], b"What is the capital of France?\n")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == "The capital of France is Paris.\n"


def test_kiosk_time_limit(tiny_gguf):
    r = run_example("kiosk", ["-m", tiny_gguf, *KIOSK_ARGS, "--answer-seconds", "0"], QUESTIONS)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == "(I ran out of time: 0 s per answer.)\n" * 2


def test_kiosk_memory_guard_refuses(tiny_gguf):
    r = run_example("kiosk", ["-m", tiny_gguf, *KIOSK_ARGS, "--max-rss-mb", "1"], QUESTIONS)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 2
    for line in lines:
        m = re.fullmatch(r"Sorry, I am short of memory right now \((\d+) MB in use, limit 1 MB\)\. "
                         r"I have cleared our conversation; please ask again in a moment\.", line)
        assert m is not None, line
        assert int(m.group(1)) > 1


def test_kiosk_rejects_bad_options(tiny_gguf):
    r = run_example("kiosk", ["-m", tiny_gguf, "--backend", "numpy"], QUESTIONS)
    assert r.returncode == 2
    assert r.stderr.decode() == "kiosk: --max-tokens 128 leaves no room for a question in the 128-token context\n"
    r = run_example("kiosk", ["-m", tiny_gguf, "--max-rss-mb", "0"], b"")
    assert r.returncode == 2 and "--max-rss-mb must be > 0" in r.stderr.decode()


# ------------------------------------------------------------------ the soak benchmark (edge_sdk/bench/soak.py)


def test_soak_slope_is_least_squares():
    from edge_sdk.bench import soak
    S = soak.Sample
    assert soak.slope_per_1000([S(0, 0.0, 100, 0), S(1000, 1.0, 300, 0)]) == pytest.approx(200.0, abs=1e-9)
    # y = 1000 + 2x plus noise mirrored about the middle sample: the fit recovers 2 bytes per generation
    xs = range(0, 500, 100)
    samples = [S(x, 0.0, 1000 + 2 * x + d, 0) for x, d in zip(xs, (5, -5, 0, -5, 5))]
    assert soak.slope_per_1000(samples) == pytest.approx(2000.0, abs=1e-6)
    # noise (5, -5, 0, 5, -5): sum(dx * d) / sum(dx^2) = -1000 / 100000 bytes per generation
    samples = [S(x, 0.0, 1000 + 2 * x + d, 0) for x, d in zip(xs, (5, -5, 0, 5, -5))]
    assert soak.slope_per_1000(samples) == pytest.approx(1990.0, abs=1e-6)
    assert soak.slope_per_1000([S(0, 0.0, 5, 0)]) == 0.0


def test_soak_short_run_on_tiny_model(tiny_gguf, tmp_path):
    out = tmp_path / "soak.csv"
    r = subprocess.run([sys.executable, "-m", "edge_sdk.bench.soak", "-m", tiny_gguf, "--backend", "numpy",
                        "--iterations", "20", "--every", "5", "--warmup", "2", "--max-tokens", "4", "--csv", str(out)],
                       capture_output=True, timeout=RUN_TIMEOUT_S, cwd=ROOT)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert lines[1] == "kinds: abandon 2, cancel 2, chat 4, generate 10, timeout 2"
    assert re.fullmatch(r"RSS start [\d.]+ MiB, end [\d.]+ MiB \([+-]\d+ KiB\), max [\d.]+ MiB", lines[3])
    rows = out.read_text().splitlines()
    assert rows[0] == "iteration,elapsed_s,rss_bytes,generated_tokens"
    assert [int(row.split(",")[0]) for row in rows[1:]] == [0, 5, 10, 15, 20]


# ------------------------------------------------------------------ the robot on the real model

REAL_CMDS = ["there is an obstacle ahead, the goal is to the left", "the goal is slightly to the right",
             "the path ahead is blocked by a box"]


@pytest.mark.real_model
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["chat", "constrained"])
def test_robot_real_model_actions(real_gguf_path, mode):
    from edge_sdk.backends.native import library as native_library

    ok, why = native_library.available()
    if not ok:
        pytest.skip(f"the native core is needed for a real-model run in reasonable time: {why}")
    extra = ["--constrained"] if mode == "constrained" else []
    stdin = "".join(c + "\n" for c in REAL_CMDS).encode()
    # per-row weight scales (--group-size 0): the numbers below are pinned for that quantization
    r = run_example("robot", ["--stdin", "-m", real_gguf_path, "--backend", "native", "--group-size", "0",
                              "--seconds", "120", *extra], stdin)
    assert r.returncode == 0, r.stderr.decode()
    # greedy, with the worked examples in the prompt: well-formed actions (the model likes 100)
    assert r.stdout.decode() == robot_stdout(REAL_CMDS, ["LEFT 100", "RIGHT 100", "LEFT 100"])


# ------------------------------------------------------------------ the robot through tool calls


@pytest.fixture(scope="module")
def robot_tools():
    return load_example("robot_tools")


@pytest.fixture(scope="module")
def tiny_gguf_2048(tmp_path_factory, tiny_cfg, tiny_float_weights, tiny_vocab):
    """The tiny model with room for the tools' listing (its vocabulary spells it nearly a byte at a time)."""
    path = tmp_path_factory.mktemp("tiny2048") / "tiny2048.gguf"
    return str(write_gguf(str(path), dataclasses.replace(tiny_cfg, max_ctx=2048), tiny_float_weights, tiny_vocab))


def test_robot_tools_calls_are_always_valid(tiny_gguf_2048, robot_tools):
    import json

    import jsonschema

    cmds = b"drive forward\nturn around\nsay hi\n"
    # the tiny vocabulary spells a call nearly a byte at a time: room for 400 tokens (most of them forced)
    r = run_example("robot_tools", ["-m", tiny_gguf_2048, "--backend", "numpy", "--history-turns", "1",
                                    "--max-tokens", "400"], cmds)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert lines[0::2] == ["command: drive forward", "command: turn around", "command: say hi"]
    params = {t["function"]["name"]: t["function"]["parameters"] for t in robot_tools.TOOLS}
    for line in lines[1::2]:  # whatever the random model picks, a valid call
        name, args = re.fullmatch(r"call: (\w+) (\{.*\})", line).groups()
        jsonschema.validate(json.loads(args), params[name])
    assert r.stderr.decode().endswith("robot_tools: 3 commands handled\n")


def test_robot_tools_falls_back_to_stop(tiny_gguf_2048, robot_tools):
    r = run_example("robot_tools", ["-m", tiny_gguf_2048, "--backend", "numpy", "--seconds", "0"], b"drive\n")
    assert r.stdout.decode() == "command: drive\ncall: stop {}  (fallback: no complete call within 0 s)\n"
    r = run_example("robot_tools", ["-m", tiny_gguf_2048, "--backend", "numpy", "--max-tokens", "3"], b"drive\n")
    assert r.stdout.decode() == "command: drive\ncall: stop {}  (fallback: the call did not end within 3 tokens)\n"


@pytest.mark.real_model
def test_robot_tools_on_the_real_model(real_gguf_path):
    r = run_example("robot_tools", ["-m", real_gguf_path],
                    b"drive forward 30 centimetres\nturn around\nstop now\n")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().splitlines() == [
        "command: drive forward 30 centimetres", 'call: move {"direction":"forward","cm":100}',
        "command: turn around", 'call: turn {"direction":"right","degrees":180}',
        "command: stop now", "call: stop {}"]
