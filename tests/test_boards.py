"""Board profiles: schema, extends, detection from recorded /proc files, CLI."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest

from edge_sdk.plan import boards
from edge_sdk.plan.boards import BOARDS_DIR_ENV, list_boards, load_board, load_schema, resolve_board_dict, schema_errors, validate_board_dict
from edge_sdk.plan.host import detect_board, isa_from_features
from edge_sdk.errors import BoardError

DATA = Path(__file__).parent / "data" / "boards"
REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20

REQUIRED_IDS = [
    "raspberry-pi-zero-2w", "raspberry-pi-3b-plus", "raspberry-pi-4b-1gb", "raspberry-pi-4b-2gb",
    "raspberry-pi-4b-4gb", "raspberry-pi-4b-8gb", "raspberry-pi-5-2gb", "raspberry-pi-5-4gb",
    "raspberry-pi-5-8gb", "raspberry-pi-5-16gb", "jetson-nano-4gb", "jetson-orin-nano-8gb",
    "orange-pi-5", "generic-x86_64", "generic-aarch64",
]


# ---------------------------------------------------------------------------
# Schema and profiles
# ---------------------------------------------------------------------------


def test_every_required_board_exists_and_validates():
    ids = list_boards()
    assert set(REQUIRED_IDS) <= set(ids)
    schema = load_schema()
    for board_id in ids:
        d = resolve_board_dict(board_id)
        assert schema_errors(d, schema) == [], board_id
        validate_board_dict(d, schema)
        assert load_board(board_id).id == board_id


def test_the_schema_is_valid_and_errors_name_the_field():
    import jsonschema

    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    bad = resolve_board_dict("raspberry-pi-5-4gb")
    bad["isa"]["dotprod"] = "yes"
    bad["cpu"]["clusters"][0]["count"] = 0
    assert schema_errors(bad, schema) == ["cpu.clusters[0].count: 0 is less than the minimum of 1",
                                          "isa.dotprod: 'yes' is not of type 'boolean'"]
    with pytest.raises(BoardError, match=r"board profile 'raspberry-pi-5-4gb' is invalid: cpu.clusters\[0\].count"):
        validate_board_dict(bad)


def test_extends_merges_parent_fields_and_overrides_ram():
    b = load_board("raspberry-pi-4b-4gb")
    assert b.ram_bytes == 4096 * MiB
    # MemTotal 3789 MiB - 100 MiB idle - 10% (379 MiB) = 3310 MiB
    assert b.sdk_budget_bytes == 3310 * MiB
    assert b.clusters[0].core_type == "cortex-a72" and b.clusters[0].cpu_part == "0xd08"
    assert b.mem_bandwidth_gbps == 4.23
    assert "extends" not in b.to_dict()
    raw = json.loads((REPO / "boards" / "raspberry-pi-4b-4gb.json").read_text())
    assert raw["extends"] == "raspberry-pi-4b-1gb" and "cpu" not in raw


def test_profiles_hold_expected_numbers():
    zero = load_board("raspberry-pi-zero-2w")
    # MemTotal 427 MiB - 64 MiB idle - 43 MiB headroom
    assert zero.sdk_budget_bytes == 320 * MiB
    assert zero.backends == ("native",)
    assert zero.data["stock_os"]["arch"] == "armv7l"
    assert zero.data["wheels"]["onnxruntime"]["source"] == "none"
    opi = load_board("orange-pi-5")
    assert opi.total_cores == 8
    assert opi.big_cluster.core_type == "cortex-a76" and opi.big_cluster.count == 4
    orin = load_board("jetson-orin-nano-8gb")
    assert orin.data["accelerators"][0]["cuda_compute_capability"] == "8.7"
    assert orin.data["other_os"][0]["wheels"]["onnxruntime"]["max_version"] == "1.19.2"
    assert orin.data["other_os"][0]["wheels"]["ai_edge_litert"]["source"] == "none"
    pi5 = load_board("raspberry-pi-5-8gb")
    assert pi5.isa["dotprod"] and not pi5.isa["i8mm"]
    assert pi5.data["cross_compile"]["cflags"] == ["-mcpu=cortex-a76"]
    fig = pi5.data["published_llm_figures"][0]
    assert (fig["decode_tok_s"], fig["prefill_tok_s"], fig["source_url"]) == (9, 35, "https://justine.lol/matmul/")


def test_bandwidth_by_threads_lookup():
    x86 = load_board("generic-x86_64")
    assert dict(x86.mem_bandwidth_by_threads_gbps) == {1: 12.0}
    assert x86.bandwidth_gbps(1) == x86.bandwidth_gbps(2) == 12.0  # no two-thread measurement: the 1-thread one
    d = resolve_board_dict("generic-x86_64")
    d["mem_bandwidth_by_threads_gbps"] = {"1": 10.0, "4": 30.0}
    b = boards.board_from_dict(d)
    assert (b.bandwidth_gbps(1), b.bandwidth_gbps(3), b.bandwidth_gbps(4), b.bandwidth_gbps(16)) == (10.0, 10.0, 30.0, 30.0)
    pi4 = load_board("raspberry-pi-4b-1gb")
    assert pi4.bandwidth_gbps(1) == pi4.bandwidth_gbps(4) == 4.23


def test_unknown_board_lists_known_ids():
    with pytest.raises(BoardError) as e:
        load_board("raspberry-pi-6")
    assert "unknown board 'raspberry-pi-6'" in str(e.value)
    assert "raspberry-pi-zero-2w" in str(e.value) and "generic-x86_64" in str(e.value)


def _copy_boards(tmp_path: Path, monkeypatch) -> Path:
    d = tmp_path / "boards"
    shutil.copytree(REPO / "boards", d)
    monkeypatch.setenv(BOARDS_DIR_ENV, str(d))
    return d


def test_extends_cycle_and_missing_parent_are_errors(tmp_path, monkeypatch):
    d = _copy_boards(tmp_path, monkeypatch)
    (d / "a.json").write_text(json.dumps({"id": "a", "extends": "b"}))
    (d / "b.json").write_text(json.dumps({"id": "b", "extends": "a"}))
    with pytest.raises(BoardError, match=r"extends cycle a -> b -> a"):
        load_board("a")
    (d / "c.json").write_text(json.dumps({"id": "c", "extends": "nowhere"}))
    with pytest.raises(BoardError, match=r"board 'c' extends 'nowhere', which cannot be loaded"):
        load_board("c")


def test_file_name_must_match_id(tmp_path, monkeypatch):
    d = _copy_boards(tmp_path, monkeypatch)
    (d / "mine.json").write_text(json.dumps({"id": "other", "extends": "generic-aarch64"}))
    with pytest.raises(BoardError, match=r"field id is 'other', must equal the file name 'mine'"):
        load_board("mine")


def test_schema_violation_names_the_field(tmp_path, monkeypatch):
    d = _copy_boards(tmp_path, monkeypatch)
    (d / "broken.json").write_text(json.dumps({
        "id": "broken", "extends": "raspberry-pi-5-4gb",
        "ram_bytes": "8GB",
        "isa": {"dotprod": 1},
        "cpu": {"clusters": [{"core_type": "cortex-a76", "count": 0, "max_clock_mhz": 2400, "cpu_part": "D0B",
                              "l1d_bytes": 65536, "l2_bytes": 524288, "l2_shared": False}]},
        "colour": "red",
    }))
    with pytest.raises(BoardError) as e:
        load_board("broken")
    msg = str(e.value)
    assert "ram_bytes: '8GB' is not of type 'integer'" in msg
    assert "isa.dotprod: 1 is not of type 'boolean'" in msg
    assert "cpu.clusters[0].count: 0 is less than the minimum of 1" in msg
    assert "cpu.clusters[0].cpu_part: 'D0B' does not match" in msg
    assert "colour: unknown field" in msg


def test_cross_field_rules():
    d = resolve_board_dict("raspberry-pi-zero-2w")
    d["backends"] = ["native", "onnx"]
    d["onnxruntime_providers"] = ["CPUExecutionProvider"]
    with pytest.raises(BoardError, match=r"backends: onnx is listed but wheels.onnxruntime.source is 'none'"):
        validate_board_dict(d)
    d = resolve_board_dict("raspberry-pi-3b-plus")
    d["sdk_budget_bytes"] = d["ram_bytes"] + 1
    with pytest.raises(BoardError, match=r"sdk_budget_bytes: .* is more than ram_bytes"):
        validate_board_dict(d)
    d = resolve_board_dict("generic-x86_64")
    d["isa"]["neon"] = True
    with pytest.raises(BoardError, match=r"isa: neon are Arm features but cpu.architecture is x86_64"):
        validate_board_dict(d)


def test_validator_does_not_take_bools_for_integers():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert schema_errors({"n": True}, schema) == ["n: True is not of type 'integer'"]
    assert schema_errors({"n": 3}, schema) == []


def test_code_never_compares_with_a_board_id():
    pattern = re.compile(r"""[=!]=\s*["'](raspberry|jetson|orange|generic)""")
    offenders = [str(p) for p in (REPO / "edge_sdk").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


# ---------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "root, board_id, fragments",
    [
        ("raspberry-pi-zero-2w", "raspberry-pi-zero-2w", ["'Raspberry Pi Zero 2 W Rev 1.0'", "CPU parts ['0xd03'] agree", "32-bit (armv7l)"]),
        ("raspberry-pi-3b-plus", "raspberry-pi-3b-plus", ["CPU parts ['0xd03'] agree", "1 GiB variant"]),
        ("raspberry-pi-4b", "raspberry-pi-4b-4gb", ["MemTotal 3.70 GiB fits the 4 GiB variant", "['0xd08'] agree"]),
        ("raspberry-pi-5", "raspberry-pi-5-8gb", ["MemTotal 7.86 GiB fits the 8 GiB variant", "['0xd0b'] agree"]),
        ("jetson-nano", "jetson-nano-4gb", ["'NVIDIA Jetson Nano Developer Kit'", "['0xd07'] agree"]),
        ("jetson-orin-nano", "jetson-orin-nano-8gb", ["'NVIDIA Orin Nano Developer Kit'", "['0xd42'] agree"]),
        ("orange-pi-5", "orange-pi-5", ["CPU parts ['0xd05', '0xd0b'] agree"]),
    ],
)
def test_detect_recorded_boards(root, board_id, fragments):
    board, reason = detect_board(DATA / root)
    assert board.id == board_id
    for f in fragments:
        assert f in reason


