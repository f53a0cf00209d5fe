"""Frames 0-8 of the connector wire protocol v3: value types, encoding and decoding.

Every frame, in both directions, is ``u32be length`` (of what follows) + ``u8 frame type`` + body.
All integers are big-endian; a "short string" is ``u16be length`` + UTF-8 bytes. Each frame class
is a frozen value: ``encode()`` gives the whole frame and ``decode_body(body)`` reads the bytes
after the type byte. :func:`decode_frame` reads one whole frame;
:class:`~wallaroo.protocol.reader.FrameReader` reads a byte stream incrementally.

Decoding is strict, so that decoding and re-encoding gives back the same bytes: booleans must be 0
or 1, strings valid UTF-8, and a body must be used up exactly. Every defect raises
:class:`~wallaroo.errors.FrameError` naming what was wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Final, Self, TypeAlias

from wallaroo.errors import FrameError
from wallaroo.protocol._codec import (
    MESSAGE_BODY,
    MESSAGE_FIXED,
    MESSAGE_HEAD,
    U32,
    BodyReader,
    check_int,
    long_str,
    message_error,
    short_str,
)

__all__ = [
    "MAX_FRAME_SIZE",
    "NONE_SEEN",
    "SINK_VERSION",
    "SOURCE_VERSION",
    "Ack",
    "EosMessage",
    "Error",
    "Frame",
    "FrameType",
    "Hello",
    "Message",
    "Notify",
    "NotifyAck",
    "Ok",
    "Restart",
    "decode_frame",
    "encode_frame",
    "encode_message",
]

NONE_SEEN: Final = 2**64 - 1
"""The point of reference meaning "nothing seen yet": a stream resumes from its beginning."""

MAX_FRAME_SIZE: Final = 16 * 1024 * 1024
"""Default largest frame (type byte + body) a reader accepts."""

SOURCE_VERSION: Final = "0.0.1"
"""The HELLO version of a connector source connection."""

SINK_VERSION: Final = "v0.0.1"
"""The HELLO version the worker sends to a connector sink (the original's spelling, kept)."""


class FrameType(IntEnum):
    """The ``u8`` frame type that follows the length prefix."""

    HELLO = 0
    OK = 1
    ERROR = 2
    NOTIFY = 3
    NOTIFY_ACK = 4
    MESSAGE = 5
    ACK = 6
    RESTART = 7
    EOS_MESSAGE = 8


_HEADER: Final = struct.Struct(">IB")
_PAIR: Final = struct.Struct(">QQ")
_NOTIFY_ACK: Final = struct.Struct(">BQQ")
_U64_PACK: Final = struct.Struct(">Q").pack


def _frame(frame_type: FrameType, body: bytes) -> bytes:
    return _HEADER.pack(len(body) + 1, frame_type) + body


class _BodyFrame:
    """Shared decoding of the frames other than MESSAGE (which has its own fast path)."""

    __slots__ = ()
    TYPE: ClassVar[FrameType]

    @classmethod
    def decode_body(cls, body: bytes | memoryview) -> Self:
        """Decode the bytes after the type byte.

        Raises:
            FrameError: the body is truncated, has trailing bytes or holds a bad string or boolean.
        """
        reader = BodyReader(body, 0, len(body), cls.TYPE.name)
        return reader.done(cls._read(reader))

    @classmethod
    def _read(cls, reader: BodyReader) -> Self:  # noqa: ARG003 # pragma: no cover - abstract
        raise TypeError(f"{cls.__name__} must define _read()")


@dataclass(frozen=True, slots=True)
class Hello(_BodyFrame):
    """HELLO (0), connector to worker (worker to sink on a sink connection); opens a session."""

    TYPE: ClassVar[FrameType] = FrameType.HELLO
    version: str
    cookie: str
    program_name: str
    instance_name: str

    def encode(self) -> bytes:
        """Return the whole frame. Raises FrameError if a string exceeds 65535 UTF-8 bytes."""
        return _frame(
            FrameType.HELLO,
            short_str(self.version, "HELLO version")
            + short_str(self.cookie, "HELLO cookie")
            + short_str(self.program_name, "HELLO program_name")
            + short_str(self.instance_name, "HELLO instance_name"),
        )

    @classmethod
    def _read(cls, r: BodyReader) -> Self:
        return cls(
            r.short_str("version"),
            r.short_str("cookie"),
            r.short_str("program_name"),
            r.short_str("instance_name"),
        )


@dataclass(frozen=True, slots=True)
class Ok(_BodyFrame):
    """OK (1): the handshake succeeded; grants the first credits."""

    TYPE: ClassVar[FrameType] = FrameType.OK
    initial_credits: int

    def encode(self) -> bytes:
        """Return the whole frame. Raises FrameError if the credits do not fit a u32."""
        return _frame(FrameType.OK, U32.pack(check_int(self.initial_credits, "u32", "credits")))

    @classmethod
    def _read(cls, r: BodyReader) -> Self:
        return cls(r.u32("initial_credits"))


@dataclass(frozen=True, slots=True)
class Error(_BodyFrame):
    """ERROR (2), either direction: the sender gives up; the receiver closes the connection."""

    TYPE: ClassVar[FrameType] = FrameType.ERROR
    message: str

    def encode(self) -> bytes:
        """Return the whole frame. Raises FrameError if the message exceeds 65535 UTF-8 bytes."""
        return _frame(FrameType.ERROR, short_str(self.message, "ERROR message"))

    @classmethod
    def _read(cls, r: BodyReader) -> Self:
        return cls(r.short_str("message"))


@dataclass(frozen=True, slots=True)
class Notify(_BodyFrame):
    """NOTIFY (3): asks to open ``stream_id``; ``point_of_ref`` is advisory (the ack decides)."""

    TYPE: ClassVar[FrameType] = FrameType.NOTIFY
    stream_id: int
    stream_name: str
    point_of_ref: int

    def encode(self) -> bytes:
        """Return the whole frame. Raises FrameError for an out-of-range id or a long name."""
        return _frame(
            FrameType.NOTIFY,
            _U64_PACK(check_int(self.stream_id, "u64", "stream_id"))
            + short_str(self.stream_name, "NOTIFY stream_name")
            + _U64_PACK(check_int(self.point_of_ref, "u64", "point_of_ref")),
        )

    @classmethod
    def _read(cls, r: BodyReader) -> Self:
        return cls(r.u64("stream_id"), r.short_str("stream_name"), r.u64("point_of_ref"))


@dataclass(frozen=True, slots=True)
class NotifyAck(_BodyFrame):
    """NOTIFY_ACK (4): whether the stream is now open, and the point of reference to resume from.

    ``point_of_ref`` is authoritative: :data:`NONE_SEEN` means "start from the beginning".
    """

    TYPE: ClassVar[FrameType] = FrameType.NOTIFY_ACK
    success: bool
    stream_id: int
    point_of_ref: int

    def encode(self) -> bytes:
        """Return the whole frame. Raises FrameError for an out-of-range integer."""
        body = _NOTIFY_ACK.pack(
            1 if self.success else 0,
            check_int(self.stream_id, "u64", "stream_id"),
            check_int(self.point_of_ref, "u64", "point_of_ref"),
        )
        return _frame(FrameType.NOTIFY_ACK, body)

    @classmethod
    def _read(cls, r: BodyReader) -> Self:
        return cls(r.boolean("success"), r.u64("stream_id"), r.u64("point_of_ref"))


@dataclass(frozen=True, slots=True)
class Message:
    """MESSAGE (5): one message of an open stream.

    An empty key on the wire is ``key=None``; an empty payload is ``message=None`` (nothing to
    decode, but the message id still counts as seen).
    """

    TYPE: ClassVar[FrameType] = FrameType.MESSAGE
    stream_id: int
    message_id: int
    event_time: int
    key: bytes | None
    message: bytes | None

    def encode(self) -> bytes:
        """Return the whole frame.

        Raises:
            FrameError: an id is not a u64, the event time not an i64, or the key is longer than
                65535 bytes.
        """
        return encode_message(
            self.stream_id, self.message_id, self.event_time, self.key, self.message
        )

    @classmethod
    def decode_body(cls, body: bytes | memoryview) -> Message:
        """Decode the bytes after the type byte. Raises FrameError if malformed."""
        return _decode_message(body, 0, len(body))


@dataclass(frozen=True, slots=True)
class Ack(_BodyFrame):
    """ACK (6), worker to connector: new credits, and ``(stream_id, point_of_ref)`` pairs whose
    messages up to and including that point of reference the worker has durably handled."""

    TYPE: ClassVar[FrameType] = FrameType.ACK
    credits: int
    acks: tuple[tuple[int, int], ...]

    def encode(self) -> bytes:
        """Return the whole frame. Raises FrameError for an out-of-range integer."""
        parts = [U32.pack(check_int(self.credits, "u32", "credits")), U32.pack(len(self.acks))]
        for stream_id, point_of_ref in self.acks:
            check_int(stream_id, "u64", "acked stream_id")
            check_int(point_of_ref, "u64", "acked point_of_ref")
            parts.append(_PAIR.pack(stream_id, point_of_ref))
        return _frame(FrameType.ACK, b"".join(parts))

    @classmethod
    def _read(cls, r: BodyReader) -> Self:
        credits = r.u32("credits")
        n = r.count(16, "ack count")
        return cls(credits, tuple((r.u64("stream_id"), r.u64("point_of_ref")) for _ in range(n)))


@dataclass(frozen=True, slots=True)
class Restart(_BodyFrame):
    """RESTART (7), worker to connector: reconnect (to ``"host:port"``, or the same if empty),
    re-NOTIFY every stream and resume from each NOTIFY_ACK point of reference."""

    TYPE: ClassVar[FrameType] = FrameType.RESTART
    address: str

    def encode(self) -> bytes:
        """Return the whole frame (the address has a ``u32`` length, unlike short strings)."""
        return _frame(FrameType.RESTART, long_str(self.address, "RESTART address"))

    @classmethod
    def _read(cls, r: BodyReader) -> Self:
        return cls(r.text(r.u32("address length"), "address"))


@dataclass(frozen=True, slots=True)
class EosMessage(_BodyFrame):
    """EOS_MESSAGE (8), connector to worker: the stream ends; it may be re-opened by NOTIFY."""

    TYPE: ClassVar[FrameType] = FrameType.EOS_MESSAGE
    stream_id: int

    def encode(self) -> bytes:
        """Return the whole frame. Raises FrameError if the id is not a u64."""
        return _frame(
            FrameType.EOS_MESSAGE, _U64_PACK(check_int(self.stream_id, "u64", "stream_id"))
        )

    @classmethod
    def _read(cls, r: BodyReader) -> Self:
        return cls(r.u64("stream_id"))


Frame: TypeAlias = Hello | Ok | Error | Notify | NotifyAck | Message | Ack | Restart | EosMessage
"""Any frame of the protocol."""

_BodyClass: TypeAlias = (
    type[Hello]
    | type[Ok]
    | type[Error]
    | type[Notify]
    | type[NotifyAck]
    | type[Ack]
    | type[Restart]
    | type[EosMessage]
)
_CLASSES: Final[dict[int, _BodyClass]] = {
    cls.TYPE: cls for cls in (Hello, Ok, Error, Notify, NotifyAck, Ack, Restart, EosMessage)
}


def encode_message(
    stream_id: int, message_id: int, event_time: int, key: bytes | None, message: bytes | None
) -> bytes:
    """Return a whole MESSAGE frame without building a :class:`Message` first.

    Raises:
        FrameError: an id is not a u64, the event time not an i64, or the key is longer than 65535
            bytes (or the frame longer than a u32 can count).
    """
    key = key or b""
    message = message or b""
    try:
        head = MESSAGE_HEAD.pack(
            MESSAGE_FIXED + 1 + len(key) + len(message),
            FrameType.MESSAGE,
            stream_id,
            message_id,
            event_time,
            len(key),
        )
    except struct.error as exc:
        raise message_error(stream_id, message_id, event_time, key, message) from exc
    return head + key + message


# A frozen dataclass's __init__ sets each field through object.__setattr__; setting the slots
# through their descriptors builds the same object in about half the time. MESSAGE decoding is
# the hot path, so it uses this; the result is indistinguishable from Message(...).
_SET_STREAM_ID, _SET_MESSAGE_ID, _SET_EVENT_TIME, _SET_KEY, _SET_MESSAGE = (
    Message.__dict__[name].__set__
    for name in ("stream_id", "message_id", "event_time", "key", "message")
)
_NEW = object.__new__


def _new_message(
    stream_id: int, message_id: int, event_time: int, key: bytes | None, message: bytes | None
) -> Message:
    new = _NEW(Message)
    _SET_STREAM_ID(new, stream_id)
    _SET_MESSAGE_ID(new, message_id)
    _SET_EVENT_TIME(new, event_time)
    _SET_KEY(new, key)
    _SET_MESSAGE(new, message)
    return new


def encode_frame(frame: Frame) -> bytes:
    """Return the whole frame for ``frame`` (the same as ``frame.encode()``).

    Raises:
        FrameError: a field does not fit its wire layout.
    """
    return frame.encode()


def _decode_message(data: bytes | bytearray | memoryview, start: int, end: int) -> Message:
    if end - start < MESSAGE_FIXED:
        raise FrameError(
            f"truncated MESSAGE body: {end - start} bytes, at least {MESSAGE_FIXED} needed"
        )
    stream_id, message_id, event_time, key_len = MESSAGE_BODY.unpack_from(data, start)
    key_end = start + MESSAGE_FIXED + key_len
    if key_end > end:
        raise FrameError(
            f"truncated MESSAGE body: key of {key_len} bytes, {end - start - MESSAGE_FIXED} left"
        )
    return _new_message(
        stream_id,
        message_id,
        event_time,
        bytes(data[start + MESSAGE_FIXED : key_end]) if key_len else None,
        bytes(data[key_end:end]) if key_end < end else None,
    )


def _decode_at(
    data: bytes | bytearray | memoryview, frame_type: int, start: int, end: int
) -> Frame:
    """Decode the body ``data[start:end]`` of a frame of type ``frame_type``."""
    if frame_type == FrameType.MESSAGE:
        return _decode_message(data, start, end)
    cls = _CLASSES.get(frame_type)
    if cls is None:
        raise FrameError(f"unknown frame type {frame_type} (known: 0-8)")
    reader = BodyReader(data, start, end, cls.TYPE.name)
    return reader.done(cls._read(reader))


def decode_frame(frame: bytes | bytearray | memoryview) -> Frame:
    """Decode exactly one whole frame, length prefix included.

    Raises:
        FrameError: the length prefix is missing, zero or disagrees with the number of bytes
            given (truncated or trailing bytes), the type is unknown, or the body is malformed.
    """
    size = len(frame)
    if size < 5:
        raise FrameError(f"truncated frame: {size} bytes, a frame has at least 5")
    length, frame_type = _HEADER.unpack_from(frame, 0)
    if length < 1:
        raise FrameError("bad frame length 0: a frame holds at least its type byte")
    if length + 4 > size:
        raise FrameError(
            f"truncated frame: the length prefix says {length} bytes, {size - 4} given"
        )
    if length + 4 < size:
        raise FrameError(f"{size - 4 - length} trailing bytes after a frame of length {length}")
    return _decode_at(frame, frame_type, 5, size)
