"""`edge-sdk keygen -o KEY`: make an Ed25519 key pair for signing packages (KEY and KEY.pub)."""

from __future__ import annotations

import argparse
import sys


def cmd(a: argparse.Namespace) -> int:
    from ..export.signing import TRUSTED_KEYS_ENV, make_key_pair

    pub_path, public = make_key_pair(a.output)
    print(pub_path)
    print(f"private key {a.output} (keep it off the devices), public key {pub_path} (id {public.key_id}): sign with "
          f"`edge-sdk convert MODEL -o DIR --sign {a.output}`, trust on a device with {TRUSTED_KEYS_ENV}={pub_path}",
          file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="make a key pair for signing packages: -o KEY writes KEY (private) and KEY.pub")
    p.add_argument("-o", "--output", required=True, help="private key file to write (KEY.pub gets the public key)")
    p.set_defaults(func=cmd)