def test_meminfo_picks_the_ram_variant(tmp_path):
    shutil.copytree(DATA / "raspberry-pi-4b", tmp_path / "pi4")
    meminfo = tmp_path / "pi4" / "proc" / "meminfo"
    for kib, board_id in [(930_816, "raspberry-pi-4b-1gb"), (1_887_436, "raspberry-pi-4b-2gb"), (8_074_240, "raspberry-pi-4b-8gb")]:
        meminfo.write_text(f"MemTotal:       {kib} kB\nMemAvailable:   {kib // 2} kB\n")
        assert detect_board(tmp_path / "pi4")[0].id == board_id
    meminfo.write_text("MemTotal:       16777216 kB\n")  # more than any Pi 4 variant
    board, reason = detect_board(tmp_path / "pi4")
    assert board.id == "raspberry-pi-4b-8gb" and "exceeds every variant; took the largest (8 GiB)" in reason


def test_mismatching_cpu_parts_are_reported(tmp_path):
    shutil.copytree(DATA / "raspberry-pi-4b", tmp_path / "odd")
    cpuinfo = tmp_path / "odd" / "proc" / "cpuinfo"
    cpuinfo.write_text(cpuinfo.read_text().replace("0xd08", "0xd0b"))
    board, reason = detect_board(tmp_path / "odd")
    assert board.id == "raspberry-pi-4b-4gb"
    assert "warning: CPU parts ['0xd0b'] differ from the profile's ['0xd08']" in reason


