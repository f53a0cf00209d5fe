"""Incremental parsers of byte streams: feed them what the socket gave, get whole frames.

:class:`FrameReader` reads the connector protocol; :class:`LengthPrefixedReader` reads the
length-prefixed payloads of framed TCP sources.

MESSAGE frames are the hot path (hundreds of thousands a second). :meth:`FrameReader.feed_runs`
gathers consecutive MESSAGEs of one stream into a :class:`MessageRun`: parallel lists of ids,
event times, keys and payloads, filled by one loop that reads each header with a single
precompiled :class:`struct.Struct` and slices key and payload straight out of the received
bytes. No object is made per MESSAGE besides its key and payload bytes (and its id and time).

Fixed-size records (every MESSAGE of a stretch as long as the one before, with a key as long)
take a faster path: one byte-strided comparison per header field shows that the frames share
their length, type, stream and key length, and :func:`struct.iter_unpack` then reads the ids,
times, keys and payloads of the whole stretch in C.

:meth:`FrameReader.feed` gives the same frames with a :class:`~wallaroo.protocol.frames.Message`
per MESSAGE, for callers that prefer objects to speed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from itertools import chain, repeat
from operator import itemgetter
from typing import ClassVar, Final, TypeAlias

from wallaroo.errors import FrameError
from wallaroo.protocol._codec import MESSAGE_FIXED, MESSAGE_HEAD, U32
from wallaroo.protocol.frames import (
    MAX_FRAME_SIZE,
    Frame,
    FrameType,
    Message,
    _decode_at,
    _new_message,
)

__all__ = ["FrameReader", "HeaderReader", "LengthPrefixedReader", "MessageRun", "RunItem"]

_MESSAGE: Final = int(FrameType.MESSAGE)
_HEAD_SIZE: Final = MESSAGE_HEAD.size  # a whole MESSAGE frame up to its key (31 bytes)
# Header bytes that frames of one stretch of fixed-size records share: length, type and stream
# id (0-12), key length (29-30); the message id (13-20) and event time (21-28) vary.
_SHARED_MESSAGE_BYTES: Final = (*range(13), 29, 30)
_ID_AT: Final = 13  # the message id; the event time follows it
_STRETCH_MIN: Final = 16  # fewer frames than this are not worth the strided checks
_STRETCH_MAX: Final = 1 << 16


class MessageRun:
    """Consecutive MESSAGE frames of one stream, as four parallel lists (one entry a frame).

    An empty key on the wire is None in ``keys``; an empty payload is None in ``payloads``,
    as in :class:`~wallaroo.protocol.frames.Message`. Ids are as received: neither checked for
    order nor de-duplicated. The reader appends to the lists of the run it is filling; once
    returned, a run belongs to the caller.
    """

    __slots__ = ("event_times", "keys", "message_ids", "payloads", "stream_id")
    TYPE: ClassVar[FrameType] = FrameType.MESSAGE

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.message_ids: list[int] = []
        self.event_times: list[int] = []
        self.keys: list[bytes | None] = []
        self.payloads: list[bytes | None] = []

    def __len__(self) -> int:
        return len(self.message_ids)

    def __repr__(self) -> str:
        return f"MessageRun(stream_id={self.stream_id}, messages={len(self)})"

    def messages(self) -> list[Message]:
        """The run as :class:`~wallaroo.protocol.frames.Message` objects, in order."""
        return list(
            map(
                _new_message,
                repeat(self.stream_id),
                self.message_ids,
                self.event_times,
                self.keys,
                self.payloads,
            )
        )


RunItem: TypeAlias = Frame | MessageRun
"""What :meth:`FrameReader.feed_runs` returns: a MESSAGE run, or any other frame."""


class _StreamReader:
    """What both readers keep between calls: the start of an incomplete frame, how many bytes
    it must reach before parsing can make progress, and the error that stopped the stream."""

    __slots__ = ("_buffer", "_error", "_needed")

    def __init__(self, needed: int) -> None:
        self._buffer = bytearray()
        self._needed = needed
        self._error: FrameError | None = None

    def _joined(self, data: bytes) -> bytes | None:
        """``data`` after what is buffered, as one ``bytes`` (the buffer emptied: payloads are
        then sliced out of it as bytes), or None while fewer than ``_needed`` bytes are there.

        Raises:
            FrameError: an earlier call stopped the stream.
        """
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if not buffer:
            return data if type(data) is bytes else bytes(data)
        buffer += data
        if len(buffer) < self._needed:
            return None
        joined = bytes(buffer)
        buffer.clear()
        return joined

    def _keep(self, source: bytes, consumed: int) -> None:
        """Buffer what follows the last complete frame of ``source``."""
        if consumed < len(source):
            self._buffer += memoryview(source)[consumed:]

    @property
    def pending(self) -> int:
        """The number of bytes buffered: the start of a frame not yet complete."""
        return len(self._buffer)

    @property
    def error(self) -> FrameError | None:
        """The error that stopped this reader, or None while the stream is well formed."""
        return self._error


class FrameReader(_StreamReader):
    """Splits a byte stream into frames, keeping a partial frame between calls.

    Args:
        max_frame_size: the largest length prefix accepted (type byte + body). A larger one is
            refused as soon as its four bytes arrive, before any of the body is buffered.

    Errors are sticky: after a malformed frame the stream cannot be resynchronised, so the reader
    keeps the :class:`FrameError` in :attr:`error` and raises it from every later call.
    """

    __slots__ = ("_max_frame_size",)

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if max_frame_size < 1:
            raise ValueError(f"max_frame_size must be at least 1, got {max_frame_size}")
        super().__init__(4)  # a frame's length prefix
        self._max_frame_size = max_frame_size

    def feed(self, data: bytes) -> list[Frame]:
        """Add ``data`` and return every frame it completes, in order (possibly none).

        Each MESSAGE becomes a :class:`~wallaroo.protocol.frames.Message`; otherwise the same
        as :meth:`feed_runs`, errors included.
        """
        frames: list[Frame] = []
        for item in self.feed_runs(data):
            if isinstance(item, MessageRun):
                frames.extend(item.messages())
            else:
                frames.append(item)
        return frames

    def feed_runs(self, data: bytes) -> list[RunItem]:
        """Add ``data`` and return every frame it completes, in order (possibly none), with
        each maximal sequence of consecutive MESSAGEs of one stream as one :class:`MessageRun`.

        Frames that precede a malformed one are never lost: if some were decoded by this call they
        are returned, and the error (kept in :attr:`error`) is raised by the next call instead.

        Raises:
            FrameError: a length prefix is 0 or beyond ``max_frame_size``, a type is unknown or a
                body is malformed (and no frame came before it in this call), or an earlier call
                stopped at such a frame.
        """
        source = self._joined(data)
        if source is None:
            return []
        items: list[RunItem] = []
        try:
            consumed = self._parse(source, items)
        except FrameError as exc:
            self._error = exc
            if items:
                return items
            raise
        self._keep(source, consumed)
        return items

    def _parse(self, source: bytes, items: list[RunItem]) -> int:
        """Append the complete frames at the start of ``source`` to ``items``; return their size.

        Also sets ``_needed``, the buffer size at which the next frame may be complete.
        """
        size = len(source)
        pos = 0
        max_frame_size = self._max_frame_size
        unpack_head = MESSAGE_HEAD.unpack_from
        unpack_length = U32.unpack_from
        head_size, message_fixed, message_type = _HEAD_SIZE, MESSAGE_FIXED, _MESSAGE
        run: MessageRun | None = None
        stretches = True  # False once a run did not start a stretch of fixed-size records
        while size - pos >= 4:
            if size - pos >= head_size:
                # Read as a MESSAGE header; the fields after the type mean nothing for others.
                length, frame_type, stream_id, message_id, event_time, key_len = unpack_head(
                    source, pos
                )
            else:  # too few bytes left for a whole MESSAGE: a small frame or a partial one
                length, frame_type = unpack_length(source, pos)[0], -1
            if length > max_frame_size or length < 1:
                raise _bad_length(length, max_frame_size)
            end = pos + 4 + length
            if end > size:
                self._needed = end - pos
                return pos
            if frame_type != message_type:
                items.append(_decode_at(source, source[pos + 4], pos + 5, end))
                run = None
                pos = end
                continue
            if length <= message_fixed:
                raise FrameError(f"truncated MESSAGE body: {length - 1} bytes, at least 26")
            key_end = pos + head_size + key_len
            if key_end > end:
                raise FrameError(f"truncated MESSAGE body: key of {key_len} bytes overruns it")
            if run is None or run.stream_id != stream_id:
                run = MessageRun(stream_id)
                items.append(run)
                add_id = run.message_ids.append
                add_time = run.event_times.append
                add_key = run.keys.append
                add_payload = run.payloads.append
            if stretches and size - pos >= _STRETCH_MIN * (length + 4):
                count = _stretch(source, pos, length + 4, _SHARED_MESSAGE_BYTES)
                if count:
                    pos = _add_stretch(run, source, pos, count, length + 4, key_len)
                    continue
                stretches = False
            add_id(message_id)
            add_time(event_time)
            add_key(source[pos + head_size : key_end] if key_len else None)
            add_payload(source[key_end:end] if key_end < end else None)
            pos = end
        self._needed = 4
        return pos


def _stretch(source: bytes, pos: int, frame_size: int, shared: Sequence[int]) -> int:
    """How many frames of ``frame_size`` bytes from ``pos`` on have the same byte at each
    offset of ``shared`` (a power-of-two share of those that fit, at least
    :data:`_STRETCH_MIN`), or 0."""
    count = min((len(source) - pos) // frame_size, _STRETCH_MAX)
    while count >= _STRETCH_MIN:
        stop = pos + count * frame_size
        if all(
            source[pos + at : stop : frame_size] == source[pos + at : pos + at + 1] * count
            for at in shared
        ):
            return count
        count //= 2
    return 0


def _add_stretch(
    run: MessageRun, source: bytes, pos: int, count: int, frame_size: int, key_len: int
) -> int:
    """Append ``count`` MESSAGEs of one stretch to ``run``; return the position after them.

    The first of them was checked like any frame, and the others share its length and key
    length, so they are well formed too.
    """
    stop = pos + count * frame_size
    region = source[pos:stop]
    run.message_ids += _column(region, frame_size, _ID_AT, "Q")
    run.event_times += _column(region, frame_size, _ID_AT + 8, "q")
    payload_len = frame_size - _HEAD_SIZE - key_len
    fields = struct.iter_unpack(f">{_HEAD_SIZE}x{key_len}s{payload_len}s", region)
    if key_len:
        keys, payloads = zip(*fields, strict=True)
        run.keys += keys
    else:
        payloads = tuple(map(itemgetter(1), fields))
        run.keys += repeat(None, count)
    run.payloads += payloads if payload_len else repeat(None, count)
    return stop


def _column(region: bytes, frame_size: int, at: int, code: str) -> tuple[int, ...]:
    """The 8-byte big-endian field at ``at`` of every frame of ``region`` (``code`` "Q" or
    "q"): its bytes gathered with one strided slice per byte position, then unpacked at once."""
    count = len(region) // frame_size
    column = bytearray(8 * count)
    for byte in range(8):
        column[byte::8] = region[at + byte :: frame_size]
    return struct.unpack(f">{count}{code}", column)


HeaderReader: TypeAlias = Callable[[bytes, int], tuple[int, ...]]
"""``unpack_from(data, offset)``: the payload length (first item) of the header at ``offset``,
as :meth:`struct.Struct.unpack_from` gives it."""


class LengthPrefixedReader(_StreamReader):
    """Splits a stream of length-prefixed payloads (framed TCP input) into payloads.

    Args:
        header_length: the size of every header.
        read_header: reads the payload length of a header; it must depend on the header's
            bytes only (stretches of identical headers are cut at C speed without reading each).
        max_payload_size: the largest payload length accepted.

    Errors are sticky, as with :class:`FrameReader`.
    """

    __slots__ = ("_header_length", "_max", "_read_header")

    def __init__(
        self, header_length: int, read_header: HeaderReader, max_payload_size: int
    ) -> None:
        if header_length < 1:
            raise ValueError(f"header_length must be at least 1, got {header_length}")
        super().__init__(header_length)
        self._header_length = header_length
        self._read_header = read_header
        self._max = max_payload_size

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` and return the payloads of every frame it completes, in order.

        Raises:
            FrameError: a header gives a length below 0 or above ``max_payload_size`` (the
                payloads before it in this call are lost), or an earlier call raised.
        """
        source = self._joined(data)
        if source is None:
            return []
        payloads: list[bytes] = []
        try:
            consumed = self._split(source, payloads)
        except FrameError as exc:
            self._error = exc
            raise
        self._keep(source, consumed)
        return payloads

    def _split(self, data: bytes, payloads: list[bytes]) -> int:
        header_length, read_header, limit = self._header_length, self._read_header, self._max
        append = payloads.append
        shared = range(header_length)
        stretches = True  # False once a frame did not start a stretch of identical headers
        pos, end = 0, len(data)
        self._needed = header_length
        while end - pos >= header_length:
            size = read_header(data, pos)[0]
            if size < 0 or size > limit:
                raise FrameError(f"frame length {size} is outside 0..{limit}")
            start = pos + header_length
            if start + size > end:
                self._needed = header_length + size
                break
            frame_size = header_length + size
            if stretches and end - pos >= _STRETCH_MIN * frame_size:
                count = _stretch(data, pos, frame_size, shared)
                if count:
                    stop = pos + count * frame_size
                    fields = struct.iter_unpack(f">{header_length}x{size}s", data[pos:stop])
                    payloads += chain.from_iterable(fields)
                    pos = stop
                    continue
                stretches = False
            pos = start + size
            append(data[start:pos])
        return pos


def _bad_length(length: int, max_frame_size: int) -> FrameError:
    if length < 1:
        return FrameError("bad frame length 0: a frame holds at least its type byte")
    return FrameError(
        f"frame length {length} exceeds the maximum of {max_frame_size} bytes; "
        "raise max_frame_size if the peer really sends frames this large"
    )
