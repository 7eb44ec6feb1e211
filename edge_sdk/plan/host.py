"""This machine: which board profile it is (from /proc), its memory, and this process's peak memory.

Detection reads a (possibly recorded) /proc tree: the device-tree model or the cpuinfo `Model` line against
each profile's `detect.model_patterns`, the CPU part ids as a cross-check, MemTotal for the RAM variant;
without a match, the generic profile of the architecture filled in with the host's cores, ISA bits and RAM.

Example::

    board, reason = detect_board()              # this machine
    board, reason = detect_board("tests/data/boards/raspberry-pi-5/")   # a recorded /proc
    peak_rss_bytes(), mem_available_bytes()
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
from dataclasses import dataclass
from pathlib import Path

from ..errors import BoardError
from .boards import BoardProfile, _profile_from_dict, list_boards, load_board, validate_board_dict


# ---------------------------------------------------------------------------
# This process and this machine's memory
# ---------------------------------------------------------------------------


def peak_rss_bytes() -> int:
    """This process's peak resident set: VmHWM, which belongs to the address space and starts afresh at exec.

    (`getrusage(RUSAGE_SELF).ru_maxrss` would not do in a child: Linux copies the parent's peak into it at
    fork, so a child of a parent that converted a model would report the parent's peak.)
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mem_available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


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
