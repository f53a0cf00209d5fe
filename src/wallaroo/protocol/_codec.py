"""Low-level codec shared by the frame and 2PC modules: integer ranges, strings, a body reader.

Everything here is private to :mod:`wallaroo.protocol`. Encoders raise :class:`FrameError` for a
value that does not fit its wire field; :class:`BodyReader` raises :class:`FrameError` for bytes
that do not fit the layout being read.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final, TypeVar

from wallaroo.errors import FrameError

__all__ = [
    "I64_MAX",
    "I64_MIN",
    "MAX_SHORT",
    "MESSAGE_BODY",
    "MESSAGE_FIXED",
    "MESSAGE_HEAD",
    "U8",
    "U16",
    "U32",
    "U32_MAX",
    "U64",
    "U64_MAX",
    "BodyReader",
    "check_int",
    "clip",
    "long_str",
    "message_error",
    "pack_messages",
    "short_bytes",
    "short_str",
]

U8: Final = struct.Struct(">B")
U16: Final = struct.Struct(">H")
U32: Final = struct.Struct(">I")
U64: Final = struct.Struct(">Q")

T = TypeVar("T")

# MESSAGE: length, type, stream id, message id, event time, key length (then key, then payload).
MESSAGE_HEAD: Final = struct.Struct(">IBQQqH")
MESSAGE_BODY: Final = struct.Struct(">QQqH")  # the same without length and type
MESSAGE_FIXED: Final = MESSAGE_BODY.size  # body bytes before the key (26)

MAX_SHORT: Final = 0xFFFF
_MESSAGE_TYPE: Final = 5
_ID_AT: Final = 13  # where a MESSAGE frame's message id starts
_TEMPLATE_MIN: Final = 16  # fewer frames than this are packed one by one
_TEMPLATE_MAX_PAYLOAD: Final = 32  # and so are larger payloads (one slice per payload byte)
U32_MAX: Final = 2**32 - 1
U64_MAX: Final = 2**64 - 1
I64_MIN: Final = -(2**63)
I64_MAX: Final = 2**63 - 1

_RANGES: Final = {
    "u8": (0, 0xFF),
    "u32": (0, U32_MAX),
    "u64": (0, U64_MAX),
    "i64": (I64_MIN, I64_MAX),
}


def clip(text: str, limit: int = 1000) -> str:
    """Shorten ``text`` to at most ``limit`` characters, so an ERROR message always fits its frame
    (a peer's own over-long strings may be quoted in it)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_int(value: int, kind: str, what: str) -> int:
    """Return ``value`` if it fits the wire integer ``kind`` ("u8", "u32", "u64" or "i64").

    Raises:
        FrameError: ``value`` is not an int (bools are ints) or lies outside the range.
    """
    low, high = _RANGES[kind]
    if not isinstance(value, int) or not low <= value <= high:
        raise FrameError(f"{what} {value!r} does not fit a {kind} (range {low}..{high})")
    return value


def message_error(
    stream_id: int, message_id: int, event_time: int, key: bytes | None, message: bytes | None
) -> FrameError:
    """Return the error naming which field of a MESSAGE that failed to pack is out of range.

    Raises:
        FrameError: the first bad field found (returned instead if only the total length is bad).
    """
    check_int(stream_id, "u64", "stream_id")
    check_int(message_id, "u64", "message_id")
    check_int(event_time, "i64", "event_time")
    short_bytes(key or b"", "MESSAGE key")
    size = len(message or b"")
    return FrameError(f"MESSAGE frame of {size} payload bytes is too long for a u32 length")


def pack_messages(
    stream_id: int, ids: Sequence[int], payloads: Sequence[bytes], event_time: int, key: bytes
) -> bytes:
    """Return whole MESSAGE frames, one per payload, the i-th with the id ``ids[i]``, all with
    ``event_time`` and ``key`` (``b""``: no key).

    Many small payloads of one size (fixed-size records) are packed from a template: one frame
    repeated, into which every byte position of the ids, then of the payloads, is written for
    all frames at once by a slice assignment with a stride of one frame. Otherwise each frame
    is packed on its own.

    Raises:
        struct.error: an id, the stream id or the event time does not fit its field, the key is
            longer than 65535 bytes or a frame longer than a u32 counts (the caller names it).
    """
    count = len(payloads)
    fixed = MESSAGE_FIXED + 1 + len(key)
    if count >= _TEMPLATE_MIN:
        size = len(payloads[0])
        if size <= _TEMPLATE_MAX_PAYLOAD and min(map(len, payloads)) == size == max(
            map(len, payloads)
        ):
            return _pack_from_template(stream_id, ids, payloads, event_time, key, size)
    pack = MESSAGE_HEAD.pack
    frames = [
        pack(fixed + len(data), _MESSAGE_TYPE, stream_id, message_id, event_time, len(key))
        + key
        + data
        for message_id, data in zip(ids, payloads, strict=True)
    ]
    return b"".join(frames)


def _pack_from_template(
    stream_id: int,
    ids: Sequence[int],
    payloads: Sequence[bytes],
    event_time: int,
    key: bytes,
    size: int,
) -> bytes:
    count = len(payloads)
    length = MESSAGE_FIXED + 1 + len(key) + size
    template = (
        MESSAGE_HEAD.pack(length, _MESSAGE_TYPE, stream_id, 0, event_time, len(key))
        + key
        + bytes(size)
    )
    frame = len(template)
    frames = bytearray(template) * count
    packed_ids = struct.pack(f">{count}Q", *ids)
    for at in range(8):
        frames[_ID_AT + at :: frame] = packed_ids[at::8]
    data = b"".join(payloads)
    start = MESSAGE_HEAD.size + len(key)
    for at in range(size):
        frames[start + at :: frame] = data[at::size]
    return bytes(frames)


def short_bytes(data: bytes, what: str) -> bytes:
    """Encode ``data`` as a short byte string: ``u16be`` length, then the bytes.

    Raises:
        FrameError: ``data`` is longer than 65535 bytes.
    """
    if len(data) > MAX_SHORT:
        raise FrameError(f"{what} is {len(data)} bytes long; a short string holds at most 65535")
    return U16.pack(len(data)) + data


def short_str(text: str, what: str) -> bytes:
    """Encode ``text`` as a short string: ``u16be`` length, then its UTF-8 bytes.

    Raises:
        FrameError: the UTF-8 form is longer than 65535 bytes or ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise FrameError(f"{what} must be a str, got {type(text).__name__}")
    return short_bytes(text.encode("utf-8"), what)


def long_str(text: str, what: str) -> bytes:
    """Encode ``text`` as ``u32be`` length + UTF-8 bytes (the RESTART address layout).

    Raises:
        FrameError: ``text`` is not a str or is longer than a u32 can count.
    """
    if not isinstance(text, str):
        raise FrameError(f"{what} must be a str, got {type(text).__name__}")
    data = text.encode("utf-8")
    check_int(len(data), "u32", f"length of {what}")
    return U32.pack(len(data)) + data


class BodyReader:
    """Reads the fields of one frame body in order, checking every length against the body's end.

    Args:
        data: the buffer holding the body (bytes, bytearray or a memoryview over either).
        start: index of the first body byte in ``data``.
        end: index one past the last body byte.
        name: the frame's name, used in error messages.
    """

    __slots__ = ("_data", "_end", "_name", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview, start: int, end: int, name: str):
        self._data = data
        self._pos = start
        self._end = end
        self._name = name

    def _take(self, size: int, what: str) -> int:
        pos = self._pos
        if pos + size > self._end:
            raise FrameError(
                f"truncated {self._name} body: {what} needs {size} bytes, {self._end - pos} left"
            )
        self._pos = pos + size
        return pos

    def u8(self, what: str) -> int:
        """Read one unsigned byte."""
        return int(U8.unpack_from(self._data, self._take(1, what))[0])

    def boolean(self, what: str) -> bool:
        """Read a ``u8`` that must be 0 or 1."""
        value = self.u8(what)
        if value > 1:
            raise FrameError(f"{self._name} {what} must be 0 or 1, got {value}")
        return value == 1

    def u32(self, what: str) -> int:
        """Read a big-endian ``u32``."""
        return int(U32.unpack_from(self._data, self._take(4, what))[0])

    def u64(self, what: str) -> int:
        """Read a big-endian ``u64``."""
        return int(U64.unpack_from(self._data, self._take(8, what))[0])

    def count(self, item_size: int, what: str) -> int:
        """Read a ``u32`` item count and check that ``count * item_size`` bytes could still follow.

        The check stops a forged count from making the caller loop (or allocate) far past the body.
        """
        n = self.u32(what)
        if n * item_size > self._end - self._pos:
            raise FrameError(
                f"truncated {self._name} body: {what} is {n} but only "
                f"{self._end - self._pos} bytes follow"
            )
        return n

    def text(self, size: int, what: str) -> str:
        """Read ``size`` bytes of UTF-8 text."""
        pos = self._take(size, what)
        try:
            return str(self._data[pos : pos + size], "utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError(f"{self._name} {what} is not valid UTF-8: {exc.reason}") from exc

    def short_str(self, what: str) -> str:
        """Read a short string (``u16be`` length + UTF-8)."""
        size = int(U16.unpack_from(self._data, self._take(2, f"length of {what}"))[0])
        return self.text(size, what)

    def done(self, value: T) -> T:
        """Check that the whole body was read, then return ``value`` (the decoded frame).

        Raises:
            FrameError: bytes are left over.
        """
        if self._pos != self._end:
            raise FrameError(f"{self._end - self._pos} trailing bytes after the {self._name} body")
        return value
