"""The worker's side of a connector sink connection (two-phase commit), sans-IO.

Roles are reversed on a sink connection: the worker connects to the external sink and sends
HELLO, NOTIFY and MESSAGEs; the sink answers OK and NOTIFY_ACK. Stream 1 carries the
application's output, each MESSAGE's id being the byte offset of its payload in this sink's
output; stream 0 carries the 2PC frames (:mod:`wallaroo.protocol.twopc`).

:class:`WorkerSinkSession` produces the worker's bytes and reads the sink's; it keeps the output
offset, the last committed offset and the transaction in progress. The external sink's side,
:class:`~wallaroo.protocol.sink_endpoint.SinkEndpointSession`, is re-exported here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from wallaroo.errors import ProtocolError
from wallaroo.logsummary import clip as peer_text
from wallaroo.protocol._codec import U64_MAX, clip, pack_messages
from wallaroo.protocol.events import (
    SinkError,
    SinkReady,
    SinkRestarted,
    StreamAccepted,
    UncommittedReported,
    VoteReceived,
    WorkerSinkEvent,
)
from wallaroo.protocol.frames import (
    MAX_FRAME_SIZE,
    SINK_VERSION,
    Error,
    Frame,
    Hello,
    Message,
    Notify,
    NotifyAck,
    Ok,
    Restart,
)
from wallaroo.protocol.reader import FrameReader
from wallaroo.protocol.sink_endpoint import EndpointStatistics, SinkEndpointSession
from wallaroo.protocol.twopc import (
    ListUncommitted,
    ReplyUncommitted,
    TwoPCPhase1,
    TwoPCPhase2,
    TwoPCReply,
    WorkersLeft,
    unwrap_twopc,
    wrap_twopc,
)

__all__ = [
    "OUTPUT_STREAM_ID",
    "EndpointStatistics",
    "SinkEndpointSession",
    "SinkError",
    "SinkReady",
    "SinkRestarted",
    "StreamAccepted",
    "UncommittedReported",
    "VoteReceived",
    "WorkerSinkEvent",
    "WorkerSinkSession",
    "WorkerSinkStatistics",
]

OUTPUT_STREAM_ID: Final = 1
"""The stream of a sink connection that carries the application's output."""

_NEW: Final = "new"
_HANDSHAKE: Final = "handshake"
_CONNECTED: Final = "connected"
_CLOSED: Final = "closed"


@dataclass(frozen=True, slots=True)
class WorkerSinkStatistics:
    """A snapshot of a :class:`WorkerSinkSession`."""

    state: str
    offset: int
    committed_offset: int
    pending_txn: str | None
    payloads_sent: int
    frames_received: int
    commits: int
    aborts: int