def test_unknown_arm_board_falls_back_to_generic_filled_from_host():
    board, reason = detect_board(DATA / "radxa-rock-5b")
    assert board.id == "generic-aarch64"
    assert reason.startswith("model 'Radxa ROCK 5B' matches no profile; using generic-aarch64 filled from this host (8 CPUs")
    assert board.total_cores == 8
    assert board.isa["dotprod"] and board.isa["fp16_arith"] and not board.isa["i8mm"]
    assert board.ram_bytes == 16_121_548 * 1024
    assert board.sdk_budget_bytes == int(15_300_000 * 1024 * 0.9)


def test_x86_host_falls_back_to_generic_x86_64():
    board, reason = detect_board(DATA / "x86_64-vm")
    assert board.id == "generic-x86_64"
    assert reason.startswith("no device-tree model; using generic-x86_64 filled from this host (2 CPUs")
    assert board.isa["avx2"] and board.isa["avx512_vnni"] and not board.isa["neon"]
    assert board.clusters[0].max_clock_mhz == 2100
    assert board.ram_bytes == 24_684_092 * 1024


def test_armv7_without_profile_is_an_error(tmp_path):
    shutil.copytree(DATA / "raspberry-pi-zero-2w", tmp_path / "b")
    (tmp_path / "b" / "proc" / "device-tree" / "model").write_bytes(b"Some Other Board\x00")
    cpuinfo = tmp_path / "b" / "proc" / "cpuinfo"
    cpuinfo.write_text(cpuinfo.read_text().replace("Model\t\t: Raspberry Pi Zero 2 W Rev 1.0", "Model\t\t: Some Other Board"))
    with pytest.raises(BoardError, match=r"no generic profile for armv7l; pass --board ID"):
        detect_board(tmp_path / "b")


