"""`edge-sdk serve-serial`: serve a model to a microcontroller over a serial port.

    edge-sdk serve-serial --port /dev/ttyAMA0 --baud 115200 -m smollm2-135m --threads 4

Runs until Ctrl-C (or SIGTERM). The protocol is in docs/serial-protocol.md;
examples/mcu_client/ has a C client for the other end of the wire.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

import serial

from ..errors import InvalidArgumentError, ProtocolError
from ..serial import PROTOCOL_VERSION, SerialServer
from ..serial.registry import MAX_CONSTRAINT_SIZE, MAX_CONSTRAINTS
from .common import add_model_args, load_from_args


def cmd(a: argparse.Namespace) -> int:
    log = logging.getLogger("edge_sdk.serial")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("edge-sdk serve-serial: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    if a.max_tokens is not None and a.max_tokens < 1:
        raise InvalidArgumentError(f"--max-tokens must be >= 1, got {a.max_tokens}")
    for flag, v in (("--max-constraints", a.max_constraints), ("--max-constraint-bytes", a.max_constraint_bytes)):
        if v < 1:
            raise InvalidArgumentError(f"{flag} must be >= 1, got {v}")
    # Open the port before the (slow) model load, so a wrong --port fails at once.
    try:
        port = serial.serial_for_url(a.port, baudrate=a.baud)
    except (serial.SerialException, ValueError) as e:
        raise ProtocolError(f"cannot open serial port {a.port!r} at {a.baud} baud: {e}") from e
    try:
        model = load_from_args(a)
        try:
            _serve(model, port, a)
        finally:
            close = getattr(model, "close", None)
            if close is not None:
                close()
    finally:
        port.close()
    return 0


def _serve(model: object, port: serial.SerialBase, a: argparse.Namespace) -> None:
    server = SerialServer(model, port, a.baud, write_timeout=a.write_timeout, max_tokens=a.max_tokens,  # type: ignore[arg-type]
                          max_constraints=a.max_constraints, max_constraint_size=a.max_constraint_bytes)
    info = server.model.info()
    print(
        f"[serving {info.get('name')} (backend {info.get('backend')}, ctx {info.get('ctx')}) on {a.port} "
        f"at {a.baud} baud, protocol v{PROTOCOL_VERSION}; Ctrl-C to stop]",
        file=sys.stderr,
    )

    def on_term(signum: int, frame: FrameType | None) -> None:
        server.stop(timeout=0)

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_term) if main else None
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(timeout=0)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    s = server.stats
    print(
        f"[served {s['requests']} requests ({s['cancelled']} cancelled, {s['aborted']} abandoned); "
        f"{s['faults']} bad frames, {s['read_errors']} read errors, {s['write_errors']} write errors]",
        file=sys.stderr,
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve-serial", help="serve the model over a serial port (UART, USB serial) to a microcontroller")
    p.add_argument("--port", required=True, help="serial device (/dev/ttyAMA0, /dev/ttyUSB0, COM3) or pyserial URL")
    p.add_argument("--baud", type=int, default=115200, help="baud rate (default 115200)")
    p.add_argument(
        "--write-timeout", type=float, default=2.0, help="seconds a blocked write may wait before the client counts as gone"
    )
    p.add_argument(
        "--max-tokens", type=int, default=None,
        help="most tokens one request may generate; a request asking for more runs with this many "
             "(default: what the context has room for)")
    p.add_argument("--max-constraints", type=int, default=MAX_CONSTRAINTS,
                   help=f"constraints (REGISTER) one line may hold at once (default {MAX_CONSTRAINTS})")
    p.add_argument("--max-constraint-bytes", type=int, default=MAX_CONSTRAINT_SIZE,
                   help=f"bytes of text one registered constraint may have (default {MAX_CONSTRAINT_SIZE})")
    add_model_args(p)
    p.set_defaults(func=cmd)