class WorkerSinkSession:
    """One sink of one worker, and its connection to the external sink.

    Args:
        app_name: the application's name (HELLO's program name, part of the stream name).
        worker_name: this worker's name (HELLO's instance name); it must stay the same across
            restarts, since transaction ids contain it.
        sink_id: identifies the sink within the application.
        cookie: the cookie the external sink expects.
        version: the HELLO version (``"v0.0.1"``, as the original spells it).
        max_frame_size: the largest frame accepted from the sink.

    Offsets survive reconnects: :meth:`intro` starts a new connection where the last one
    stopped. A broken protocol raises :class:`ProtocolError` from :meth:`receive` and closes the
    connection; send ``error(reason)`` if the socket still works, and reconnect with
    :meth:`intro`.
    """

    def __init__(
        self,
        *,
        app_name: str,
        worker_name: str,
        sink_id: int,
        cookie: str,
        version: str = SINK_VERSION,
        max_frame_size: int = MAX_FRAME_SIZE,
    ) -> None:
        self._stream_name = f"{app_name}-w-{worker_name}-id-{sink_id}"
        self._hello = Hello(version, cookie, app_name, worker_name)
        self._max_frame_size = max_frame_size
        self._reader = FrameReader(max_frame_size)
        self._state = _NEW
        self._stream_accepted = False
        self._offset = 0
        self._committed = 0
        self._pending: tuple[str, int] | None = None  # (txn id, end offset) after phase 1
        self._payloads_sent = 0
        self._frames_received = 0
        self._commits = 0
        self._aborts = 0

    @property
    def stream_name(self) -> str:
        """``<app>-w-<worker>-id-<sink_id>``: the output stream's name and the txn id prefix."""
        return self._stream_name

    @property
    def offset(self) -> int:
        """Bytes of output produced so far: the message id of the next payload."""
        return self._offset

    @property
    def committed_offset(self) -> int:
        """The end of the last committed transaction (where the next one starts)."""
        return self._committed

    @property
    def pending_txn(self) -> str | None:
        """The transaction between its phase 1 and phase 2, if any."""
        return None if self._pending is None else self._pending[0]

    @property
    def closed(self) -> bool:
        """True when there is no live connection (before :meth:`intro` too)."""
        return self._state in (_NEW, _CLOSED)

    def restore(self, offset: int, committed_offset: int | None = None) -> None:
        """Reset the offsets from a checkpoint (rollback) and forget any transaction in progress.

        Args:
            offset: the output offset recorded by the checkpoint.
            committed_offset: the committed offset; defaults to ``offset``.

        Raises:
            ValueError: an offset is not a u64, or ``committed_offset`` exceeds ``offset``.
        """
        committed = offset if committed_offset is None else committed_offset
        if not 0 <= committed <= offset <= U64_MAX:
            raise ValueError(
                f"need 0 <= committed_offset <= offset < 2**64, got {committed} and {offset}"
            )
        self._offset = offset
        self._committed = committed
        self._pending = None

    def intro(self, rtag: int) -> bytes:
        """Start a (re)connection: return HELLO, NOTIFY of the output stream and LIST_UNCOMMITTED.

        The NOTIFY's point of reference is the current offset; ``rtag`` comes back in the
        sink's REPLY_UNCOMMITTED.
        """
        self._reader = FrameReader(self._max_frame_size)
        self._state = _HANDSHAKE
        self._stream_accepted = False
        return (
            self._hello.encode()
            + Notify(OUTPUT_STREAM_ID, self._stream_name, self._offset).encode()
            + wrap_twopc(ListUncommitted(rtag))
        )

    def payloads(self, items: Iterable[bytes]) -> bytes:
        """Return MESSAGEs on stream 1 carrying ``items``, and advance the offset past them.

        Each message id is the offset of its payload's first byte; empty payloads carry nothing
        and are left out.

        Raises:
            ProtocolError: a transaction is between phase 1 and phase 2. No output may be sent
                then: the caller holds it back until :meth:`phase2` (the worker's
                ``ConnectorSinkOutput`` is that valve, from the checkpoint's barrier on); this
                check only refuses what a caller failed to hold.
        """
        if self._pending is not None:
            raise ProtocolError(
                f"no output may be sent while transaction {self._pending[0]} is between phase 1 "
                "and phase 2; hold it until phase2()"
            )
        payloads = items if isinstance(items, list) else list(items)
        if not all(payloads):
            payloads = [payload for payload in payloads if payload]
        offsets = list(itertools.accumulate(map(len, payloads), initial=self._offset))
        self._offset = offsets.pop()  # the end of the last payload
        self._payloads_sent += len(payloads)
        return pack_messages(OUTPUT_STREAM_ID, offsets, payloads, 0, b"")

    def txn_id(self, checkpoint_id: int) -> str:
        """Return the transaction id of ``checkpoint_id``: ``<stream_name>:c_id=<id>``."""
        return f"{self._stream_name}:c_id={checkpoint_id}"

    def phase1(self, checkpoint_id: int) -> bytes:
        """Return PHASE1 for ``checkpoint_id``: may the sink commit [committed, offset)?

        Raises:
            ProtocolError: the previous transaction has not had its phase 2.
        """
        if self._pending is not None:
            raise ProtocolError(f"transaction {self._pending[0]} has not had its phase 2 yet")
        txn_id = self.txn_id(checkpoint_id)
        frame = wrap_twopc(
            TwoPCPhase1(txn_id, ((OUTPUT_STREAM_ID, self._committed, self._offset),))
        )
        self._pending = (txn_id, self._offset)
        return frame

    def phase2(self, txn_id: str, commit: bool) -> bytes:
        """Return PHASE2 with the outcome of ``txn_id``.

        For the transaction in progress, commit moves the committed offset to its end and
        abort moves the offset back to the committed one (the sink discards the range); either
        reopens the output. Any other id (one reported uncommitted after a reconnect) changes
        nothing here.
        """
        if self._pending is not None and self._pending[0] == txn_id:
            if commit:
                self._committed = self._pending[1]
            else:
                self._offset = self._committed
            self._pending = None
        if commit:
            self._commits += 1
        else:
            self._aborts += 1
        return wrap_twopc(TwoPCPhase2(txn_id, commit))

    def workers_left(self, rtag: int, workers: Iterable[str]) -> bytes:
        """Return WORKERS_LEFT: those workers' output streams are finished."""
        return wrap_twopc(WorkersLeft(rtag, tuple(workers)))

    def error(self, reason: str) -> bytes:
        """Close the connection and return an ERROR frame telling the sink why."""
        self._state = _CLOSED
        return Error(clip(reason)).encode()

    def connection_lost(self) -> None:
        """The connection is gone; reconnect with :meth:`intro`."""
        if self._state != _NEW:
            self._state = _CLOSED

    def receive(self, data: bytes) -> list[WorkerSinkEvent]:
        """Consume bytes read from the sink and return what happened, in order.

        Raises:
            ProtocolError: a frame the sink must not send (HELLO, NOTIFY, ACK, MESSAGE outside
                the control stream, a 2PC request), OK with fewer than 2 credits, a refused
                output stream, or data before :meth:`intro`. The connection is closed.
            FrameError: malformed bytes. The connection is closed.
        """
        events: list[WorkerSinkEvent] = []
        if self._state == _CLOSED:
            return events
        if self._state == _NEW:
            raise ProtocolError("the sink sent data before the worker's intro")
        try:
            for frame in self._reader.feed(data):
                self._frames_received += 1
                self._handle(frame, events)
                if self._state == _CLOSED:
                    return events
            if self._reader.error is not None:
                raise self._reader.error
        except ProtocolError:
            self._state = _CLOSED
            raise
        return events

    def statistics(self) -> WorkerSinkStatistics:
        """Return a snapshot of the session's counters."""
        return WorkerSinkStatistics(
            state=self._state,
            offset=self._offset,
            committed_offset=self._committed,
            pending_txn=self.pending_txn,
            payloads_sent=self._payloads_sent,
            frames_received=self._frames_received,
            commits=self._commits,
            aborts=self._aborts,
        )

    def _handle(self, frame: Frame, events: list[WorkerSinkEvent]) -> None:
        if isinstance(frame, Error):
            self._state = _CLOSED
            events.append(SinkError(peer_text(frame.message)))  # it reaches log lines
        elif isinstance(frame, Restart):
            self._state = _CLOSED
            events.append(SinkRestarted(frame.address))
        elif isinstance(frame, Ok):
            if self._state != _HANDSHAKE:
                raise ProtocolError("the sink sent OK twice")
            if frame.initial_credits < 2:
                raise ProtocolError(
                    f"too few credits: the sink granted {frame.initial_credits}, at least 2 needed"
                )
            self._state = _CONNECTED
            events.append(SinkReady(frame.initial_credits))
        elif self._state != _CONNECTED:
            raise ProtocolError(f"the sink sent {frame.TYPE.name} before OK")
        elif isinstance(frame, NotifyAck):
            self._notify_acked(frame, events)
        elif isinstance(frame, Message):
            self._control(frame, events)
        else:
            raise ProtocolError(f"a sink must not send {frame.TYPE.name} frames")

    def _notify_acked(self, frame: NotifyAck, events: list[WorkerSinkEvent]) -> None:
        if frame.stream_id != OUTPUT_STREAM_ID or self._stream_accepted:
            raise ProtocolError(f"unexpected NOTIFY_ACK for stream {frame.stream_id}")
        if not frame.success:
            raise ProtocolError(f"the sink refused output stream {self._stream_name}")
        self._stream_accepted = True
        events.append(StreamAccepted(frame.stream_id, frame.point_of_ref))

    def _control(self, message: Message, events: list[WorkerSinkEvent]) -> None:
        inner = unwrap_twopc(message)
        if isinstance(inner, ReplyUncommitted):
            events.append(UncommittedReported(inner.rtag, inner.txn_ids))
        elif isinstance(inner, TwoPCReply):
            events.append(VoteReceived(inner.txn_id, inner.commit))
        else:
            raise ProtocolError(f"a sink must not send {inner.TAG.name}")
