"""Every output the README claims, checked against the default backend with the real model.

The README's Python example is run as written, with each `print(...)  # <literal>` line turned into a check
that the printed value equals the literal; the first shell command's answer is the one the README states
under it ("The first command answers `...`").
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.real_model

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def _readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def python_claims(block: str) -> tuple[str, int]:
    """A README Python block with its claims as checks, and the number of claims."""
    out, n = [], 0
    for line in block.splitlines():
        m = re.match(r"^(\s*)print\((.*)\)\s+# (.+)$", line)
        if m:
            indent, expr, claim = m.groups()
            ast.literal_eval(claim)  # a claim is a Python literal
            out.append(f"{indent}_check({expr}, {claim}, {line.strip()!r})")
            n += 1
        else:
            out.append(line)
    return "\n".join(out), n


BLOCKS = re.findall(r"```python\n(.*?)```", _readme(), re.S)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_the_python_examples_print_what_they_claim(real_gguf_path, block):
    from edge_sdk.backends.native import library as native_library

    assert native_library.available()[0], "the README's outputs are the native core's"
    code, n = python_claims(block)
    assert n >= 3
    seen = []

    def _check(value, claim, line):
        seen.append(line)
        assert value == claim, f"README claims {claim!r} for `{line}`, the default backend gives {value!r}"

    exec(compile(code, "README.md", "exec"), {"_check": _check})
    assert len(seen) == n


def test_every_python_block_is_checked():
    assert len(BLOCKS) >= 2  # the quick tour and structured output


def test_the_first_command_answers_what_the_readme_says():
    text = _readme()
    first = re.search(r"```sh\n(.*?)```", text, re.S).group(1).splitlines()[0]
    command = first.split("&&", 1)[1].strip()  # after `pip install .`
    assert command.startswith("edge-sdk run ")
    claim = re.search(r"The first command answers `([^`]+)`", text).group(1)
    args = [a.strip('"') for a in re.findall(r'"[^"]*"|\S+', command)][1:]
    r = subprocess.run([sys.executable, "-m", "edge_sdk", *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout == claim + "\n"
