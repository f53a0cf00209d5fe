"""The two-phase-commit (2PC) frames of a connector sink connection.

A 2PC frame is ``u8 tag`` + body with no length prefix; it travels as the payload of a MESSAGE on
the control stream 0 (application output uses stream 1). Tags 201-206:

* LIST_UNCOMMITTED (worker to sink): which transactions passed phase 1 but not phase 2?
* REPLY_UNCOMMITTED (sink to worker): those transaction ids.
* PHASE1 (worker to sink): can you commit these byte ranges ("where list")?
* TWOPC_REPLY (sink to worker): the sink's vote.
* PHASE2 (worker to sink): the outcome, commit or abort.
* WORKERS_LEFT (worker to sink): these workers left the cluster; their output is finished.

The original Python codec could not encode PHASE1 and decoded REPLY_UNCOMMITTED as an ACK; this
module follows the worker side's layout instead, pinned by the protocol test vectors.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Final, Self, TypeAlias

from wallaroo.errors import FrameError
from wallaroo.protocol._codec import U8, U32, U64, BodyReader, check_int, short_str
from wallaroo.protocol.frames import Message, encode_message

__all__ = [
    "CONTROL_STREAM_ID",
    "ListUncommitted",
    "ReplyUncommitted",
    "TwoPCFrame",
    "TwoPCPhase1",
    "TwoPCPhase2",
    "TwoPCReply",
    "TwoPCTag",
    "WorkersLeft",
    "decode_twopc",
    "unwrap_twopc",
    "wrap_twopc",
]

CONTROL_STREAM_ID: Final = 0
"""The stream that carries 2PC frames on a sink connection."""

_WHERE: Final = struct.Struct(">QQQ")


class TwoPCTag(IntEnum):
    """The ``u8`` tag that starts a 2PC frame."""

    LIST_UNCOMMITTED = 201
    REPLY_UNCOMMITTED = 202
    PHASE1 = 203
    TWOPC_REPLY = 204
    PHASE2 = 205
    WORKERS_LEFT = 206


def _names(names: tuple[str, ...], what: str) -> bytes:
    check_int(len(names), "u32", f"number of {what}s")
    return U32.pack(len(names)) + b"".join(short_str(name, what) for name in names)


def _read_names(reader: BodyReader, what: str) -> tuple[str, ...]:
    return tuple(reader.short_str(what) for _ in range(reader.count(2, f"number of {what}s")))


class _TwoPCBase:
    """Shared decoding of a body (the bytes after the tag)."""

    __slots__ = ()
    TAG: ClassVar[TwoPCTag]

    @classmethod
    def decode_body(cls, body: bytes | memoryview) -> Self:
        """Decode the bytes after the tag.

        Raises:
            FrameError: the body is truncated, has trailing bytes or holds a bad string or boolean.
        """
        reader = BodyReader(body, 0, len(body), cls.TAG.name)
        return reader.done(cls._read(reader))

    @classmethod
    def _read(cls, reader: BodyReader) -> Self:  # noqa: ARG003 # pragma: no cover - abstract
        raise TypeError(f"{cls.__name__} must define _read()")


@dataclass(frozen=True, slots=True)
class ListUncommitted(_TwoPCBase):
    """LIST_UNCOMMITTED (201): asks for the uncommitted transactions; ``rtag`` is echoed back."""

    TAG: ClassVar[TwoPCTag] = TwoPCTag.LIST_UNCOMMITTED
    rtag: int

    def encode(self) -> bytes:
        """Return the inner bytes. Raises FrameError if ``rtag`` is not a u64."""
        return U8.pack(self.TAG) + U64.pack(check_int(self.rtag, "u64", "rtag"))

    @classmethod
    def _read(cls, reader: BodyReader) -> Self:
        return cls(reader.u64("rtag"))


@dataclass(frozen=True, slots=True)
class ReplyUncommitted(_TwoPCBase):
    """REPLY_UNCOMMITTED (202): the ids of transactions that passed phase 1 but not phase 2."""

    TAG: ClassVar[TwoPCTag] = TwoPCTag.REPLY_UNCOMMITTED
    rtag: int
    txn_ids: tuple[str, ...]

    def encode(self) -> bytes:
        """Return the inner bytes. Raises FrameError for a bad ``rtag`` or a too long txn id."""
        rtag = U64.pack(check_int(self.rtag, "u64", "rtag"))
        return U8.pack(self.TAG) + rtag + _names(self.txn_ids, "txn id")

    @classmethod
    def _read(cls, reader: BodyReader) -> Self:
        return cls(reader.u64("rtag"), _read_names(reader, "txn id"))


@dataclass(frozen=True, slots=True)
class TwoPCPhase1(_TwoPCBase):
    """PHASE1 (203): vote on committing ``where_list``: ``(stream_id, start_por, end_por)``
    triples, byte offsets of the sink's output, start inclusive and end exclusive."""

    TAG: ClassVar[TwoPCTag] = TwoPCTag.PHASE1
    txn_id: str
    where_list: tuple[tuple[int, int, int], ...]

    def encode(self) -> bytes:
        """Return the inner bytes. Raises FrameError for a long txn id or a non-u64 number."""
        check_int(len(self.where_list), "u32", "where list length")
        parts = [
            U8.pack(self.TAG),
            short_str(self.txn_id, "txn id"),
            U32.pack(len(self.where_list)),
        ]
        for stream_id, start, end in self.where_list:
            check_int(stream_id, "u64", "where list stream_id")
            check_int(start, "u64", "where list start")
            check_int(end, "u64", "where list end")
            parts.append(_WHERE.pack(stream_id, start, end))
        return b"".join(parts)

    @classmethod
    def _read(cls, reader: BodyReader) -> Self:
        txn_id = reader.short_str("txn id")
        n = reader.count(24, "where list length")
        where = tuple(
            (reader.u64("stream_id"), reader.u64("start"), reader.u64("end")) for _ in range(n)
        )
        return cls(txn_id, where)


