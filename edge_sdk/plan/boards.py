"""Board profiles: load, validate, resolve `extends`, list, and detect the host.

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
    board, reason = detect_board()              # from /proc on this machine
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
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
# Schema check: the subset of JSON Schema that boards/schema.json uses
# ---------------------------------------------------------------------------

_JSON_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _JSON_TYPES[name])


def schema_errors(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: str = "") -> list[str]:
    """Every violation of `schema` by `value`, as "field.path: problem" strings.

    Supports type, enum, required, properties, additionalProperties, items,
    minItems, minLength, pattern, minimum, exclusiveMinimum and local $ref:
    what `boards/schema.json` uses.
    """
    where = path or "(top level)"
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise BoardError(f"schema: only local references are supported, got {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        return schema_errors(value, target, root, path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return [f"{where}: expected {' or '.join(types)}, got {type(value).__name__} {value!r:.60}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    errors: list[str] = []
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: shorter than {schema['minLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if _is_type(value, "number"):
        if not math.isfinite(value):
            errors.append(f"{where}: {value} is not a finite number")
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} is below the minimum {schema['minimum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{where}: {value} must be greater than {schema['exclusiveMinimum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: needs at least {schema['minItems']} item(s)")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += schema_errors(item, schema["items"], root, f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path + '.' if path else ''}{name}: required field is missing")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            sub = f"{path}.{name}" if path else name
            if name in props:
                errors += schema_errors(item, props[name], root, sub)
            elif extra is False:
                errors.append(f"{sub}: unknown field")
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, root, sub)
    return errors


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
    errors = schema_errors(d, schema, schema)
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


# ---------------------------------------------------------------------------
# Detection from /proc
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HostFacts:
    """What detection reads from a (possibly recorded) /proc tree."""

    arch: str  # "aarch64", "armv7l", "x86_64" or "unknown"
    model: str  # device-tree model, else cpuinfo "Model", else ""
    cpu_parts: tuple[str, ...]  # one entry per logical CPU (Arm), empty on x86
    features: frozenset[str]  # cpuinfo Features (Arm) or flags (x86)
    n_cpus: int
    mhz: int  # x86 "cpu MHz" (0 when absent)
    mem_total_bytes: int
    mem_available_bytes: int
    model_name: str  # x86 "model name"


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return ""


def read_host_facts(root: str | os.PathLike = "/") -> HostFacts:
    """Parse `<root>/proc/cpuinfo`, `<root>/proc/meminfo` and `<root>/proc/device-tree/model`."""
    base = Path(root)
    cpuinfo = _read_text(base / "proc" / "cpuinfo")
    if not cpuinfo:
        raise BoardError(f"cannot read {base / 'proc' / 'cpuinfo'}; pass --board ID instead of detecting")
    model = _read_text(base / "proc" / "device-tree" / "model").replace("\x00", "").strip()
    fields: dict[str, list[str]] = {}
    board_model = ""  # the Raspberry Pi kernel's capitalised "Model" line (x86 has a numeric lower-case "model")
    for line in cpuinfo.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), []).append(value.strip())
            if key.strip() == "Model":
                board_model = value.strip()
    model = model or board_model
    parts = tuple(p.lower() for p in fields.get("cpu part", []))
    if "flags" in fields:
        arch = "x86_64" if "lm" in fields["flags"][0].split() else "unknown"
        features = frozenset(fields["flags"][0].split())
    elif "features" in fields:
        cpu_arch = (fields.get("cpu architecture") or ["8"])[0]
        arch = "aarch64" if cpu_arch == "8" else "armv7l"
        features = frozenset(fields["features"][0].split())
    else:
        arch, features = "unknown", frozenset()
    n_cpus = len(fields.get("processor", [])) or 1
    try:
        mhz = float((fields.get("cpu mhz") or ["0"])[0])
        mhz = int(mhz) if math.isfinite(mhz) and 0 < mhz < 100_000 else 0  # 0: unknown
    except ValueError:
        mhz = 0
    meminfo = _read_text(base / "proc" / "meminfo")

    def kib(name: str) -> int:
        m = re.search(rf"^{name}:\s+(\d+)\s*kB", meminfo, re.M)
        return int(m.group(1)) * 1024 if m else 0

    return HostFacts(
        arch=arch,
        model=model,
        cpu_parts=parts,
        features=features,
        n_cpus=n_cpus,
        mhz=mhz,
        mem_total_bytes=kib("MemTotal"),
        mem_available_bytes=kib("MemAvailable"),
        model_name=(fields.get("model name") or [""])[0],
    )


def isa_from_features(arch: str, features: frozenset[str]) -> dict[str, bool]:
    """ISA feature bits from cpuinfo (`asimd`/`asimddp`/... on Arm, `avx2`/`avx512_vnni` on x86)."""
    has = features.__contains__
    return {
        "neon": has("asimd") or has("neon"),
        "dotprod": has("asimddp"),
        "i8mm": has("i8mm"),
        "fp16_arith": has("asimdhp") or has("avx512_fp16"),
        "sve": has("sve"),
        "avx2": has("avx2"),
        "avx512_vnni": has("avx512_vnni"),
    }


def _pick_ram_variant(candidates: list[BoardProfile], mem_total: int) -> tuple[BoardProfile, str]:
    """The smallest variant whose ram_bytes holds MemTotal (MemTotal is always below the RAM size)."""
    ordered = sorted(candidates, key=lambda b: b.ram_bytes)
    gib = mem_total / (1 << 30)
    if not mem_total:
        return ordered[0], "no MemTotal in /proc/meminfo; took the smallest RAM variant"
    for b in ordered:
        if b.ram_bytes >= mem_total:
            return b, f"MemTotal {gib:.2f} GiB fits the {b.ram_bytes / (1 << 30):g} GiB variant"
    return ordered[-1], f"MemTotal {gib:.2f} GiB exceeds every variant; took the largest ({ordered[-1].ram_bytes / (1 << 30):g} GiB)"


def _fill_from_host(board: BoardProfile, facts: HostFacts) -> BoardProfile:
    """A fallback profile with the host's own cores, ISA bits, clock and RAM."""
    d = board.to_dict()
    cluster = dict(d["cpu"]["clusters"][0])
    cluster["count"] = facts.n_cpus
    if facts.mhz:
        cluster["max_clock_mhz"] = facts.mhz
    d["cpu"]["clusters"] = [cluster]
    if facts.model_name:
        d["cpu"]["soc"] = facts.model_name
    d["isa"] = isa_from_features(facts.arch, facts.features)
    if facts.mem_total_bytes:
        d["ram_bytes"] = facts.mem_total_bytes
        avail = facts.mem_available_bytes or facts.mem_total_bytes
        d["sdk_budget_bytes"] = min(int(avail * 0.9), facts.mem_total_bytes)
        d["notes"] = (
            "Filled from this host: sdk_budget_bytes = 90% of MemAvailable at detection time. " + d["notes"]
        )
    validate_board_dict(d)
    return _profile_from_dict(d)


