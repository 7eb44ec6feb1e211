"""Serve a model over a serial line (UART, USB serial) to a microcontroller.

The protocol is framed binary: COBS frames between 0x00 delimiters, a 6-byte
header (version, type, seq, payload length), a CRC-32 trailer; see
`docs/serial-protocol.md`. `SerialServer` runs on the board next to the
model, `SerialClient` is the host-side client, `examples/mcu_client/` the C
one for microcontrollers. Constraints (a JSON Schema, choices, a regex, a
grammar) are registered by id once and named by requests (`registry.py`).

    >>> from edge_sdk.serial import SerialServer, SerialClient   # doctest: +SKIP
    >>> SerialServer(model, "/dev/ttyAMA0", 115200).start()      # doctest: +SKIP
    >>> c = SerialClient("/dev/ttyUSB0")                          # doctest: +SKIP
    >>> c.generate("Hi", max_tokens=8)                            # doctest: +SKIP
    >>> c.register_choices(1, ["left", "right"])                  # doctest: +SKIP
    >>> c.generate("Turn which way?", constraint=1)               # doctest: +SKIP
"""

from __future__ import annotations

from .client import RemoteError, SerialClient
from .protocol import MAX_PAYLOAD, PROTOCOL_VERSION, ErrorCode, Frame
from .server import SerialServer

__all__ = ["SerialServer", "SerialClient", "RemoteError", "ErrorCode", "Frame", "PROTOCOL_VERSION", "MAX_PAYLOAD"]
