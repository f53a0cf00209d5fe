"""Resettable sources for ``MultiSourceConnector``: the base classes and two file readers.

A source yields ``(value, point_of_ref)`` pairs; the point of reference (PoR) is a ``u64`` that
grows with every record, so it can be the record's message id, and ``reset(pos)`` goes back to a
PoR the worker reported (``2**64-1``: nothing seen, start from the beginning).

:class:`Throttle` limits a source program to a number of records per second (``file_source``'s
``rate``).
"""

from __future__ import annotations

import abc
import os
import struct
import time
from typing import IO, Any

from wallaroo.errors import WallarooParameterError
from wallaroo.protocol.frames import NONE_SEEN

__all__ = ["BaseIter", "BaseSource", "FramedFileReader", "Throttle", "ThrottledFileReader"]

_HEADER = struct.Struct(">I")


class BaseIter(abc.ABC):
    """An iterator base class: implement ``__next__``; ``__iter__`` and ``next`` are given."""

    def __iter__(self) -> BaseIter:
        return self

    def next(self) -> Any:
        """The original's spelling of ``__next__``."""
        return self.__next__()

    @abc.abstractmethod
    def __next__(self) -> Any:
        """Return the next item, or raise StopIteration."""


class BaseSource(abc.ABC):
    """A resettable source of ``(value, point_of_ref)`` pairs.

    Attributes:
        name: the stream name (its SHA-256 gives the stream id).
        key: the routing key of its messages (bytes or None).
    """

    name: str
    key: bytes | None

    def __str__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, point_of_ref={self.point_of_ref()})"

    @abc.abstractmethod
    def reset(self, pos: int = 0) -> None:
        """Go back (or forward) to the point of reference ``pos``; ``2**64-1`` means the start."""

    @abc.abstractmethod
    def point_of_ref(self) -> int:
        """The point of reference of the last record returned (where a reset resumes)."""

    @abc.abstractmethod
    def __next__(self) -> tuple[Any, int]:
        """Return ``(value, point_of_ref)``; ``value`` None means "nothing now, ask later".

        Raises:
            StopIteration: the source is exhausted.
        """

    def wallaroo_acked(self, point_of_ref: int) -> None:  # noqa: B027 - optional hook
        """The worker acknowledged everything up to ``point_of_ref``; override to use it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the source holds (called once it is removed)."""


def _seek_position(pos: int) -> int:
    if isinstance(pos, bool) or not isinstance(pos, int) or pos < 0:
        raise WallarooParameterError(f"a file position must be an int >= 0, got {pos!r}")
    return 0 if pos == NONE_SEEN else pos


class FramedFileReader(BaseIter, BaseSource):
    """Records of a file, each a ``u32`` big-endian length then that many bytes.

    The stream name is the filename, the key its UTF-8 bytes, and a record's point of reference
    the file offset *after* it, so ``reset(pos)`` seeks to ``pos`` and continues with the next
    record. A truncated record at the end counts as the end (it is read again after a reset).
    """

    def __init__(self, filename: str | os.PathLike[str]) -> None:
        self.filename = os.fspath(filename)
        self.name = self.filename
        self.key = self.filename.encode("utf-8")
        self._file: IO[bytes] = open(self.filename, "rb")  # noqa: SIM115 - closed by close()

    def point_of_ref(self) -> int:
        return self._file.tell()

    def reset(self, pos: int = 0) -> None:
        self._file.seek(_seek_position(pos))

    def __next__(self) -> tuple[bytes, int]:
        start = self._file.tell()
        header = self._file.read(4)
        if len(header) == 4:
            (size,) = _HEADER.unpack(header)
            body = self._file.read(size)
            if len(body) == size:
                return body, self._file.tell()
        self._file.seek(start)
        raise StopIteration

    def close(self) -> None:
        self._file.close()


class ThrottledFileReader(BaseIter, BaseSource):
    """Records of a file, read no faster than ``limit_rate`` bytes per second.

    Args:
        filename: the file.
        limit_rate: bytes per second; when ahead of it ``__next__`` returns
            ``(None, point_of_ref)`` ("nothing now").
        is_framed: records are ``u32`` big-endian length-prefixed.
        is_text_lines: records are lines, returned as ``str`` (UTF-8, without the newline).
            With neither flag records are lines returned as bytes without the newline.

    A record's point of reference is the file offset *before* it: after ``reset(pos)`` the
    record at ``pos`` is read again and the worker drops it as a duplicate.

    Raises:
        WallarooParameterError: both flags are set, or ``limit_rate`` is not positive.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        limit_rate: float = 999_999_999,
        is_framed: bool = False,
        is_text_lines: bool = False,
    ) -> None:
        if is_framed and is_text_lines:
            raise WallarooParameterError("choose is_framed or is_text_lines, not both")
        if not limit_rate > 0:
            raise WallarooParameterError(f"limit_rate must be positive, got {limit_rate!r}")
        self.filename = os.fspath(filename)
        self.name = self.filename
        self.key = self.filename.encode("utf-8")
        self.limit_rate = float(limit_rate)
        self.is_framed = is_framed
        self.is_text_lines = is_text_lines
        self._file: IO[bytes] = open(self.filename, "rb")  # noqa: SIM115 - closed by close()
        self._last = 0
        self._started: float | None = None
        self._bytes = 0

    def point_of_ref(self) -> int:
        return self._last

    def reset(self, pos: int = 0) -> None:
        position = _seek_position(pos)
        self._file.seek(position)
        self._last = position

    def __next__(self) -> tuple[Any, int]:
        now = time.monotonic()
        if self._started is None:
            self._started = now
        if self._bytes > self.limit_rate * (now - self._started):
            return None, self._last
        start = self._file.tell()
        record = self._read_framed(start) if self.is_framed else self._read_line()
        self._bytes += self._file.tell() - start
        self._last = start
        if self.is_text_lines:
            return record.decode("utf-8"), start
        return record, start

    def _read_framed(self, start: int) -> bytes:
        header = self._file.read(4)
        if len(header) == 4:
            (size,) = _HEADER.unpack(header)
            body = self._file.read(size)
            if len(body) == size:
                return body
        self._file.seek(start)
        raise StopIteration

    def _read_line(self) -> bytes:
        line = self._file.readline()
        if not line:
            raise StopIteration
        if line.endswith(b"\n"):
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        return line

    def close(self) -> None:
        self._file.close()


class Throttle:
    """At most ``rate`` records per second (None: no limit), in bursts of at most a tenth of
    a second's worth (a token bucket): ask :meth:`ready` before sending a record, then
    :meth:`spend` once it is sent.

    Args:
        rate: records per second, or None for no limit.
    """

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._capacity = 1.0 if rate is None else max(1.0, rate / 10)
        self._tokens = self._capacity
        self._last = time.monotonic()

    def ready(self) -> bool:
        """True if one more record may be sent now."""
        if self.rate is None:
            return True
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        return self._tokens >= 1.0

    def spend(self) -> None:
        """Count one record sent."""
        if self.rate is not None:
            self._tokens -= 1.0
