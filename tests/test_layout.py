"""The tree shows the pipeline: stage folders in order, imports only downward, no include cycles in C.

The layers, lowest first (a module may import from its own layer and those below, never above):

    errors, progress           what every stage shares
    model                      config, weights, RoPE, the float and int8 references, quantize, sizes, accuracy
    text                       tokenizer, chat template, streaming detokenizer
    importers                  GGUF and Hugging Face readers (weights and vocabularies), the model registry
    graphs                     split policy, graph records, weight layout
    export                     packages, conversion, ONNX and TFLite writers, signing, describe
    plan                       boards, host detection, arena planners, the device budget
    backends                   runtimes: native core, ONNX Runtime, LiteRT, numpy
    generate                   generator, sampling
    api, settings              load(), Model, and the checked settings of a load
    cli, serial, server, bench front ends (the command line, the serial and HTTP servers) and the benchmark tool

Imports under `if TYPE_CHECKING:` (type hints only) do not count. `edge_sdk/__init__.py`, `__main__.py` and the
one-release re-exports `tokenizer.py` and `sampling.py` stand outside the layers.
"""

from __future__ import annotations

import ast
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
PACKAGE = os.path.join(ROOT, "edge_sdk")
LAYERS = {
    "errors": 0, "progress": 0, "heap": 0,
    "model": 1,
    "text": 2,
    "importers": 3,
    "graphs": 4,
    "export": 5,
    "plan": 6,
    "backends": 7,
    "generate": 8,
    "api": 9, "settings": 9,
    "cli": 10, "serial": 10, "bench": 10, "server": 10,
}
OUTSIDE = {"__init__", "__main__", "tokenizer", "sampling"}  # entry points and one-release re-exports
MAX_LOOSE_MODULES = 10
STAGE_FOLDERS = ("importers", "text", "model", "graphs", "export", "plan", "backends", "generate", "cli")


def _modules() -> list[tuple[str, str]]:
    """(dotted name, path) of every module of the package."""
    out = []
    for d, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out.append((".".join(rel), path))
    return sorted(out)


def _layer(dotted: str) -> int | None:
    parts = dotted.split(".")
    if len(parts) < 2:
        return None
    return LAYERS.get(parts[1])


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(dotted: str, path: str) -> list[tuple[int, str]]:
    """(line, imported dotted name) of every edge_sdk import in the module, lazy ones included."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    skip = _type_checking_lines(tree)
    package = dotted if path.endswith("__init__.py") else dotted.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from . import x` names a module
                full = f"{target}.{alias.name}"
                out.append((node.lineno, full if _is_module(full) else target))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return [(line, t) for line, t in out if t == "edge_sdk" or t.startswith("edge_sdk.")]


_KNOWN = {m for m, _ in _modules()}


def _is_module(dotted: str) -> bool:
    return dotted in _KNOWN


def test_no_import_reaches_a_higher_layer():
    wrong = []
    for dotted, path in _modules():
        parts = dotted.split(".")
        if len(parts) == 2 and parts[1] in OUTSIDE or dotted == "edge_sdk":
            continue
        here = _layer(dotted)
        assert here is not None, f"{dotted} belongs to no layer: add its folder to LAYERS in this test"
        for line, target in _imports(dotted, path):
            there = _layer(target)
            if there is not None and there > here:
                wrong.append(f"{os.path.relpath(path, ROOT)}:{line} imports {target} (layer {there} > {here})")
    assert not wrong, "\n".join(wrong)


def test_stage_folders_say_what_they_take_and_hand_on():
    loose = sorted(f[:-3] for f in os.listdir(PACKAGE) if f.endswith(".py"))
    assert len(loose) <= MAX_LOOSE_MODULES, loose
    for stage in STAGE_FOLDERS:
        init = os.path.join(PACKAGE, stage, "__init__.py")
        assert os.path.isfile(init), stage
        doc = ast.get_docstring(ast.parse(open(init, encoding="utf-8").read()))
        assert doc and len(doc.split()) >= 25, f"edge_sdk/{stage}/__init__.py needs a paragraph saying what it does"


def test_the_library_never_imports_the_benchmarks():
    """`edge_sdk.bench` is a tool: only the `edge-sdk bench` command imports it."""
    users = []
    for dotted, path in _modules():
        if dotted.startswith("edge_sdk.bench") or dotted == "edge_sdk.cli.bench":
            continue
        users += [f"{dotted}:{line}" for line, t in _imports(dotted, path) if t.startswith("edge_sdk.bench")]
    assert not users, users


def _includes(path: str) -> list[str]:
    return re.findall(r'^\s*#\s*include\s+"([^"]+)"', open(path, encoding="utf-8").read(), re.M)


def test_native_sources_include_no_cycle():
    src = os.path.join(ROOT, "native", "src")
    include = os.path.join(ROOT, "native", "include")
    graph: dict[str, list[str]] = {}
    for d, _, files in os.walk(src):
        for f in files:
            if f.endswith((".c", ".h")):
                path = os.path.join(d, f)
                deps = []
                for name in _includes(path):
                    for base in (d, src, include):
                        cand = os.path.normpath(os.path.join(base, name))
                        if os.path.isfile(cand):
                            deps.append(cand)
                            break
                graph[os.path.normpath(path)] = deps
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep] if dep in stack else [node, dep]
                pytest.fail("include cycle: " + " -> ".join(os.path.relpath(p, ROOT) for p in cycle))
            if state.get(dep) is None:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in graph:
        if state.get(node) is None:
            visit(node, [node])