def test_missing_cpuinfo_is_an_error(tmp_path):
    with pytest.raises(BoardError, match=r"cannot read .*cpuinfo; pass --board ID"):
        detect_board(tmp_path)


def test_isa_bits_from_feature_strings():
    a76 = frozenset("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp".split())
    assert isa_from_features("aarch64", a76) == {
        "neon": True, "dotprod": True, "i8mm": False, "fp16_arith": True, "sve": False, "avx2": False, "avx512_vnni": False}
    v7 = frozenset("half thumb fastmult vfp edsp neon vfpv3 tls vfpv4".split())
    assert isa_from_features("armv7l", v7)["neon"] is True


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def _run_cli(argv: list[str]) -> int:
    from edge_sdk.cli import boards as cli_boards

    parser = argparse.ArgumentParser(prog="edge-sdk")
    cli_boards.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_boards_list_show_detect(capsys):
    assert _run_cli(["boards"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(list_boards())
    assert out[-1].startswith("raspberry-pi-zero-2w") and "320 MiB budget" in out[-1]
    assert _run_cli(["boards", "show", "raspberry-pi-5-2gb", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == "raspberry-pi-5-2gb" and shown["ram_bytes"] == 2 * 1024 * MiB
    assert _run_cli(["boards", "detect", "--root", str(DATA / "jetson-nano")]) == 0
    cap = capsys.readouterr()
    assert cap.out == "jetson-nano-4gb\n"
    assert "NVIDIA Jetson Nano Developer Kit" in cap.err


def test_non_finite_numbers_and_odd_thread_keys_are_refused(tmp_path, monkeypatch):
    d = _copy_boards(tmp_path, monkeypatch)
    for name, text in (("nan-bw", '{"id": "nan-bw", "extends": "generic-x86_64", "mem_bandwidth_by_threads_gbps": {"1": NaN}}'),
                       ("inf-ram", '{"id": "inf-ram", "extends": "generic-x86_64", "ram_bytes": Infinity}')):
        (d / f"{name}.json").write_text(text)
        with pytest.raises(BoardError, match=r"not readable JSON \((NaN|Infinity) is not a JSON number"):
            load_board(name)
    (d / "sup.json").write_text(json.dumps({"id": "sup", "extends": "generic-x86_64",
                                            "mem_bandwidth_by_threads_gbps": {"\u00b2": 5.0}}))
    with pytest.raises(BoardError, match="mem_bandwidth_by_threads_gbps.\u00b2: keys are thread counts"):
        load_board("sup")


def test_odd_host_facts(tmp_path):
    shutil.copytree(DATA / "x86_64-vm", tmp_path / "vm")
    cpuinfo = tmp_path / "vm" / "proc" / "cpuinfo"
    for mhz in ("abc", "nan", "inf", "1e400"):
        cpuinfo.write_text(re.sub(r"cpu MHz\s*:.*", f"cpu MHz\t\t: {mhz}", (DATA / "x86_64-vm/proc/cpuinfo").read_text()))
        board, _ = detect_board(tmp_path / "vm")  # an unreadable clock is unknown: the profile's own is kept
        assert board.clusters[0].max_clock_mhz == load_board("generic-x86_64").clusters[0].max_clock_mhz
    (tmp_path / "vm" / "proc" / "meminfo").write_text("MemFree: 1000 kB\n")
    with pytest.raises(BoardError, match=r"this host's memory is unknown \(no MemTotal in /proc/meminfo\)"):
        detect_board(tmp_path / "vm")