def detect_board(root: str | os.PathLike = "/") -> tuple[BoardProfile, str]:
    """Identify the board from /proc under `root`; return the profile and why it was chosen.

    The device-tree model (or the cpuinfo `Model` line) is matched against each
    profile's `detect.model_patterns`; the CPU part ids are cross-checked
    against the profile's clusters; MemTotal picks the RAM variant among
    profiles with the same detect rules. Without a match, the profile whose
    `detect.fill_from_host` is set for the host's architecture is used, filled
    with the host's cores, ISA bits and RAM.

    Example::

        board, reason = detect_board("tests/data/boards/raspberry-pi-5/")
        board.id   # 'raspberry-pi-5-8gb'
    """
    facts = read_host_facts(root)
    profiles = [load_board(i) for i in list_boards()]
    matched = [
        b for b in profiles
        if facts.model and any(facts.model.startswith(p) for p in b.data["detect"]["model_patterns"])
        and b.data["detect"]["arch"] in (facts.arch, "aarch64" if facts.arch == "armv7l" else None)
    ]
    if matched:
        rules = {json.dumps(b.data["detect"], sort_keys=True) for b in matched}
        if len(rules) > 1:
            ids = ", ".join(b.id for b in matched)
            raise BoardError(f"model {facts.model!r} matches several unrelated profiles ({ids}); pass --board ID")
        board, ram_reason = _pick_ram_variant(matched, facts.mem_total_bytes)
        reason = f"device-tree model {facts.model!r} matches {board.id}; {ram_reason}"
        want = {c.cpu_part for c in board.clusters if c.cpu_part}
        seen = set(facts.cpu_parts)
        if seen and want and seen != want:
            reason += f"; warning: CPU parts {sorted(seen)} differ from the profile's {sorted(want)}"
        elif seen:
            reason += f"; CPU parts {sorted(seen)} agree"
        if facts.arch == "armv7l":
            reason += "; the userland is 32-bit (armv7l)"
        return board, reason
    fallback = [b for b in profiles if b.data["detect"]["fill_from_host"] and b.data["detect"]["arch"] == facts.arch]
    if not fallback:
        known = ", ".join(b.id for b in profiles)
        raise BoardError(
            f"no profile matches model {facts.model or '(none)'!r} on a {facts.arch} CPU and there is no generic "
            f"profile for {facts.arch}; pass --board ID (known: {known})"
        )
    if not facts.mem_total_bytes:
        raise BoardError(
            f"no profile matches model {facts.model or '(none)'!r} and this host's memory is unknown (no MemTotal in "
            "/proc/meminfo), so a generic profile cannot be filled in; pass --board ID")
    board = _fill_from_host(fallback[0], facts)
    why = f"model {facts.model!r} matches no profile" if facts.model else "no device-tree model"
    return board, (
        f"{why}; using {board.id} filled from this host ({facts.n_cpus} CPUs, "
        f"MemTotal {facts.mem_total_bytes / (1 << 30):.2f} GiB, ISA {', '.join(k for k, v in board.isa.items() if v) or 'scalar'})"
    )
