"""The external sink's side of a connector sink connection, sans-IO.

The sink listens; a worker connects, sends HELLO, NOTIFYs its output stream and asks
LIST_UNCOMMITTED, then streams MESSAGEs and runs two-phase commits on the control stream 0.
:class:`SinkEndpointSession` answers the handshake itself and turns the rest into events; the
application answers the 2PC questions with :meth:`SinkEndpointSession.reply_uncommitted` and
:meth:`SinkEndpointSession.vote`, unless ``auto_commit`` answers them for it (no uncommitted
transactions, always commit: no exactly-once guarantee, the non-transactional default).

A protocol violation queues ERROR and closes the session; later data is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, cast

from wallaroo.errors import FrameError, WallarooParameterError
from wallaroo.protocol._codec import U32_MAX, clip
from wallaroo.protocol.events import (
    EndpointEvent,
    Payloads,
    Phase1Requested,
    Phase2Requested,
    SessionClosed,
    StreamEnded,
    StreamNotified,
    UncommittedListRequested,
    WorkerConnected,
    WorkersLeftReported,
)
from wallaroo.protocol.frames import (
    MAX_FRAME_SIZE,
    SINK_VERSION,
    EosMessage,
    Error,
    Frame,
    Hello,
    Message,
    Notify,
    NotifyAck,
    Ok,
)
from wallaroo.protocol.reader import FrameReader, MessageRun
from wallaroo.protocol.twopc import (
    CONTROL_STREAM_ID,
    ListUncommitted,
    ReplyUncommitted,
    TwoPCPhase1,
    TwoPCPhase2,
    TwoPCReply,
    WorkersLeft,
    unwrap_twopc,
    wrap_twopc,
)

__all__ = ["EndpointStatistics", "SinkEndpointSession"]

_HANDSHAKE: Final = "handshake"
_STREAMING: Final = "streaming"
_CLOSED: Final = "closed"


@dataclass(frozen=True, slots=True)
class EndpointStatistics:
    """A snapshot of a :class:`SinkEndpointSession`."""

    state: str
    worker_name: str | None
    frames_received: int
    payloads_received: int
    payload_bytes: int
    phase1_requests: int
    votes_commit: int
    votes_abort: int
    errors: int


class SinkEndpointSession:
    """One worker's connection to an external sink, seen from the sink.

    Args:
        cookie: the cookie the worker's HELLO must carry.
        version: the version HELLO must carry (``"v0.0.1"``).
        credits: the credits OK grants (the worker needs at least 2; it sends no more ACKs).
        auto_commit: answer LIST_UNCOMMITTED with no transactions and vote commit on every
            PHASE1, without emitting events for them.
        max_frame_size: the largest frame accepted.

    Raises:
        WallarooParameterError: ``credits`` is not in 2..2**32-1.
    """

    def __init__(
        self,
        *,
        cookie: str = "",
        version: str = SINK_VERSION,
        credits: int = 500,
        auto_commit: bool = False,
        max_frame_size: int = MAX_FRAME_SIZE,
    ) -> None:
        if not 2 <= credits <= U32_MAX:
            raise WallarooParameterError(f"credits must be in 2..{U32_MAX}, got {credits}")
        self._cookie = cookie
        self._version = version
        self._credits = credits
        self._auto_commit = auto_commit
        self._reader = FrameReader(max_frame_size)
        self._state = _HANDSHAKE
        self._output: list[bytes] = []
        self._streams: set[int] = set()
        self._worker_name: str | None = None
        self._frames_received = 0
        self._payloads = 0
        self._payload_bytes = 0
        self._phase1 = 0
        self._commits = 0
        self._aborts = 0
        self._errors = 0

    @property
    def closed(self) -> bool:
        """True once the session is closed; it then ignores data and sends nothing more."""
        return self._state == _CLOSED

    @property
    def worker_name(self) -> str | None:
        """The worker's name from its HELLO (None before it)."""
        return self._worker_name

    def take_output(self) -> bytes:
        """Return the frames queued for the worker (possibly empty) and forget them."""
        output = b"".join(self._output)
        self._output.clear()
        return output

    def reply_uncommitted(self, rtag: int, txn_ids: Iterable[str]) -> None:
        """Queue REPLY_UNCOMMITTED: the transactions past phase 1 without a phase 2.

        Does nothing once the session is closed (the worker asks again when it reconnects).
        """
        if self._state == _STREAMING:
            self._output.append(wrap_twopc(ReplyUncommitted(rtag, tuple(txn_ids))))

    def vote(self, txn_id: str, commit: bool) -> None:
        """Queue the phase-1 vote on ``txn_id``; vote commit only once its data is durable.

        Does nothing once the session is closed (the worker aborts a transaction whose sink
        disconnected).
        """
        if self._state == _STREAMING:
            self._output.append(wrap_twopc(TwoPCReply(txn_id, commit)))
            if commit:
                self._commits += 1
            else:
                self._aborts += 1

    def connection_lost(self) -> None:
        """The connection is gone; the session is closed."""
        self._state = _CLOSED

    def receive(self, data: bytes) -> list[EndpointEvent]:
        """Consume bytes read from the worker and return what happened, in order.

        Consecutive output MESSAGEs of one stream become one :class:`Payloads` event. A
        protocol violation queues ERROR and ends the list with a :class:`SessionClosed`.
        Never raises for bad input.
        """
        events: list[EndpointEvent] = []
        if self._state == _CLOSED:
            return events
        try:
            items = self._reader.feed_runs(data)
        except FrameError as exc:
            self._fail(f"malformed frame: {exc}", events)
            return events
        for item in items:
            if self._state == _CLOSED:
                return events
            if not isinstance(item, MessageRun):
                self._frames_received += 1
                self._handle(item, events)
            elif self._state != _STREAMING or item.stream_id == CONTROL_STREAM_ID:
                for message in item.messages():  # 2PC frames, or a MESSAGE before HELLO
                    if self._state == _CLOSED:
                        return events
                    self._frames_received += 1
                    self._handle(message, events)
            else:
                self._output_run(item, events)
        if self._reader.error is not None and self._state != _CLOSED:
            self._fail(f"malformed frame: {self._reader.error}", events)
        return events

    def _output_run(self, run: MessageRun, events: list[EndpointEvent]) -> None:
        """Emit a run of output MESSAGEs as one :class:`Payloads` (empty payloads left out)."""
        if run.stream_id not in self._streams:
            self._frames_received += 1
            self._fail(f"message on unregistered stream {run.stream_id}", events)
            return
        self._frames_received += len(run)
        offsets, payloads = run.message_ids, run.payloads
        if None in payloads:
            kept = [i for i, payload in enumerate(payloads) if payload is not None]
            offsets = [offsets[i] for i in kept]
            payloads = [payloads[i] for i in kept]
        if payloads:
            output = cast(list[bytes], payloads)  # no None left
            self._payloads += len(output)
            self._payload_bytes += sum(map(len, output))
            events.append(Payloads(run.stream_id, offsets, output))

    def statistics(self) -> EndpointStatistics:
        """Return a snapshot of the session's counters."""
        return EndpointStatistics(
            state=self._state,
            worker_name=self._worker_name,
            frames_received=self._frames_received,
            payloads_received=self._payloads,
            payload_bytes=self._payload_bytes,
            phase1_requests=self._phase1,
            votes_commit=self._commits,
            votes_abort=self._aborts,
            errors=self._errors,
        )

    def _handle(self, frame: Frame, events: list[EndpointEvent]) -> None:
        if self._state == _HANDSHAKE:
            self._handshake(frame, events)
        elif isinstance(frame, Message):
            self._control(frame, events)
        elif isinstance(frame, Notify):
            if frame.stream_id == CONTROL_STREAM_ID:
                self._fail("stream 0 is reserved for two-phase commit frames", events)
                return
            self._streams.add(frame.stream_id)
            self._output.append(NotifyAck(True, frame.stream_id, frame.point_of_ref).encode())
            events.append(StreamNotified(frame.stream_id, frame.stream_name, frame.point_of_ref))
        elif isinstance(frame, EosMessage):
            if frame.stream_id not in self._streams:
                self._fail(f"end of stream on unregistered stream {frame.stream_id}", events)
                return
            self._streams.discard(frame.stream_id)
            events.append(StreamEnded(frame.stream_id))
        elif isinstance(frame, Error):
            self._close(f"the worker sent ERROR: {frame.message}", events)
        elif isinstance(frame, Hello):
            self._fail("unexpected HELLO: the handshake is already done", events)
        else:
            self._fail(f"a worker must not send {frame.TYPE.name} frames to a sink", events)

    def _handshake(self, frame: Frame, events: list[EndpointEvent]) -> None:
        if not isinstance(frame, Hello):
            self._fail(f"expected HELLO first, got {frame.TYPE.name}", events)
        elif frame.version != self._version:
            self._fail(
                f"unknown protocol version '{clip(frame.version, 80)}', wanted '{self._version}'",
                events,
            )
        elif frame.cookie != self._cookie:
            self._fail(
                f"bad cookie from worker '{clip(frame.instance_name, 80)}': give the sink the "
                "cookie of the application's sink configuration",
                events,
            )
        else:
            self._state = _STREAMING
            self._worker_name = frame.instance_name
            self._output.append(Ok(self._credits).encode())
            events.append(WorkerConnected(frame.instance_name, frame.program_name))

    def _control(self, message: Message, events: list[EndpointEvent]) -> None:
        try:
            inner = unwrap_twopc(message)
        except FrameError as exc:
            self._fail(f"malformed 2PC frame: {exc}", events)
            return
        if isinstance(inner, ListUncommitted):
            if self._auto_commit:
                self.reply_uncommitted(inner.rtag, ())
            else:
                events.append(UncommittedListRequested(inner.rtag))
        elif isinstance(inner, TwoPCPhase1):
            self._phase1 += 1
            if self._auto_commit:
                self.vote(inner.txn_id, True)
            else:
                events.append(Phase1Requested(inner.txn_id, inner.where_list))
        elif isinstance(inner, TwoPCPhase2):
            events.append(Phase2Requested(inner.txn_id, inner.commit))
        elif isinstance(inner, WorkersLeft):
            events.append(WorkersLeftReported(inner.rtag, inner.workers))
        else:
            self._fail(f"a worker must not send {inner.TAG.name}", events)

    def _fail(self, reason: str, events: list[EndpointEvent]) -> None:
        """Queue ERROR(reason) for the worker and close."""
        self._output.append(Error(clip(reason)).encode())
        self._close(reason, events)

    def _close(self, reason: str, events: list[EndpointEvent]) -> None:
        self._state = _CLOSED
        self._errors += 1
        events.append(SessionClosed(reason, error=True))
