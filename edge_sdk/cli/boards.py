"""`edge-sdk boards`: list board profiles, show one, or detect this machine's.

Examples::

    edge-sdk boards
    edge-sdk boards show raspberry-pi-5-8gb --json
    edge-sdk boards detect --root tests/data/boards/raspberry-pi-5
"""

from __future__ import annotations

import argparse
import json
import sys

from ..plan.boards import BoardProfile, list_boards, load_board
from ..plan.host import detect_board

MiB = 1 << 20


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("boards", help="list, show or detect board profiles",
                              description="List board profiles, show one, or detect this machine's board.")
    p.set_defaults(func=run_list)
    sub = p.add_subparsers(dest="boards_command", metavar="ACTION")
    show = sub.add_parser("show", help="print one profile (extends applied)")
    show.add_argument("board_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print the resolved profile as JSON")
    show.set_defaults(func=run_show)
    detect = sub.add_parser("detect", help="identify this machine from /proc")
    detect.add_argument("--root", default="/", help="read ROOT/proc/... instead of /proc (recorded files)")
    detect.add_argument("--json", action="store_true", help="print {id, reason, profile} as JSON")
    detect.set_defaults(func=run_detect)


def _summary(b: BoardProfile) -> str:
    cores = " + ".join(f"{c.count}x {c.core_type} @ {c.max_clock_mhz} MHz" for c in b.clusters)
    isa = ", ".join(k for k, v in b.isa.items() if v) or "scalar"
    return "\n".join([
        f"{b.id}: {b.name}",
        f"  cpu        {b.soc}: {cores}",
        f"  isa        {isa}",
        f"  ram        {b.ram_bytes / MiB:.0f} MiB, SDK budget {b.sdk_budget_bytes / MiB:.0f} MiB",
        f"  bandwidth  {b.mem_bandwidth_gbps:g} GB/s ({b.mem_bandwidth_threads} thread(s)): {b.mem_bandwidth_source}",
        f"  storage    {b.storage_read_mbps:g} MB/s: {b.storage_read_source}",
        f"  backends   {', '.join(b.backends)}; ONNX Runtime providers: {', '.join(b.onnxruntime_providers) or 'none'}",
        f"  stock OS   {b.data['stock_os']['name']} (Python {b.data['stock_os']['python_version']}, "
        f"glibc {b.data['stock_os']['glibc_version']})",
        f"  notes      {b.notes}",
    ])


def run_list(args: argparse.Namespace) -> int:
    rows = [load_board(i) for i in list_boards()]
    width = max(len(b.id) for b in rows)
    for b in rows:
        print(f"{b.id:<{width}}  {b.ram_bytes / MiB:>6.0f} MiB RAM  {b.sdk_budget_bytes / MiB:>6.0f} MiB budget  "
              f"{'/'.join(b.backends):<25}  {b.name}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    b = load_board(args.board_id)
    print(json.dumps(b.to_dict(), indent=2) if args.json else _summary(b))
    return 0


def run_detect(args: argparse.Namespace) -> int:
    b, reason = detect_board(args.root)
    if args.json:
        print(json.dumps({"id": b.id, "reason": reason, "profile": b.to_dict()}, indent=2))
    else:
        print(b.id)
        print(reason, file=sys.stderr)
    return 0
