"""``wallaroo.experimental.connectors``: resettable sources and ``MultiSourceConnector``, under
the original's module path.

Typical use: one :class:`MultiSourceConnector` streaming several files, each resumed from what
the worker acknowledged::

    connector = MultiSourceConnector("0.0.1", cookie, "feed", "instance-1", "127.0.0.1", 7100)
    connector.connect()
    for name in filenames:
        connector.add_source(FramedFileReader(name))
    error = connector.join()  # returns once every file is sent and its end acknowledged
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final

from wallaroo.decorators import to_bytes
from wallaroo.errors import ConnectorError
from wallaroo.experimental.at_least_once import AtLeastOnceSourceConnector, Stream
from wallaroo.experimental.client_link import stream_id_for
from wallaroo.experimental.file_sources import (
    BaseIter,
    BaseSource,
    FramedFileReader,
    ThrottledFileReader,
)
from wallaroo.protocol.frames import NONE_SEEN, Message

__all__ = [
    "BaseIter",
    "BaseSource",
    "FramedFileReader",
    "MultiSourceConnector",
    "ThrottledFileReader",
]

_JOINING: Final = "joining"  # NOTIFY sent, waiting for the worker to accept the stream
_OPEN: Final = "open"
_CLOSING: Final = "closing"  # EOS sent, waiting for the worker's acknowledgement
_CLOSED: Final = "closed"


@dataclass(eq=False, slots=True)
class _Entry:
    source: BaseSource
    stream_id: int
    state: str = _JOINING
    last: int = NONE_SEEN  # PoR of the last message sent, else the NOTIFY_ACK's PoR
    remove: bool = False


class MultiSourceConnector(AtLeastOnceSourceConnector, BaseIter):
    """Sends many :class:`BaseSource` s round-robin, one stream each, at least once.

    Arguments are those of :class:`~wallaroo.experimental.AtLeastOnceSourceConnector`. A
    source's stream id is the first 64 bits of the SHA-256 of its name; every message's id is
    the source's point of reference. When the worker opens a stream the source is reset to the
    NOTIFY_ACK position (after a reconnect too), so what the worker has is not sent again and
    what it lacks is. A source that is exhausted is ended (EOS) and closed once the worker
    acknowledges its end; when every added source is closed the connector shuts down and
    :meth:`join` returns.

    Thread-safety: :meth:`add_source` and :meth:`remove_source` may be called from any thread;
    the connector's thread reads the sources.
    """

    def __init__(
        self,
        version: str,
        cookie: str,
        program_name: str,
        instance_name: str,
        host: str,
        port: int,
        delay: float = 0,
    ) -> None:
        super().__init__(version, cookie, program_name, instance_name, host, port, delay)
        self._entries: dict[int, _Entry] = {}
        self._order: list[int] = []  # stream ids of the sources not closed, round-robin
        self._index = -1
        self._added_any = False
        self._changed = threading.Condition(self._lock)

    def add_source(self, source: BaseSource) -> None:
        """Add a source and NOTIFY its stream (sent once connected).

        Raises:
            ConnectorError: a source with the same name (stream id) is already active.
        """
        stream_id = stream_id_for(source.name)
        with self._lock:
            entry = self._entries.get(stream_id)
            if entry is not None and entry.state != _CLOSED:
                raise ConnectorError(f"a source named {source.name!r} is already added")
            self._entries[stream_id] = _Entry(source, stream_id)
            self._order.append(stream_id)
            self._added_any = True
            self.notify(stream_id, source.name, source.point_of_ref())

    def remove_source(self, source: BaseSource, timeout: float | None = None) -> bool:
        """End a source's stream (EOS, once the stream is open) and wait up to ``timeout``
        seconds for the worker to acknowledge its end; the source is then closed.

        Returns:
            True if the source is closed (always False when called from a hook, which must
            not wait).
        """
        stream_id = stream_id_for(source.name)
        with self._lock:
            entry = self._entries.get(stream_id)
            if entry is None:
                return True
            if entry.state == _OPEN:
                self._end(entry)
            elif entry.state == _JOINING:
                entry.remove = True
            if self._in_thread():
                return entry.state == _CLOSED
            self._changed.wait_for(lambda: entry.state == _CLOSED or self._stop.is_set(), timeout)
            return entry.state == _CLOSED

    def __next__(self) -> Message | None:
        """The next message of the next open source with data, None if none has any now.

        Raises:
            StopIteration: every added source is closed.
        """
        with self._lock:
            if not self._order:
                if self._added_any:
                    raise StopIteration
                return None
            for _ in range(len(self._order)):
                self._index = (self._index + 1) % len(self._order)
                entry = self._entries[self._order[self._index]]
                if entry.state != _OPEN:
                    continue
                try:
                    value, point_of_ref = next(entry.source)
                except StopIteration:
                    self._end(entry)
                    continue
                if value is None:
                    continue
                entry.last = point_of_ref
                key = entry.source.key
                return Message(
                    entry.stream_id,
                    point_of_ref,
                    0,
                    to_bytes(key, "a source's key") if key else None,
                    to_bytes(value, "a source's value"),
                )
            return None

    # -- hooks ------------------------------------------------------------------------------
    def stream_opened(self, stream: Stream) -> None:
        """Reset the source to the worker's position and start sending it."""
        entry = self._entries.get(stream.id)
        if entry is None or entry.state == _CLOSED:
            return
        entry.source.reset(stream.point_of_ref)
        entry.last = stream.point_of_ref
        entry.state = _OPEN
        if entry.remove:
            self._end(entry)

    def stream_closed(self, stream: Stream) -> None:
        """The connection was lost: the source waits for its stream to be opened again.

        A source whose end was sent but not acknowledged is not finished: the worker may have
        lost its tail, so once reopened it resumes from the worker's position and ends again.
        """
        entry = self._entries.get(stream.id)
        if entry is not None and entry.state in (_OPEN, _CLOSING):
            entry.state = _JOINING

    def stream_acked(self, stream: Stream) -> None:
        """Tell the source; close it once the end of its stream is acknowledged."""
        entry = self._entries.get(stream.id)
        if entry is None:
            return
        acked = stream.point_of_ref
        if acked != NONE_SEEN:
            entry.source.wallaroo_acked(acked)
        if entry.state == _CLOSING and (
            entry.last == NONE_SEEN or (acked != NONE_SEEN and acked >= entry.last)
        ):
            self._close(entry)

    # -- internals --------------------------------------------------------------------------
    def _end(self, entry: _Entry) -> None:
        entry.state = _CLOSING
        self.end_of_stream(entry.stream_id)

    def _close(self, entry: _Entry) -> None:
        entry.state = _CLOSED
        position = self._order.index(entry.stream_id)
        del self._order[position]
        if position <= self._index:
            self._index -= 1
        self.remove_stream(entry.stream_id)
        entry.source.close()
        self._changed.notify_all()
