"""`edge-sdk pull`: fetch a registered model into the cache (and convert it once)."""

from __future__ import annotations

import argparse

from ..importers.registry import DEFAULT_MODEL, REGISTRY


def cmd(a: argparse.Namespace) -> int:
    from ..model.config import QuantConfig
    from ..export.convert import cached_package
    from ..importers.registry import pull

    path = pull(a.model, quiet=False)
    print(path)
    if not a.no_convert:
        print(cached_package(a.model, QuantConfig(group_size=a.group_size), quiet=False))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pull", help="download a registered model into the cache and convert it")
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=f"a registered model: {', '.join(sorted(REGISTRY))}")
    p.add_argument("--group-size", type=int, default=32, help="int8 weight scale per group of G inputs (0: per row)")
    p.add_argument("--no-convert", action="store_true", help="only download and verify")
    p.set_defaults(func=cmd)