@dataclass(frozen=True, slots=True)
class TwoPCReply(_TwoPCBase):
    """TWOPC_REPLY (204): the sink's phase-1 vote, True to commit."""

    TAG: ClassVar[TwoPCTag] = TwoPCTag.TWOPC_REPLY
    txn_id: str
    commit: bool

    def encode(self) -> bytes:
        """Return the inner bytes. Raises FrameError if the txn id is too long."""
        return (
            U8.pack(self.TAG) + short_str(self.txn_id, "txn id") + U8.pack(1 if self.commit else 0)
        )

    @classmethod
    def _read(cls, reader: BodyReader) -> Self:
        return cls(reader.short_str("txn id"), reader.boolean("commit"))


@dataclass(frozen=True, slots=True)
class TwoPCPhase2(_TwoPCBase):
    """PHASE2 (205): the outcome of the transaction, True to commit, False to abort."""

    TAG: ClassVar[TwoPCTag] = TwoPCTag.PHASE2
    txn_id: str
    commit: bool

    def encode(self) -> bytes:
        """Return the inner bytes. Raises FrameError if the txn id is too long."""
        return (
            U8.pack(self.TAG) + short_str(self.txn_id, "txn id") + U8.pack(1 if self.commit else 0)
        )

    @classmethod
    def _read(cls, reader: BodyReader) -> Self:
        return cls(reader.short_str("txn id"), reader.boolean("commit"))


@dataclass(frozen=True, slots=True)
class WorkersLeft(_TwoPCBase):
    """WORKERS_LEFT (206): these workers left the cluster; their output streams are finished."""

    TAG: ClassVar[TwoPCTag] = TwoPCTag.WORKERS_LEFT
    rtag: int
    workers: tuple[str, ...]

    def encode(self) -> bytes:
        """Return the inner bytes. Raises FrameError for a bad ``rtag`` or a too long name."""
        rtag = U64.pack(check_int(self.rtag, "u64", "rtag"))
        return U8.pack(self.TAG) + rtag + _names(self.workers, "worker name")

    @classmethod
    def _read(cls, reader: BodyReader) -> Self:
        return cls(reader.u64("rtag"), _read_names(reader, "worker name"))


TwoPCFrame: TypeAlias = (
    ListUncommitted | ReplyUncommitted | TwoPCPhase1 | TwoPCReply | TwoPCPhase2 | WorkersLeft
)
"""Any 2PC frame."""

_TwoPCClass: TypeAlias = (
    type[ListUncommitted]
    | type[ReplyUncommitted]
    | type[TwoPCPhase1]
    | type[TwoPCReply]
    | type[TwoPCPhase2]
    | type[WorkersLeft]
)
_CLASSES: Final[dict[int, _TwoPCClass]] = {
    cls.TAG: cls
    for cls in (
        ListUncommitted,
        ReplyUncommitted,
        TwoPCPhase1,
        TwoPCReply,
        TwoPCPhase2,
        WorkersLeft,
    )
}


def decode_twopc(inner: bytes | memoryview) -> TwoPCFrame:
    """Decode a whole 2PC frame (tag + body).

    Raises:
        FrameError: ``inner`` is empty, its tag unknown, or its body malformed.
    """
    if not inner:
        raise FrameError("empty 2PC frame: expected a tag byte (201-206)")
    cls = _CLASSES.get(inner[0])
    if cls is None:
        raise FrameError(f"unknown 2PC frame tag {inner[0]} (known: 201-206)")
    reader = BodyReader(inner, 1, len(inner), cls.TAG.name)
    return reader.done(cls._read(reader))


def wrap_twopc(frame: TwoPCFrame, message_id: int = 0) -> bytes:
    """Return a whole MESSAGE frame on the control stream carrying ``frame``.

    Raises:
        FrameError: a field of ``frame`` or ``message_id`` is out of range.
    """
    return encode_message(CONTROL_STREAM_ID, message_id, 0, None, frame.encode())


def unwrap_twopc(message: Message) -> TwoPCFrame:
    """Return the 2PC frame a control-stream MESSAGE carries.

    Raises:
        FrameError: the message is not on stream 0, has no payload, or the payload is malformed.
    """
    if message.stream_id != CONTROL_STREAM_ID:
        raise FrameError(
            f"a 2PC frame travels on stream {CONTROL_STREAM_ID}, not on stream {message.stream_id}"
        )
    if message.message is None:
        raise FrameError("empty 2PC frame: expected a tag byte (201-206)")
    return decode_twopc(message.message)
