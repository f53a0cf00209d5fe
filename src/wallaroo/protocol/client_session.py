"""The connector's side of a connector source connection, sans-IO.

The connector connects to the worker and sends HELLO (:meth:`ClientSession.hello`); after OK it
opens streams with NOTIFY and sends MESSAGEs on the streams the worker accepted. The methods that
produce frames return their bytes for the caller to write; :meth:`ClientSession.receive` turns the
worker's bytes into events. The session keeps the credit balance but does not enforce it: a
sender should pause while :attr:`ClientSession.credits` is not positive.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from wallaroo.errors import FrameError, ProtocolError
from wallaroo.logsummary import clip as peer_text
from wallaroo.protocol._codec import clip, pack_messages
from wallaroo.protocol.events import (
    Accepted,
    Acked,
    ClientEvent,
    NotifyAcked,
    Rejected,
    RestartRequested,
)
from wallaroo.protocol.frames import (
    MAX_FRAME_SIZE,
    SOURCE_VERSION,
    Ack,
    EosMessage,
    Error,
    Frame,
    Hello,
    Notify,
    NotifyAck,
    Ok,
    Restart,
    encode_message,
)
from wallaroo.protocol.reader import FrameReader

__all__ = [
    "Accepted",
    "Acked",
    "ClientEvent",
    "ClientSession",
    "ClientStatistics",
    "NotifyAcked",
    "Rejected",
    "RestartRequested",
]

_NEW: Final = "new"
_HELLO_SENT: Final = "hello sent"
_STREAMING: Final = "streaming"
_CLOSED: Final = "closed"

_PENDING: Final = "pending"  # NOTIFY sent, no NOTIFY_ACK yet
_OPEN: Final = "open"
_ENDED: Final = "closed"


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    """A snapshot of a :class:`ClientSession`."""

    state: str
    credits: int
    messages_sent: int
    notifies_sent: int
    frames_received: int
    acks_received: int
    open_streams: int


class ClientSession:
    """One connection of a source connector to a worker, seen from the connector.

    Args:
        version: the protocol version sent in HELLO.
        cookie: the cookie the worker expects.
        program_name: names the connector program (informative for the worker).
        instance_name: names this instance of it.
        max_frame_size: the largest frame accepted from the worker.

    Every method that meets a broken protocol raises :class:`ProtocolError` (a
    :class:`FrameError` for malformed bytes) and closes the session; send ``error(reason)``
    to tell the worker, then drop the connection. A closed session ignores further data.
    """

    def __init__(
        self,
        version: str = SOURCE_VERSION,
        cookie: str = "",
        program_name: str = "",
        instance_name: str = "",
        max_frame_size: int = MAX_FRAME_SIZE,
    ) -> None:
        self._hello = Hello(version, cookie, program_name, instance_name)
        self._reader = FrameReader(max_frame_size)
        self._state = _NEW
        self._streams: dict[int, str] = {}
        self._credits = 0
        self._messages_sent = 0
        self._notifies_sent = 0
        self._frames_received = 0
        self._acks_received = 0

    @property
    def credits(self) -> int:
        """Credits left: OK's and every ACK's added, one spent per MESSAGE and per NOTIFY."""
        return self._credits

    @property
    def closed(self) -> bool:
        """True after ERROR or RESTART from the worker, a protocol violation, or ``error()``."""
        return self._state == _CLOSED

    def is_open(self, stream_id: int) -> bool:
        """Return True if the worker accepted ``stream_id`` and it has not ended since."""
        return self._streams.get(stream_id) == _OPEN

    def hello(self) -> bytes:
        """Return the HELLO frame that opens the session.

        Raises:
            ProtocolError: HELLO was already sent.
            FrameError: a HELLO string is longer than 65535 UTF-8 bytes.
        """
        if self._state != _NEW:
            raise ProtocolError("HELLO was already sent on this session; start a new one")
        frame = self._hello.encode()
        self._state = _HELLO_SENT
        return frame

    def notify(self, stream_id: int, name: str, point_of_ref: int) -> bytes:
        """Return a NOTIFY frame asking to open ``stream_id``; costs one credit.

        Wait for :class:`NotifyAcked` before sending messages, and resume from its point of
        reference, not from ``point_of_ref``.

        Raises:
            ProtocolError: the handshake is not done (no OK yet) or the session is closed.
            FrameError: an integer is out of range or the name too long.
        """
        self._require(_STREAMING, "NOTIFY")
        frame = Notify(stream_id, name, point_of_ref).encode()
        if self._streams.get(stream_id) != _OPEN:
            self._streams[stream_id] = _PENDING
        self._credits -= 1
        self._notifies_sent += 1
        return frame

    def message(
        self,
        stream_id: int,
        message_id: int,
        payload: bytes | None,
        event_time: int = 0,
        key: bytes | None = None,
    ) -> bytes:
        """Return one MESSAGE frame; costs one credit.

        Raises:
            ProtocolError: ``stream_id`` is not open (not acked, refused or ended).
            FrameError: an integer is out of range or the key too long.
        """
        self._require_open(stream_id)
        frame = encode_message(stream_id, message_id, event_time, key, payload)
        self._credits -= 1
        self._messages_sent += 1
        return frame

    def messages(
        self,
        stream_id: int,
        items: Iterable[tuple[int, bytes | None]],
        event_time: int = 0,
        key: bytes | None = None,
    ) -> bytes:
        """Return many MESSAGE frames as one bytes object, for one write; one credit each.

        Args:
            stream_id: an open stream.
            items: ``(message_id, payload)`` pairs, ids strictly increasing.
            event_time: the event time of every message.
            key: the key of every message.

        Raises:
            ProtocolError: ``stream_id`` is not open.
            FrameError: an integer is out of range or the key too long; nothing is spent.
        """
        pairs = list(items)
        ids = [message_id for message_id, _ in pairs]
        payloads = [payload or b"" for _, payload in pairs]
        return self._frames(stream_id, ids, payloads, event_time, key)

    def message_run(
        self,
        stream_id: int,
        first_id: int,
        payloads: Sequence[bytes],
        event_time: int = 0,
        key: bytes | None = None,
    ) -> bytes:
        """Return MESSAGE frames with the ids ``first_id``, ``first_id + 1``, ... carrying
        ``payloads``, as one bytes object; one credit each.

        The same as :meth:`messages` without a ``(message_id, payload)`` pair per message: the
        fast path of a connector whose ids count up.

        Raises:
            ProtocolError: ``stream_id`` is not open.
            FrameError: an integer is out of range or the key too long; nothing is spent.
        """
        ids = range(first_id, first_id + len(payloads))
        return self._frames(stream_id, ids, payloads, event_time, key)

    def _frames(
        self,
        stream_id: int,
        ids: Sequence[int],
        payloads: Sequence[bytes],
        event_time: int,
        key: bytes | None,
    ) -> bytes:
        self._require_open(stream_id)
        key = key or b""
        try:
            data = pack_messages(stream_id, ids, payloads, event_time, key)
        except struct.error as exc:
            for message_id, payload in zip(ids, payloads, strict=True):
                encode_message(stream_id, message_id, event_time, key, payload)  # names the culprit
            raise FrameError(f"MESSAGE frames do not fit their fields: {exc}") from exc
        self._credits -= len(payloads)
        self._messages_sent += len(payloads)
        return data

    def eos(self, stream_id: int) -> bytes:
        """Return an EOS_MESSAGE frame ending ``stream_id``; costs no credit.

        Raises:
            ProtocolError: ``stream_id`` is not open.
        """
        self._require_open(stream_id)
        self._streams[stream_id] = _ENDED
        return EosMessage(stream_id).encode()

    def error(self, reason: str) -> bytes:
        """Close the session and return an ERROR frame telling the worker why."""
        self._state = _CLOSED
        return Error(clip(reason)).encode()

    def receive(self, data: bytes) -> list[ClientEvent]:
        """Consume bytes read from the worker and return what happened, in order.

        Raises:
            ProtocolError: a frame the worker must not send, or one out of order (an OK twice,
                anything before HELLO was sent). The session is closed.
            FrameError: malformed bytes. The session is closed.
        """
        events: list[ClientEvent] = []
        if self._state == _CLOSED:
            return events
        if self._state == _NEW:
            self._state = _CLOSED
            raise ProtocolError("the worker sent data before HELLO; call hello() first")
        try:
            frames = self._reader.feed(data)
            for frame in frames:
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

    def statistics(self) -> ClientStatistics:
        """Return a snapshot of the session's counters."""
        return ClientStatistics(
            state=self._state,
            credits=self._credits,
            messages_sent=self._messages_sent,
            notifies_sent=self._notifies_sent,
            frames_received=self._frames_received,
            acks_received=self._acks_received,
            open_streams=sum(1 for state in self._streams.values() if state == _OPEN),
        )

    def _handle(self, frame: Frame, events: list[ClientEvent]) -> None:
        if isinstance(frame, Error):
            self._state = _CLOSED
            events.append(Rejected(peer_text(frame.message)))  # it reaches log lines
        elif isinstance(frame, Ok):
            if self._state != _HELLO_SENT:
                raise ProtocolError("the worker sent OK twice")
            self._state = _STREAMING
            self._credits += frame.initial_credits
            events.append(Accepted(frame.initial_credits))
        elif self._state != _STREAMING:
            raise ProtocolError(f"the worker sent {frame.TYPE.name} before OK")
        elif isinstance(frame, NotifyAck):
            self._notify_acked(frame, events)
        elif isinstance(frame, Ack):
            self._credits += frame.credits
            self._acks_received += 1
            events.append(Acked(frame.credits, frame.acks))
        elif isinstance(frame, Restart):
            self._state = _CLOSED
            for stream_id in self._streams:
                self._streams[stream_id] = _ENDED
            events.append(RestartRequested(frame.address))
        else:
            raise ProtocolError(f"a worker must not send {frame.TYPE.name} frames to a connector")

    def _notify_acked(self, frame: NotifyAck, events: list[ClientEvent]) -> None:
        if self._streams.get(frame.stream_id) is None:
            raise ProtocolError(
                f"NOTIFY_ACK for stream {frame.stream_id}, which was never notified"
            )
        self._streams[frame.stream_id] = _OPEN if frame.success else _ENDED
        events.append(NotifyAcked(frame.stream_id, frame.success, frame.point_of_ref))

    def _require(self, state: str, what: str) -> None:
        if self._state != state:
            if self._state == _CLOSED:
                raise ProtocolError(f"cannot send {what}: the session is closed")
            raise ProtocolError(f"cannot send {what} before the worker's OK")

    def _require_open(self, stream_id: int) -> None:
        self._require(_STREAMING, "MESSAGE or EOS")
        if self._streams.get(stream_id) != _OPEN:
            raise ProtocolError(
                f"stream {stream_id} is not open: NOTIFY it and wait for a successful NOTIFY_ACK"
            )
