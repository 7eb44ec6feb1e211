"""Frames of the edge_sdk serial protocol (version 2): layout, CRC, framing.

A frame on the line is

    0x00  COBS( header | payload | crc32 )  0x00

    header  = version u8 | type u8 | seq u16 LE | payload_len u16 LE   (6 bytes)
    crc32   = zlib.crc32(header | payload), u32 LE                     (4 bytes)

The leading 0x00 ends whatever noise came before the frame, so noise costs at
most itself and never the frame after it; empty frames (two 0x00 in a row) are
ignored. The header layout and the CRC trailer are the same in every protocol
version, so a receiver can read the version and seq of a frame it does not
speak and say so. `docs/serial-protocol.md` is the full specification; this
module is its reference implementation and `messages.py` holds the payloads.

    >>> wire = encode_frame(Frame(PING, 1))
    >>> wire.hex(" ")
    '00 04 02 01 01 01 01 05 7d 4e d6 79 00'
    >>> FrameReader().feed(wire)
    [Frame(type=1, seq=1, payload=b'', version=2)]
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

from ..errors import InvalidArgumentError, ProtocolError
from . import cobs

# ---------------------------------------------------------------- constants

PROTOCOL_VERSION = 2
# Versions whose ERROR frame has this layout (code u16 | message): a request in one of them is told
# BAD_VERSION in its own version, so an older client reads the code and message instead of only
# seeing a reply of a version it does not speak.
ERROR_COMPATIBLE_VERSIONS = frozenset({1, 2})
HEADER_SIZE = 6
CRC_SIZE = 4
MAX_PAYLOAD = 1024
MAX_BODY = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE
MAX_ENCODED = cobs.max_encoded_size(MAX_BODY)  # COBS bytes between the delimiters
MAX_WIRE = MAX_ENCODED + 2  # with both delimiters
DELIMITER = 0

# A request message may span several frames of MAX_PAYLOAD (see FLAG_MORE);
# this bounds the reassembled size a server accepts by default.
MAX_MESSAGE = 16384

# seq 0 is reserved: an ERROR with seq 0 is about a frame whose seq is unknown.
NO_SEQ = 0

_HEADER = struct.Struct("<BBHH")
_CRC = struct.Struct("<I")

# ------------------------------------------------------------ message types

# Requests (client -> server).
PING = 0x01
INFO = 0x02
GENERATE = 0x03
CHAT = 0x04
CANCEL = 0x05
REGISTER = 0x06
UNREGISTER = 0x07
# Responses (server -> client).
PONG = 0x81
INFO_REPLY = 0x82
TOKEN = 0x83
DONE = 0x84
ERROR = 0x85
ACK = 0x86

# Set on every frame of a GENERATE, CHAT or REGISTER message but the last: the payload
# continues in the next frame, which has the same seq and base type.
FLAG_MORE = 0x40

REQUEST_TYPES = frozenset({PING, INFO, GENERATE, CHAT, CANCEL, REGISTER, UNREGISTER})
RESPONSE_TYPES = frozenset({PONG, INFO_REPLY, TOKEN, DONE, ERROR, ACK})
FRAGMENTABLE_TYPES = frozenset({GENERATE, CHAT, REGISTER})
TYPE_NAMES = {
    PING: "PING",
    INFO: "INFO",
    GENERATE: "GENERATE",
    CHAT: "CHAT",
    CANCEL: "CANCEL",
    REGISTER: "REGISTER",
    UNREGISTER: "UNREGISTER",
    PONG: "PONG",
    INFO_REPLY: "INFO_REPLY",
    TOKEN: "TOKEN",
    DONE: "DONE",
    ERROR: "ERROR",
    ACK: "ACK",
}


class ErrorCode(IntEnum):
    """Codes carried by ERROR frames (u16). Codes 1-4 always come with seq 0."""

    BAD_FRAME = 1  # not valid COBS, or shorter than header + CRC
    BAD_LENGTH = 2  # payload_len disagrees with the frame's size (truncated frame)
    BAD_CRC = 3  # CRC-32 mismatch
    TOO_LARGE = 4  # frame over MAX_WIRE (discarded), or message over the server's limit
    BAD_VERSION = 5  # a protocol version this server does not speak
    UNKNOWN_TYPE = 6  # a type that is not a request
    BAD_PAYLOAD = 7  # malformed fields, bad UTF-8, missing prompt, broken fragments
    BUSY = 8  # another GENERATE/CHAT is streaming
    NOT_RUNNING = 9  # CANCEL names a request that is not streaming
    MODEL_ERROR = 10  # the model refused the request (e.g. prompt too long)
    INTERNAL = 11  # unexpected failure in the server; it keeps serving
    BAD_SEQ = 12  # a request used the reserved seq 0
    BAD_CONSTRAINT = 13  # REGISTER: the engine refused the constraint (bad schema, empty/repeated choice, ...)
    UNKNOWN_CONSTRAINT = 14  # GENERATE/CHAT/UNREGISTER: no constraint is registered under that id
    CONSTRAINT_LIMIT = 15  # REGISTER: the line holds the most constraints, or the constraint is too large
    UNSUPPORTED = 16  # REGISTER: this server cannot apply constraints (no engine, or a model without them)


def type_name(t: int) -> str:
    """`'GENERATE+MORE'`, `'TOKEN'`, or `'0x7e'` for a type with no name."""
    base = t & ~FLAG_MORE if (t & ~FLAG_MORE) in FRAGMENTABLE_TYPES else t
    name = TYPE_NAMES.get(base, f"0x{t:02x}")
    return name + "+MORE" if base != t else name


# ------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Frame:
    """One decoded frame. `type` includes FLAG_MORE when it is set."""

    type: int
    seq: int
    payload: bytes = b""
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class FrameFault:
    """A chunk between delimiters that is not a frame; its seq is unknown."""

    code: ErrorCode
    detail: str


def encode_frame(frame: Frame) -> bytes:
    """Wire bytes of one frame, both delimiters included.

    >>> len(encode_frame(Frame(TOKEN, 7, b"Hello")))
    18
    """
    if not 0 <= frame.seq <= 0xFFFF:
        raise InvalidArgumentError(f"seq {frame.seq} does not fit in u16")
    if not 0 <= frame.type <= 0xFF or not 0 <= frame.version <= 0xFF:
        raise InvalidArgumentError(f"type {frame.type} and version {frame.version} must fit in u8")
    if len(frame.payload) > MAX_PAYLOAD:
        raise InvalidArgumentError(f"payload of {len(frame.payload)} bytes is over the {MAX_PAYLOAD}-byte frame limit")
    body = _HEADER.pack(frame.version, frame.type, frame.seq, len(frame.payload)) + frame.payload
    body += _CRC.pack(zlib.crc32(body))
    return b"\x00" + cobs.encode(body) + b"\x00"


def decode_body(chunk: bytes) -> Frame | FrameFault:
    """Decode the COBS bytes found between two delimiters."""
    try:
        body = cobs.decode(chunk)
    except ProtocolError as e:
        return FrameFault(ErrorCode.BAD_FRAME, str(e))
    if len(body) < HEADER_SIZE + CRC_SIZE:
        return FrameFault(ErrorCode.BAD_FRAME, f"frame of {len(body)} bytes is shorter than the {HEADER_SIZE + CRC_SIZE}-byte minimum")
    version, ftype, seq, plen = _HEADER.unpack_from(body)
    have = len(body) - HEADER_SIZE - CRC_SIZE
    if plen != have:
        return FrameFault(ErrorCode.BAD_LENGTH, f"header says {plen} payload bytes, frame carries {have}")
    if plen > MAX_PAYLOAD:  # COBS adds one byte per 254: a payload with zeros in it can pass MAX_ENCODED's room
        return FrameFault(ErrorCode.TOO_LARGE, f"payload of {plen} bytes is over the {MAX_PAYLOAD}-byte frame limit")
    (crc,) = _CRC.unpack_from(body, len(body) - CRC_SIZE)
    actual = zlib.crc32(body[: len(body) - CRC_SIZE])
    if crc != actual:
        return FrameFault(ErrorCode.BAD_CRC, f"CRC-32 is 0x{actual:08x}, frame says 0x{crc:08x}")
    return Frame(ftype, seq, bytes(body[HEADER_SIZE : HEADER_SIZE + plen]), version)


# ------------------------------------------------------ streaming receiver


class FrameReader:
    """Turns a byte stream into frames and faults, in bounded memory.

    Bytes after the last delimiter are kept until the next one, but never more
    than MAX_ENCODED of them: a longer run (a flood of garbage, or a frame over
    the limit) is discarded as it arrives and reported once, as a TOO_LARGE
    fault, when its delimiter comes.

        >>> r = FrameReader()
        >>> r.feed(b"garbage" + encode_frame(Frame(PING, 3)))
        [FrameFault(code=<ErrorCode.BAD_FRAME: 1>, detail='COBS: group at offset 0 needs 102 bytes, only 6 left'), Frame(type=1, seq=3, payload=b'', version=2)]
    """

    def __init__(self, max_encoded: int = MAX_ENCODED) -> None:
        self._max = max_encoded
        self._buf = bytearray()
        self._dropped = 0  # bytes discarded from the current over-long chunk
        self.discarded_bytes = 0  # total over the reader's life

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for a delimiter (never above max_encoded)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | FrameFault]:
        out: list[Frame | FrameFault] = []
        start = 0
        while start < len(data):
            end = data.find(DELIMITER, start)
            piece = data[start:] if end < 0 else data[start:end]
            self._take(piece)
            if end < 0:
                break
            self._finish(out)
            start = end + 1
        return out

    def _take(self, piece: bytes) -> None:
        if self._dropped or len(self._buf) + len(piece) > self._max:
            self._dropped += len(self._buf) + len(piece)
            self.discarded_bytes += len(self._buf) + len(piece)
            self._buf.clear()
            return
        self._buf += piece

    def _finish(self, out: list[Frame | FrameFault]) -> None:
        if self._dropped:
            out.append(FrameFault(ErrorCode.TOO_LARGE, f"frame longer than {self._max} encoded bytes discarded"))
            self._dropped = 0
        elif self._buf:
            out.append(decode_body(bytes(self._buf)))
        self._buf.clear()


# ----------------------------------------------------------- reassembly


@dataclass(frozen=True)
class Message:
    """A request or response after reassembly: base type, seq, whole payload."""

    type: int
    seq: int
    payload: bytes = b""


@dataclass(frozen=True)
class MessageFault:
    """A frame that decoded but cannot be served; `seq` is the frame's own, `version` the one to answer in."""

    code: ErrorCode
    seq: int
    detail: str
    version: int = PROTOCOL_VERSION


