"""Board profiles: load, validate, resolve `extends`, list.

A board profile is a JSON file `boards/<id>.json` describing what the SDK needs
to know about a board (CPU clusters, ISA features, RAM and the part of it left
to the SDK, memory and storage bandwidth, backends and wheels of the stock OS),
validated against `boards/schema.json`. A file may `extends` another id and
list only what differs (a RAM variant); objects merge key by key, lists are
replaced whole. Code never asks which board it is: behaviour comes from these
fields.

Example::

    board = load_board("raspberry-pi-5-8gb")
    board.ram_bytes, board.isa["dotprod"]      # (8589934592, True)

Which profile this machine is: `plan.host.detect_board`.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import BoardError

BOARDS_DIR_ENV = "EDGE_SDK_BOARDS_DIR"
"""Environment variable naming a directory of board files to use instead of the built-in one."""


def boards_dir() -> Path:
    """The directory holding `schema.json` and the `<id>.json` profiles."""
    env = os.environ.get(BOARDS_DIR_ENV)
    if env:
        return Path(env)
    package = Path(__file__).resolve().parents[1]  # edge_sdk/
    installed = package / "_boards"  # copied there by setup.py when installed
    if installed.is_dir():
        return installed
    return package.parent / "boards"  # the source tree


# ---------------------------------------------------------------------------
# The profile record
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """A group of identical cores."""

    core_type: str
    count: int
    max_clock_mhz: int
    cpu_part: str | None  # MIDR part as /proc/cpuinfo prints it ("0xd0b"), None on x86
    l1d_bytes: int  # per core
    l2_bytes: int  # per cluster when l2_shared, else per core
    l2_shared: bool


@dataclass(frozen=True)
class BoardProfile:
    """A resolved board profile (`extends` applied, schema checked).

    Example::

        b = load_board("raspberry-pi-4b-4gb")
        b.total_cores, b.big_cluster.core_type   # (4, "cortex-a72")
    """

    id: str
    name: str
    notes: str
    architecture: str
    soc: str
    clusters: tuple[Cluster, ...]
    isa: Mapping[str, bool]
    l3_bytes: int
    ram_bytes: int
    sdk_budget_bytes: int
    mem_bandwidth_gbps: float
    mem_bandwidth_threads: int
    mem_bandwidth_by_threads_gbps: Mapping[int, float]
    mem_bandwidth_source: str
    storage_read_mbps: float
    storage_read_source: str
    backends: tuple[str, ...]
    onnxruntime_providers: tuple[str, ...]
    data: Mapping[str, Any] = field(repr=False, compare=False)  # the whole resolved JSON

    @property
    def total_cores(self) -> int:
        return sum(c.count for c in self.clusters)

    @property
    def big_cluster(self) -> Cluster:
        """The cluster with the highest clock (first on ties): where inference threads go."""
        return max(self.clusters, key=lambda c: c.max_clock_mhz)

    def bandwidth_gbps(self, threads: int) -> float:
        """Read bandwidth for `threads` threads: the measurement with the most threads not above it."""
        table = dict(self.mem_bandwidth_by_threads_gbps) or {self.mem_bandwidth_threads: self.mem_bandwidth_gbps}
        usable = [n for n in table if n <= threads]
        return table[max(usable)] if usable else table[min(table)]

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.data))


def _profile_from_dict(d: Mapping[str, Any]) -> BoardProfile:
    cpu = d["cpu"]
    by_threads = {int(k): float(v) for k, v in d.get("mem_bandwidth_by_threads_gbps", {}).items()}
    return BoardProfile(
        id=d["id"],
        name=d["name"],
        notes=d["notes"],
        architecture=cpu["architecture"],
        soc=cpu["soc"],
        clusters=tuple(Cluster(**c) for c in cpu["clusters"]),
        isa=dict(d["isa"]),
        l3_bytes=int(d["l3_bytes"]),
        ram_bytes=int(d["ram_bytes"]),
        sdk_budget_bytes=int(d["sdk_budget_bytes"]),
        mem_bandwidth_gbps=float(d["mem_bandwidth_gbps"]),
        mem_bandwidth_threads=int(d["mem_bandwidth_threads"]),
        mem_bandwidth_by_threads_gbps=by_threads,
        mem_bandwidth_source=d["mem_bandwidth_source"],
        storage_read_mbps=float(d["storage_read_mbps"]),
        storage_read_source=d["storage_read_source"],
        backends=tuple(d["backends"]),
        onnxruntime_providers=tuple(d["onnxruntime_providers"]),
        data=copy.deepcopy(dict(d)),
    )


# ---------------------------------------------------------------------------
# Schema check (the `jsonschema` library; draft 2020-12, as boards/schema.json declares)
# ---------------------------------------------------------------------------


def schema_errors(value: Any, schema: Mapping[str, Any]) -> list[str]:
    """Every violation of `schema` by `value`, as "field.path: problem" strings, in a stable order.

    jsonschema counts NaN and Infinity as numbers; the loader refuses them while parsing (`_no_constant`).
    """
    import jsonschema

    def where(path: Any) -> str:
        return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")

    out = []
    for e in jsonschema.Draft202012Validator(schema).iter_errors(value):
        if e.validator == "additionalProperties" and isinstance(e.instance, dict):  # name each unknown field
            known = set(e.schema.get("properties", {}))
            out += [f"{where([*e.absolute_path, k])}: unknown field" for k in e.instance if k not in known]
        else:
            out.append(f"{where(e.absolute_path) or '(top level)'}: {e.message}")
    return sorted(out)


def _no_constant(name: str) -> Any:
    """Python's json reads NaN and Infinity, which JSON does not have: a profile may not use them."""
    raise ValueError(f"{name} is not a JSON number")


