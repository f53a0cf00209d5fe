"""An incremental frame parser for a byte stream: feed it what the socket gave, get whole frames.

MESSAGE frames are the hot path (hundreds of thousands a second), so they are parsed inline with a
precompiled :class:`struct.Struct` over a memoryview of the buffered bytes; the only objects made
per MESSAGE are the :class:`~wallaroo.protocol.frames.Message` and its key and payload bytes.
"""

from __future__ import annotations

import struct
from typing import Final

from wallaroo.errors import FrameError
from wallaroo.protocol._codec import MESSAGE_BODY, MESSAGE_FIXED
from wallaroo.protocol.frames import (
    MAX_FRAME_SIZE,
    Frame,
    FrameType,
    _decode_at,
    _new_message,
)

__all__ = ["FrameReader"]

_LENGTH: Final = struct.Struct(">I")
_MESSAGE: Final = int(FrameType.MESSAGE)


class FrameReader:
    """Splits a byte stream into frames, keeping a partial frame between calls.

    Args:
        max_frame_size: the largest length prefix accepted (type byte + body). A larger one is
            refused as soon as its four bytes arrive, before any of the body is buffered.

    Errors are sticky: after a malformed frame the stream cannot be resynchronised, so the reader
    keeps the :class:`FrameError` in :attr:`error` and raises it from every later :meth:`feed`.
    """

    __slots__ = ("_buffer", "_error", "_max_frame_size", "_needed")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if max_frame_size < 1:
            raise ValueError(f"max_frame_size must be at least 1, got {max_frame_size}")
        self._max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._needed = 4  # bytes the buffer must hold before parsing can make progress
        self._error: FrameError | None = None

    @property
    def pending(self) -> int:
        """The number of bytes buffered: the start of a frame not yet complete."""
        return len(self._buffer)

    @property
    def error(self) -> FrameError | None:
        """The error that stopped this reader, or None while the stream is well formed."""
        return self._error

    def feed(self, data: bytes) -> list[Frame]:
        """Add ``data`` and return every frame it completes, in order (possibly none).

        Frames that precede a malformed one are never lost: if some were decoded by this call they
        are returned, and the error (kept in :attr:`error`) is raised by the next call instead.

        Raises:
            FrameError: a length prefix is 0 or beyond ``max_frame_size``, a type is unknown or a
                body is malformed (and no frame came before it in this call), or an earlier call
                stopped at such a frame.
        """
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._needed:
                return []
            source: bytes | bytearray = buffer
        else:
            source = data
        frames: list[Frame] = []
        try:
            consumed = self._parse(source, frames)
        except FrameError as exc:
            self._error = exc
            self._buffer = bytearray()
            if frames:
                return frames
            raise
        if source is buffer:
            del buffer[:consumed]
        elif consumed < len(data):
            self._buffer = bytearray(data[consumed:])
        return frames

    def _parse(self, source: bytes | bytearray, frames: list[Frame]) -> int:
        """Append the complete frames at the start of ``source`` to ``frames``; return their size.

        Also sets ``_needed``, the buffer size at which the next frame may be complete.
        """
        size = len(source)
        pos = 0
        append = frames.append
        unpack_length = _LENGTH.unpack_from
        unpack_message = MESSAGE_BODY.unpack_from
        max_frame_size = self._max_frame_size
        new_message = _new_message
        with memoryview(source) as view:
            while size - pos >= 4:
                length = unpack_length(view, pos)[0]
                if length > max_frame_size or length < 1:
                    raise _bad_length(length, max_frame_size)
                end = pos + 4 + length
                if end > size:
                    self._needed = end - pos
                    return pos
                body = pos + 5
                if view[pos + 4] != _MESSAGE:
                    append(_decode_at(view, view[pos + 4], body, end))
                    pos = end
                    continue
                if length <= MESSAGE_FIXED:
                    raise FrameError(f"truncated MESSAGE body: {length - 1} bytes, at least 26")
                stream_id, message_id, event_time, key_len = unpack_message(view, body)
                key_start = body + MESSAGE_FIXED
                key_end = key_start + key_len
                if key_end > end:
                    raise FrameError(f"truncated MESSAGE body: key of {key_len} bytes overruns it")
                append(
                    new_message(
                        stream_id,
                        message_id,
                        event_time,
                        view[key_start:key_end].tobytes() if key_len else None,
                        view[key_end:end].tobytes() if key_end < end else None,
                    )
                )
                pos = end
        self._needed = 4
        return pos


def _bad_length(length: int, max_frame_size: int) -> FrameError:
    if length < 1:
        return FrameError("bad frame length 0: a frame holds at least its type byte")
    return FrameError(
        f"frame length {length} exceeds the maximum of {max_frame_size} bytes; "
        "raise max_frame_size if the peer really sends frames this large"
    )