def split_message(msg_type: int, seq: int, payload: bytes) -> bytes:
    """Wire bytes of a message: one frame, or several with FLAG_MORE set.

    >>> wire = split_message(GENERATE, 5, b"x" * 1500)
    >>> [f.type for f in FrameReader().feed(wire)] == [GENERATE | FLAG_MORE, GENERATE]
    True
    """
    if len(payload) <= MAX_PAYLOAD:
        return encode_frame(Frame(msg_type, seq, payload))
    if msg_type not in FRAGMENTABLE_TYPES:
        raise InvalidArgumentError(f"{type_name(msg_type)} payload of {len(payload)} bytes is over the {MAX_PAYLOAD}-byte frame limit")
    parts = [payload[i : i + MAX_PAYLOAD] for i in range(0, len(payload), MAX_PAYLOAD)]
    return b"".join(
        encode_frame(Frame(msg_type | (FLAG_MORE if i < len(parts) - 1 else 0), seq, part)) for i, part in enumerate(parts)
    )


class RequestAssembler:
    """Joins FLAG_MORE fragments of requests and checks version, type and seq.

    Fragments of one message must arrive back to back; any other frame in
    between abandons the partial message with a BAD_PAYLOAD fault for its seq.
    Frames of response types (0x80 and up) are dropped without a reply and
    counted in `ignored`: answering them would let two servers, or a line that
    echoes, bounce ERROR frames back and forth forever.

        >>> a = RequestAssembler()
        >>> frames = FrameReader().feed(split_message(CHAT, 9, b"y" * 1100))
        >>> [[(m.type, m.seq, len(m.payload)) for m in a.push(f)] for f in frames]
        [[], [(4, 9, 1100)]]
    """

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._max = max_message
        self._partial: tuple[int, int] | None = None  # (base type, seq)
        self._parts: list[bytes] = []
        self._size = 0
        self.ignored = 0

    def push(self, frame: Frame) -> list[Message | MessageFault]:
        out: list[Message | MessageFault] = []
        if frame.type & 0x80:
            self.ignored += 1
            return out
        more = bool(frame.type & FLAG_MORE) and (frame.type & ~FLAG_MORE) in FRAGMENTABLE_TYPES
        base = frame.type & ~FLAG_MORE if more else frame.type
        if self._partial is not None and self._partial != (base, frame.seq):
            self._abandon(out, f"interrupted by {type_name(frame.type)} seq {frame.seq}")
        if frame.version != PROTOCOL_VERSION:
            answer_in = frame.version if frame.version in ERROR_COMPATIBLE_VERSIONS else PROTOCOL_VERSION
            out.append(MessageFault(ErrorCode.BAD_VERSION, frame.seq, f"protocol version {frame.version} is not supported; this server speaks {PROTOCOL_VERSION}", answer_in))
            return out
        if base not in REQUEST_TYPES:
            out.append(MessageFault(ErrorCode.UNKNOWN_TYPE, frame.seq, f"frame type {type_name(frame.type)} is not a request"))
            return out
        if frame.seq == NO_SEQ:
            out.append(MessageFault(ErrorCode.BAD_SEQ, NO_SEQ, "seq 0 is reserved; number requests from 1"))
            return out
        self._partial = (base, frame.seq)
        self._size += len(frame.payload)
        if self._size <= self._max:
            self._parts.append(frame.payload)
        if more:
            return out
        size, payload = self._size, b"".join(self._parts)
        self._reset()
        if size > self._max:
            out.append(MessageFault(ErrorCode.TOO_LARGE, frame.seq, f"message of {size} bytes is over the {self._max}-byte limit"))
        else:
            out.append(Message(base, frame.seq, payload))
        return out

    def _abandon(self, out: list[Message | MessageFault], why: str) -> None:
        if self._partial is not None:
            out.append(MessageFault(ErrorCode.BAD_PAYLOAD, self._partial[1], f"fragmented {type_name(self._partial[0])} {why}"))
            self._reset()

    def _reset(self) -> None:
        self._partial = None
        self._parts = []
        self._size = 0
