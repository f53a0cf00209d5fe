"""``AtLeastOnceSourceConnector``: a multi-stream source connector driven by hooks.

One background thread owns the connection to the worker: it sends what :meth:`write`,
:meth:`notify` and :meth:`end_of_stream` queue, reads the worker's frames and calls the hooks
(``stream_opened``, ``stream_acked``, ...). A subclass that is an iterator (has ``__next__``) is
also pulled by that thread for messages while the worker grants credits.

On a RESTART or a lost connection the thread calls ``stream_closed`` for every stream,
reconnects (retrying, at most a second apart), then ``handle_restarted``, which by default
re-NOTIFYs every stream; ``stream_opened`` then gives the point of reference to resume from.
Frames queued but not yet sent when the connection was lost are dropped: a source resumes from
the NOTIFY_ACK position, so nothing acknowledged is lost and nothing unacknowledged is assumed
received (at-least-once).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final, NamedTuple

from wallaroo.errors import ConnectorError, ProtocolError
from wallaroo.experimental.connection_thread import ConnectionThread, RestartSignal
from wallaroo.protocol.events import Acked, ClientEvent, NotifyAcked, Rejected, RestartRequested
from wallaroo.protocol.frames import NONE_SEEN, EosMessage, Error, Message, Notify

__all__ = ["AtLeastOnceSourceConnector", "Stream"]

log = logging.getLogger("wallaroo.connector")

IDLE_POLL: Final = 0.05
"""Seconds before an iterator that yielded nothing is asked again (the default of
``AtLeastOnceSourceConnector.idle_poll``), unless ``wake()`` is called first."""
NOTIFY_RETRY: Final = 0.5
"""Seconds between NOTIFYs of a stream the worker refused (held by another connection)."""


class Stream(NamedTuple):
    """What the connector knows of one stream: its id, name, last point of reference (from
    NOTIFY, NOTIFY_ACK or ACK) and whether the worker accepted it on this connection."""

    id: int
    name: str
    point_of_ref: int
    is_open: bool


class AtLeastOnceSourceConnector(ConnectionThread):
    """A source connector with many streams, hooks, and reconnection.

    Args:
        version: the protocol version for HELLO (``"0.0.1"``).
        cookie: the cookie of the application's source connector.
        program_name: names the connector program (informative for the worker).
        instance_name: names this instance (informative for the worker).
        host: the worker's connector source host.
        port: its port.
        delay: seconds to wait between two batches pulled from an iterator subclass.

    It does not read the command line; use :func:`parse_connector_args` for that.

    An iterator subclass that yielded nothing is asked again after ``max(delay, idle_poll)``
    seconds, or as soon as :meth:`wake` is called (no sooner than ``delay`` after its last
    batch): a subclass fed by another thread calls :meth:`wake` when it has new data, so that
    nothing waits for the next poll.

    Thread-safety: :meth:`write`, :meth:`notify`, :meth:`end_of_stream`,
    :meth:`remove_stream`, :meth:`wake`, :meth:`shutdown` and :meth:`join` may be called from
    any thread.
    Hooks run in the connector's thread while it holds the connector's lock, so they may call
    those methods (writes from a hook never wait for credits) but must not block.
    """

    idle_poll: float = IDLE_POLL
    """Seconds before an iterator subclass that yielded nothing is asked again; a subclass
    that cannot call :meth:`wake` (it polls a file, say) may lower it."""

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
        super().__init__(version, cookie, program_name, instance_name, host, port)
        self.delay = float(delay)
        self._streams: dict[int, Stream] = {}
        self._refused: set[int] = set()
        self._retry_at = 0.0
        self._next_pull = 0.0  # when the iterator is asked next
        self._earliest = 0.0  # ... at the soonest, after wake(): ``delay`` after the last batch
        self._woken = False  # wake() was called since the last pull

    # -- hooks (override) -------------------------------------------------------------------
    def stream_added(self, stream: Stream) -> None:
        """A stream became known (first :meth:`notify`)."""

    def stream_removed(self, stream: Stream) -> None:
        """A stream was forgotten by :meth:`remove_stream`."""

    def stream_opened(self, stream: Stream) -> None:
        """The worker accepted the stream: send what follows ``stream.point_of_ref``
        (2**64-1: from the start). Nothing sent on an earlier connection is assumed received."""

    def stream_closed(self, stream: Stream) -> None:
        """The connection was lost or restarted; the stream is closed until re-notified."""

    def stream_acked(self, stream: Stream) -> None:
        """The worker acknowledged the stream up to ``stream.point_of_ref`` (inclusive), or,
        after :meth:`end_of_stream`, acknowledged the end of the stream."""

    def handle_restarted(self, streams: list[Stream]) -> None:
        """Reconnected after a RESTART or a loss; by default re-NOTIFYs every stream at its
        last known point of reference."""
        for stream in streams:
            self.notify(stream.id, stream.name, stream.point_of_ref)

    def handle_invalid_message(self, error: ProtocolError) -> None:
        """The worker broke the protocol; by default send ERROR and shut down with ``error``.
        If this returns without shutting down, the connector reconnects."""
        log.error("the worker broke the connector protocol: %s", error)
        self.shutdown(error=error)

    def handle_error(self, error: ConnectorError) -> None:
        """The worker sent ERROR; by default shut down with ``error``. If this returns without
        shutting down, the connector reconnects."""
        log.error("source connector %s: %s", self.program_name, error)
        self.shutdown(error=error)

    # -- public API -------------------------------------------------------------------------
    @property
    def streams(self) -> dict[int, Stream]:
        """A copy of the known streams by id."""
        with self._lock:
            return dict(self._streams)

    def write(self, msg: Message | Notify | EosMessage | Error) -> None:
        """Queue a frame for the worker.

        A :class:`Message` needs an open stream and costs a credit; from any thread but the
        connector's own it waits while no credits are left. :class:`Notify` is :meth:`notify`,
        :class:`EosMessage` is :meth:`end_of_stream`, and :class:`Error` shuts the connector
        down, telling the worker why.

        Raises:
            ProtocolError: not connected, the stream is not open, or ``msg`` is none of those.
            ConnectorError: the connector shut down while waiting for credits.
        """
        if isinstance(msg, Message):
            self._write_message(msg)
        elif isinstance(msg, Notify):
            self.notify(msg.stream_id, msg.stream_name, msg.point_of_ref)
        elif isinstance(msg, EosMessage):
            self.end_of_stream(msg.stream_id)
        elif isinstance(msg, Error):
            self.shutdown(error=ConnectorError(msg.message))
        else:
            raise ProtocolError(
                f"cannot write a {type(msg).__name__}: write a Message, Notify, EosMessage or Error"
            )

    def notify(
        self, stream_id: int, stream_name: str | None = None, point_of_ref: int | None = None
    ) -> None:
        """Register or update a stream and ask the worker to open it (costs a credit).

        A new stream calls ``stream_added``. Before :meth:`connect`, or while reconnecting, the
        NOTIFY is sent once connected. ``point_of_ref`` is advisory: the NOTIFY_ACK decides.
        """
        with self._lock:
            old = self._streams.get(stream_id)
            name = stream_name or (old.name if old is not None else str(stream_id))
            if point_of_ref is None:
                point_of_ref = old.point_of_ref if old is not None else NONE_SEEN
            stream = Stream(stream_id, name, point_of_ref, old.is_open if old else False)
            self._streams[stream_id] = stream
            if old is None:
                self.stream_added(stream)
            self._send_notify(stream)

    def end_of_stream(self, stream_id: int) -> None:
        """Queue EOS for an open stream; the worker's final ACK comes to ``stream_acked``.

        Raises:
            ProtocolError: not connected or the stream is not open.
        """
        with self._lock:
            session = self._session()
            if not session.is_open(stream_id):
                raise ProtocolError(f"stream {stream_id} is not open; it cannot end")
            self._queue(session.eos(stream_id))
            stream = self._streams.get(stream_id)
            if stream is not None:
                self._streams[stream_id] = stream._replace(is_open=False)

    def remove_stream(self, stream_id: int) -> None:
        """Forget a stream (it is not re-notified after a reconnect); calls
        ``stream_removed``."""
        with self._lock:
            stream = self._streams.pop(stream_id, None)
            self._refused.discard(stream_id)
            if stream is not None:
                self.stream_removed(stream)

    def wake(self) -> None:
        """Wake the connector's thread now: an iterator subclass is asked for messages at once
        (no sooner than ``delay`` after its last batch), even if it last yielded nothing.
        Safe from any thread; call it when new data is ready."""
        self._woken = True  # read by the thread's next pull; a plain store, no lock needed
        super().wake()

    # -- writing ----------------------------------------------------------------------------
    def _write_message(self, msg: Message) -> None:
        with self._lock:
            if not self._in_thread():
                self._credit.wait_for(
                    lambda: self._stop.is_set() or self._link is None or self.credits > 0
                )
            if self._stop.is_set():
                raise ConnectorError("the connector is shut down")
            session = self._session()
            if not session.is_open(msg.stream_id):
                raise ProtocolError(
                    f"stream {msg.stream_id} is not open; write after stream_opened()"
                )
            self._queue(
                session.message(msg.stream_id, msg.message_id, msg.message, msg.event_time, msg.key)
            )

    def _send_notify(self, stream: Stream) -> None:
        link = self._link
        if link is not None and not link.session.closed:
            self._queue(link.session.notify(stream.id, stream.name, stream.point_of_ref))

    # -- what the connection thread calls (holding the lock) -------------------------------
    def _connected(self, first: bool) -> None:
        if first:
            for stream in list(self._streams.values()):
                self._send_notify(stream)
        else:
            self.handle_restarted(list(self._streams.values()))

    def _connection_lost(self) -> None:
        self._refused.clear()
        for stream in list(self._streams.values()):
            closed = stream._replace(is_open=False)
            self._streams[stream.id] = closed
            self.stream_closed(closed)

    def _deadline(self) -> float | None:
        deadlines = []
        if self._refused:
            deadlines.append(self._retry_at)
        if callable(getattr(self, "__next__", None)) and self.credits > 0:
            deadlines.append(self._earliest if self._woken else self._next_pull)
        return min(deadlines) if deadlines else None

    def _tick(self) -> None:
        if self._refused and time.monotonic() >= self._retry_at:
            for stream_id in list(self._refused):
                stream = self._streams.get(stream_id)
                if stream is not None:
                    self._send_notify(stream)
            self._refused.clear()
        self._pull()

    def _pull(self) -> None:
        next_item = getattr(self, "__next__", None)
        now = time.monotonic()
        due = self._earliest if self._woken else self._next_pull
        budget = self.credits
        if not callable(next_item) or self._stop.is_set() or now < due or budget <= 0:
            return
        self._woken = False  # a wake() from now on asks again: nothing it announces is missed
        self._earliest = now + self.delay
        while budget > 0 and not self._stop.is_set():  # shutdown() needs the lock held here
            try:
                item: Any = next_item()
            except StopIteration:
                self.shutdown()
                return
            if not item:
                self._next_pull = now + max(self.delay, self.idle_poll)
                return
            self.write(item)
            budget -= 1
        self._next_pull = now + self.delay  # out of credits or stopped: ask again once due

    def _dispatch(self, events: list[ClientEvent]) -> None:
        for event in events:
            if isinstance(event, Acked):
                for stream_id, point_of_ref in event.acks:
                    stream = self._streams.get(stream_id)
                    if stream is not None:
                        stream = stream._replace(point_of_ref=point_of_ref)
                        self._streams[stream_id] = stream
                        self.stream_acked(stream)
                self._credit.notify_all()
            elif isinstance(event, NotifyAcked):
                self._notify_acked(event)
            elif isinstance(event, RestartRequested):
                raise RestartSignal(event.address)
            elif isinstance(event, Rejected):
                raise ConnectorError(f"the worker closed the connection: {event.message}")

    def _notify_acked(self, event: NotifyAcked) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return
        if event.success:
            self._refused.discard(event.stream_id)
            stream = stream._replace(point_of_ref=event.point_of_ref, is_open=True)
            self._streams[event.stream_id] = stream
            self.stream_opened(stream)
            return
        if not self._refused:
            self._retry_at = time.monotonic() + NOTIFY_RETRY
        self._refused.add(event.stream_id)
        log.info(
            "the worker refused stream '%s' (held by another connection); retrying", stream.name
        )
