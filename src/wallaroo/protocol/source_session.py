"""The worker's side of a connector source connection, sans-IO.

The worker listens and a connector connects. The connection runs HELLO -> OK, then NOTIFY ->
NOTIFY_ACK per stream, then MESSAGEs and EOS_MESSAGEs; the worker answers with ACKs that grant
credits and report handled positions. :class:`SourceSession` is the state machine over bytes: the
caller feeds what the socket read to :meth:`SourceSession.receive`, sends what
:meth:`SourceSession.take_output` returns, and reports progress with
:meth:`SourceSession.processed` and :meth:`SourceSession.flush_acks`.

Any frame a connector must not send, or malformed bytes, queue an ERROR frame and close the
session; later data is ignored. Every stream is given back to the :class:`StreamRegistry` when the
session closes, at its last processed point of reference (its last acked one with
``acks_after_checkpoint``).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from wallaroo.errors import FrameError, WallarooParameterError
from wallaroo.protocol._codec import U32_MAX, check_int, clip
from wallaroo.protocol.events import (
    HandshakeDone,
    Messages,
    SessionClosed,
    SourceEvent,
    StreamClosed,
    StreamOpened,
)
from wallaroo.protocol.frames import (
    MAX_FRAME_SIZE,
    NONE_SEEN,
    SOURCE_VERSION,
    Ack,
    EosMessage,
    Error,
    Frame,
    Hello,
    Notify,
    NotifyAck,
    Ok,
)
from wallaroo.protocol.reader import FrameReader, MessageRun, RunItem
from wallaroo.protocol.stream_registry import RegistryStatistics, StreamRegistry

__all__ = [
    "HandshakeDone",
    "Messages",
    "RegistryStatistics",
    "SessionClosed",
    "SourceEvent",
    "SourceSession",
    "SourceSessionStatistics",
    "StreamClosed",
    "StreamOpened",
    "StreamRegistry",
]

_HANDSHAKE: Final = "handshake"
_STREAMING: Final = "streaming"
_CLOSED: Final = "closed"


@dataclass(frozen=True, slots=True)
class SourceSessionStatistics:
    """A snapshot of a :class:`SourceSession`.

    ``frames_received`` counts every frame decoded, HELLO included. ``credits_outstanding`` is
    what the connector may still send before the next ACK, as the worker counts (one per frame
    after HELLO); it goes negative if the connector overspends.
    """

    state: str
    frames_received: int
    messages_delivered: int
    duplicates_skipped: int
    credits_outstanding: int
    open_streams: int
    notifies_refused: int
    acks_sent: int
    errors: int


class _Stream:
    """Per-stream state. ``last_seen`` is None until a message is seen (NONE_SEEN on the wire)."""

    __slots__ = ("acked", "closing", "last_seen", "name", "processed", "stream_id")

    def __init__(
        self, stream_id: int, name: str, point_of_ref: int, seen: int | None = None
    ) -> None:
        seen = point_of_ref if seen is None else seen
        self.stream_id = stream_id
        self.name = name
        self.last_seen: int | None = None if seen == NONE_SEEN else seen
        self.processed = seen
        self.acked = point_of_ref
        self.closing = False  # EOS seen, waiting for a checkpoint (acks_after_checkpoint only)

    def seen(self) -> int:
        return NONE_SEEN if self.last_seen is None else self.last_seen


class SourceSession:
    """One connector connection, seen from the worker.

    Args:
        cookie: the cookie the connector's HELLO must carry.
        max_credits: credits granted by OK, and the balance every ACK tops the connector up to.
        refill_credits: once the connector's remaining credits drop to this, ``flush_acks()``
            sends an ACK.
        registry: the owner of every stream id, shared by all sessions of a listener.
        version: the protocol version HELLO must carry.
        max_frame_size: the largest frame accepted; a larger length prefix is a protocol error.
        acks_after_checkpoint: when True, acks are only sent by :meth:`checkpoint_committed`,
            and a stream closed by EOS is released once a checkpoint covers its last message.

    Raises:
        WallarooParameterError: ``max_credits`` is not in 1..2**32-1 or ``refill_credits`` not
            in 0..max_credits-1.
    """

    def __init__(
        self,
        *,
        cookie: str,
        max_credits: int,
        refill_credits: int,
        registry: StreamRegistry,
        version: str = SOURCE_VERSION,
        max_frame_size: int = MAX_FRAME_SIZE,
        acks_after_checkpoint: bool = False,
    ) -> None:
        if not 1 <= max_credits <= U32_MAX:
            raise WallarooParameterError(f"max_credits must be in 1..{U32_MAX}, got {max_credits}")
        if not 0 <= refill_credits < max_credits:
            raise WallarooParameterError(
                f"refill_credits must be in 0..max_credits-1 ({max_credits - 1}), "
                f"got {refill_credits}"
            )
        self._cookie = cookie
        self._max_credits = max_credits
        self._refill_credits = refill_credits
        self._registry = registry
        self._version = version
        self._acks_after_checkpoint = acks_after_checkpoint
        self._reader = FrameReader(max_frame_size)
        self._state = _HANDSHAKE
        self._output: list[bytes] = []
        self._streams: dict[int, _Stream] = {}
        self._pending_acks: dict[int, int] = {}
        self._credits = 0
        self._frames_received = 0
        self._delivered = 0
        self._duplicates = 0
        self._refused = 0
        self._acks_sent = 0
        self._errors = 0

    @property
    def closed(self) -> bool:
        """True once the session is closed; it then ignores data and sends nothing more."""
        return self._state == _CLOSED

    def take_output(self) -> bytes:
        """Return the frames queued for the connector (possibly empty) and forget them."""
        output = b"".join(self._output)
        self._output.clear()
        return output

    def receive(self, data: bytes) -> list[SourceEvent]:
        """Consume bytes read from the connection and return what happened, in order.

        Consecutive MESSAGEs of one stream become one :class:`Messages` event, duplicates
        removed. A protocol violation queues an ERROR frame and ends the list with a
        :class:`SessionClosed`; frames after it are ignored. Never raises for bad input.
        """
        events: list[SourceEvent] = []
        if self._state == _CLOSED:
            return events
        try:
            items = self._reader.feed_runs(data)
        except FrameError as exc:
            self._fail(f"malformed frame: {exc}", events)
            return events
        for item in items:
            if self._state != _STREAMING:
                if self._state == _CLOSED:
                    return events
                self._frames_received += 1
                self._handshake(item, events)
            elif isinstance(item, MessageRun):
                self._messages(item, events)
            else:
                self._frames_received += 1
                self._credits -= 1
                self._control(item, events)
        if self._reader.error is not None and self._state != _CLOSED:
            self._fail(f"malformed frame: {self._reader.error}", events)
        return events

    def _messages(self, run: MessageRun, events: list[SourceEvent]) -> None:
        """Deliver a run of MESSAGEs of one stream as one event, without the ids already seen."""
        stream = self._streams.get(run.stream_id)
        if stream is None or stream.closing:
            self._frames_received += 1
            self._credits -= 1
            self._fail(f"message on unregistered stream {run.stream_id}", events)
            return
        count = len(run)
        self._frames_received += count
        self._credits -= count
        ids = run.message_ids
        last_seen = stream.last_seen
        if (last_seen is None or ids[0] > last_seen) and _increasing(ids):
            event = Messages(stream.stream_id, ids, run.event_times, run.keys, run.payloads)
        else:
            event = _without_seen(stream.stream_id, run, last_seen)
        kept = len(event.message_ids)
        self._duplicates += count - kept
        if kept:
            stream.last_seen = event.message_ids[-1]
            self._delivered += kept
            events.append(event)

    def _handshake(self, frame: RunItem, events: list[SourceEvent]) -> None:
        if not isinstance(frame, Hello):
            self._fail(f"expected HELLO first, got {frame.TYPE.name}", events)
        elif frame.version != self._version:
            self._fail(
                f"unknown protocol version '{clip(frame.version, 80)}', wanted '{self._version}'",
                events,
            )
        elif frame.cookie != self._cookie:
            self._fail(
                f"bad cookie from connector '{clip(frame.program_name, 80)}' instance "
                f"'{clip(frame.instance_name, 80)}': give it the cookie of the application's "
                "source configuration",
                events,
            )
        else:
            self._output.append(Ok(self._max_credits).encode())
            self._credits = self._max_credits
            self._state = _STREAMING
            events.append(HandshakeDone(frame.program_name, frame.instance_name))

    def _control(self, frame: Frame, events: list[SourceEvent]) -> None:
        if isinstance(frame, Notify):
            self._notify(frame, events)
        elif isinstance(frame, EosMessage):
            self._end_of_stream(frame.stream_id, events)
        elif isinstance(frame, Error):
            self._close(f"the connector sent ERROR: {frame.message}", events)
        elif isinstance(frame, Hello):
            self._fail("unexpected HELLO: the handshake is already done", events)
        else:
            self._fail(f"a connector must not send {frame.TYPE.name} frames", events)

    def _notify(self, frame: Notify, events: list[SourceEvent]) -> None:
        stream_id = frame.stream_id
        stream = self._streams.get(stream_id)
        if stream is not None:
            # Already ours: an open stream is re-acked as it stands; a closing one is refused
            # until a checkpoint releases it (the connector retries).
            if stream.closing:
                self._refused += 1
            self._output.append(NotifyAck(not stream.closing, stream_id, stream.seen()).encode())
            return
        acquired, point_of_ref = self._registry.acquire(stream_id, self)
        self._output.append(NotifyAck(acquired, stream_id, point_of_ref).encode())
        if not acquired:
            self._refused += 1
            return
        seen = self._registry.seen_point(stream_id)
        self._streams[stream_id] = _Stream(stream_id, frame.stream_name, point_of_ref, seen)
        events.append(StreamOpened(stream_id, frame.stream_name, point_of_ref))

    def _end_of_stream(self, stream_id: int, events: list[SourceEvent]) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.closing:
            self._fail(f"end of stream on unregistered stream {stream_id}", events)
            return
        point_of_ref = stream.seen()
        events.append(StreamClosed(stream_id, point_of_ref))
        if self._acks_after_checkpoint:
            stream.closing = True
            return
        del self._streams[stream_id]
        self._pending_acks.pop(stream_id, None)
        self._registry.release(stream_id, self, point_of_ref)
        self._output.append(Ack(0, ((stream_id, point_of_ref),)).encode())
        self._acks_sent += 1

    def processed(self, stream_id: int, point_of_ref: int) -> bool:
        """Record that every message of ``stream_id`` up to ``point_of_ref`` is fully handled.

        Without ``acks_after_checkpoint`` the pair goes into the next ACK. Call
        :meth:`flush_acks` afterwards: it decides when an ACK is due.

        Returns:
            False, recording nothing, if the stream is not open on this session (it may have
            ended or the session closed while the messages were being handled).

        Raises:
            FrameError: ``point_of_ref`` is not a u64.
        """
        check_int(point_of_ref, "u64", "point_of_ref")
        stream = self._streams.get(stream_id)
        if stream is None:
            return False
        stream.processed = point_of_ref
        if not self._acks_after_checkpoint:
            self._pending_acks[stream_id] = point_of_ref
        return True

    def flush_acks(self, force: bool = False) -> bool:
        """Queue one ACK if one is due.

        An ACK is due when the connector's remaining credits have dropped to ``refill_credits``
        or below, or, with ``force``, when positions were processed since the last ACK. It
        carries ``max_credits - remaining`` credits and the positions processed since the last
        ACK. Credits are thus granted only as fast as the caller reports progress.

        Returns:
            True if an ACK was queued.
        """
        if self._state != _STREAMING:
            return False
        if self._credits > self._refill_credits and not (force and self._pending_acks):
            return False
        acks = tuple(self._pending_acks.items())
        self._pending_acks.clear()
        self._send_ack(acks)
        return True

    def checkpoint_committed(self, por_by_stream: Mapping[int, int]) -> None:
        """A checkpoint covering these positions is durable: ack them and top credits up.

        Streams of the mapping that are not open on this session are skipped. A stream closed
        by EOS is released to the registry once the position covers its last message.
        """
        if self._state != _STREAMING:
            return
        acks: list[tuple[int, int]] = []
        for stream_id, point_of_ref in por_by_stream.items():
            stream = self._streams.get(stream_id)
            if stream is None:
                continue
            stream.acked = point_of_ref
            acks.append((stream_id, point_of_ref))
            # NONE_SEEN (a checkpoint taken before the stream's first message) covers nothing,
            # though it is the largest u64.
            covered = point_of_ref != NONE_SEEN and point_of_ref >= (stream.last_seen or 0)
            if stream.closing and (stream.last_seen is None or covered):
                del self._streams[stream_id]
                self._registry.release(stream_id, self, point_of_ref)
        self._send_ack(tuple(acks))

    def positions(self) -> dict[int, int]:
        """The last processed point of reference of every stream this session holds."""
        return {stream_id: stream.processed for stream_id, stream in self._streams.items()}

    def connection_lost(self) -> None:
        """The connection is gone: close, and give every stream back to the registry.

        A stream is released at its last processed point of reference (its last acked one with
        ``acks_after_checkpoint``), so a reconnecting connector resumes after what is handled.
        Idempotent.
        """
        if self._state != _CLOSED:
            self._state = _CLOSED
            self._release_streams()

    def statistics(self) -> SourceSessionStatistics:
        """Return a snapshot of the session's counters."""
        return SourceSessionStatistics(
            state=self._state,
            frames_received=self._frames_received,
            messages_delivered=self._delivered,
            duplicates_skipped=self._duplicates,
            credits_outstanding=self._credits,
            open_streams=sum(1 for stream in self._streams.values() if not stream.closing),
            notifies_refused=self._refused,
            acks_sent=self._acks_sent,
            errors=self._errors,
        )

    def _send_ack(self, acks: tuple[tuple[int, int], ...]) -> None:
        # A connector that overspent (or sent uncounted EOS frames) is topped up to max, no more.
        grant = self._max_credits - max(self._credits, 0)
        self._credits = self._max_credits
        self._output.append(Ack(grant, acks).encode())
        self._acks_sent += 1

    def _release_streams(self) -> None:
        for stream_id, stream in self._streams.items():
            point_of_ref = stream.acked if self._acks_after_checkpoint else stream.processed
            self._registry.release(stream_id, self, point_of_ref, stream.processed)
        self._streams.clear()
        self._pending_acks.clear()

    def _fail(self, reason: str, events: list[SourceEvent]) -> None:
        """Queue ERROR(reason) for the connector and close."""
        self._output.append(Error(clip(reason)).encode())
        self._close(reason, events)

    def _close(self, reason: str, events: list[SourceEvent]) -> None:
        self._state = _CLOSED
        self._errors += 1
        self._release_streams()
        events.append(SessionClosed(reason, error=True))


def _increasing(ids: list[int]) -> bool:
    """True if every id is larger than the one before it (checked at C speed)."""
    return all(map(operator.lt, ids, itertools.islice(ids, 1, None)))


def _without_seen(stream_id: int, run: MessageRun, last_seen: int | None) -> Messages:
    """The run without the messages whose id is not above every id seen before it."""
    event = Messages(stream_id, [], [], [], [])
    for message_id, event_time, key, payload in zip(
        run.message_ids, run.event_times, run.keys, run.payloads, strict=True
    ):
        if last_seen is not None and message_id <= last_seen:
            continue
        last_seen = message_id
        event.message_ids.append(message_id)
        event.event_times.append(event_time)
        event.keys.append(key)
        event.payloads.append(payload)
    return event
