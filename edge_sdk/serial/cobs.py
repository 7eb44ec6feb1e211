"""Consistent Overhead Byte Stuffing (COBS).

COBS rewrites a block of bytes so that it contains no 0x00, at a cost of one
byte per 254 bytes (plus one). A 0x00 on the line then always means "end of
frame", so a receiver that joins in the middle of a stream, or that has seen
noise, finds the next frame boundary by looking for the next 0x00.

Each output group is a code byte `n` followed by `n - 1` data bytes; the group
stands for those bytes followed by a 0x00, except that a group with code 0xFF
(254 data bytes) carries no implied zero, and the implied zero after the last
group is dropped. Reference: S. Cheshire and M. Baker, "Consistent Overhead
Byte Stuffing", IEEE/ACM Transactions on Networking 7(2), 1999.

    >>> encode(b"\\x11\\x00\\x22")
    b'\\x02\\x11\\x02"'
    >>> decode(encode(b"\\x11\\x00\\x22"))
    b'\\x11\\x00"'
"""

from __future__ import annotations

from ..errors import ProtocolError


def max_encoded_size(n: int) -> int:
    """Upper bound on `len(encode(data))` for `len(data) == n`.

    >>> max_encoded_size(1034)
    1039
    """
    return n + n // 254 + 1


def encode(data: bytes) -> bytes:
    """COBS-encode `data`; the result holds no 0x00 byte.

    Every run of bytes between zeros becomes groups of at most 254 bytes. The
    output is the canonical one (the byte-at-a-time encoder of Cheshire and
    Baker): a run that fills its last group exactly is followed by a 0x01
    group only when a zero comes after it, not at the end of the data.
    """
    out = bytearray()
    runs = data.split(b"\x00")
    for k, run in enumerate(runs):
        full = len(run) - len(run) % 254
        for i in range(0, full, 254):
            out.append(0xFF)
            out += run[i : i + 254]
        if k == len(runs) - 1 and full and full == len(run):
            break
        out.append(len(run) - full + 1)
        out += run[full:]
    return bytes(out)


def decode(data: bytes) -> bytes:
    """Reverse `encode`; raise ProtocolError on input that no encoder makes."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ProtocolError(f"COBS: zero byte at offset {i} inside a frame")
        end = i + code
        if end > n:
            raise ProtocolError(f"COBS: group at offset {i} needs {code - 1} bytes, only {n - i - 1} left")
        block = data[i + 1 : end]
        if 0 in block:
            raise ProtocolError(f"COBS: zero byte inside the group at offset {i}")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)