def load_schema() -> dict[str, Any]:
    path = boards_dir() / "schema.json"
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise BoardError(f"cannot read the board schema {path}: {e}") from e


def _consistency_errors(d: Mapping[str, Any]) -> list[str]:
    """Rules across fields that a JSON Schema cannot say."""
    errors = []
    if d["sdk_budget_bytes"] > d["ram_bytes"]:
        errors.append(f"sdk_budget_bytes: {d['sdk_budget_bytes']} is more than ram_bytes {d['ram_bytes']}")
    arch = d["cpu"]["architecture"]
    isa = d["isa"]
    arm_only = [k for k in ("neon", "dotprod", "i8mm", "sve") if isa[k]]
    x86_only = [k for k in ("avx2", "avx512_vnni") if isa[k]]
    if arch == "x86_64" and arm_only:
        errors.append(f"isa: {', '.join(arm_only)} are Arm features but cpu.architecture is x86_64")
    if arch == "aarch64" and x86_only:
        errors.append(f"isa: {', '.join(x86_only)} are x86 features but cpu.architecture is aarch64")
    if arch == "aarch64" and not isa["neon"]:
        errors.append("isa.neon: every aarch64 core has NEON (Advanced SIMD)")
    if (isa["dotprod"] or isa["i8mm"]) and not isa["neon"]:
        errors.append("isa: dotprod/i8mm need neon")
    wheel_of = {"onnx": "onnxruntime", "tflite": "ai_edge_litert"}  # backend -> the wheel its runtime needs
    for backend, wheel in wheel_of.items():
        if backend in d["backends"] and d["wheels"][wheel]["source"] == "none":
            errors.append(f"backends: {backend} is listed but wheels.{wheel}.source is 'none'")
    if "onnx" in d["backends"] and not d["onnxruntime_providers"]:
        errors.append("onnxruntime_providers: empty although onnx is a backend")
    if len(set(d["backends"])) != len(d["backends"]):
        errors.append("backends: listed twice")
    for key in d.get("mem_bandwidth_by_threads_gbps", {}):
        if not (key.isascii() and key.isdecimal()) or int(key) < 1:
            errors.append(f"mem_bandwidth_by_threads_gbps.{key}: keys are thread counts (1, 2, ...)")
    return errors


def validate_board_dict(d: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> None:
    """Raise BoardError naming every field of a resolved profile that breaks the schema.

    Example::

        validate_board_dict(json.load(open("boards/generic-x86_64.json")))
    """
    schema = schema if schema is not None else load_schema()
    errors = schema_errors(d, schema)
    if not errors:
        errors = _consistency_errors(d)
    if errors:
        name = d.get("id", "?") if isinstance(d, Mapping) else "?"
        raise BoardError(f"board profile {name!r} is invalid: " + "; ".join(errors))


# ---------------------------------------------------------------------------
# Loading: files, `extends`, listing
# ---------------------------------------------------------------------------


def list_boards() -> list[str]:
    """Ids of every board profile, sorted.

    Example::

        list_boards()[:2]   # ['generic-aarch64', 'generic-x86_64']
    """
    d = boards_dir()
    if not d.is_dir():
        raise BoardError(f"board directory {d} does not exist (set {BOARDS_DIR_ENV})")
    return sorted(p.stem for p in d.glob("*.json") if p.name != "schema.json")


def _read_raw(board_id: str) -> dict[str, Any]:
    path = boards_dir() / f"{board_id}.json"
    if not path.is_file():
        import difflib

        ids = list_boards()
        close = difflib.get_close_matches(str(board_id), ids, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise BoardError(f"unknown board {board_id!r}{hint} (known boards: {', '.join(ids)})")
    try:
        raw = json.loads(path.read_text(), parse_constant=_no_constant)
    except (OSError, ValueError) as e:
        raise BoardError(f"{path}: not readable JSON ({e})") from e
    if not isinstance(raw, dict):
        raise BoardError(f"{path}: top level must be an object")
    if raw.get("id") != board_id:
        raise BoardError(f"{path}: field id is {raw.get('id')!r}, must equal the file name {board_id!r}")
    return raw


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Objects merge key by key (recursively); anything else in `over` replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_board_dict(board_id: str) -> dict[str, Any]:
    """The profile's JSON with its `extends` chain applied (not yet validated)."""
    chain = [board_id]
    raw = _read_raw(board_id)
    layers = [raw]
    while "extends" in layers[-1]:
        parent = layers[-1]["extends"]
        if parent in chain:
            raise BoardError(f"board {board_id!r}: extends cycle {' -> '.join(chain + [parent])}")
        try:
            layers.append(_read_raw(parent))
        except BoardError as e:
            raise BoardError(f"board {chain[-1]!r} extends {parent!r}, which cannot be loaded: {e}") from e
        chain.append(parent)
    merged: dict[str, Any] = {}
    for layer in reversed(layers):
        merged = _merge(merged, layer)
    merged.pop("extends", None)
    merged["id"] = board_id
    return merged


def board_from_dict(d: Mapping[str, Any]) -> BoardProfile:
    """Validate a resolved profile dict (no `extends`) and build the record; for tools and tests.

    Example::

        d = resolve_board_dict("generic-aarch64"); d["sdk_budget_bytes"] = 256 << 20
        board_from_dict(d).sdk_budget_bytes   # 268435456
    """
    validate_board_dict(d)
    return _profile_from_dict(d)


def load_board(board_id: str) -> BoardProfile:
    """Load, resolve and validate one profile.

    Example::

        load_board("jetson-nano-4gb").backends   # ('native', 'tflite')
    """
    d = resolve_board_dict(board_id)
    validate_board_dict(d)
    return _profile_from_dict(d)
