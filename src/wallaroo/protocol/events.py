"""The events the sans-IO sessions return from ``receive()``: frozen records, one type per fact.

Each session module re-exports the events it produces; the type aliases at the end name the events
one kind of session can return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "Accepted",
    "Acked",
    "ClientEvent",
    "EndpointEvent",
    "HandshakeDone",
    "Messages",
    "NotifyAcked",
    "Payloads",
    "Phase1Requested",
    "Phase2Requested",
    "Rejected",
    "RestartRequested",
    "SessionClosed",
    "SinkError",
    "SinkReady",
    "SinkRestarted",
    "SourceEvent",
    "StreamAccepted",
    "StreamClosed",
    "StreamEnded",
    "StreamNotified",
    "StreamOpened",
    "UncommittedListRequested",
    "UncommittedReported",
    "VoteReceived",
    "WorkerConnected",
    "WorkerSinkEvent",
    "WorkersLeftReported",
]


# -- worker side of a source connection (SourceSession) ---------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeDone:
    """The connector's HELLO was accepted and OK sent."""

    program_name: str
    instance_name: str


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """A NOTIFY succeeded: the stream belongs to this session from ``point_of_ref`` on."""

    stream_id: int
    stream_name: str
    point_of_ref: int


@dataclass(frozen=True, slots=True)
class Messages:
    """Consecutive, de-duplicated MESSAGEs of one stream (the four lists are parallel).

    A payload of None is a message without data: nothing to decode, but its id counts as seen and
    may be reported to ``processed()``.
    """

    stream_id: int
    message_ids: list[int]
    event_times: list[int]
    keys: list[bytes | None]
    payloads: list[bytes | None]


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """EOS_MESSAGE: the stream ended; ``point_of_ref`` is its last message id seen."""

    stream_id: int
    point_of_ref: int


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The session closed; ``error`` is True when a protocol error (sent or received) closed it."""

    reason: str
    error: bool


# -- connector side of a source connection (ClientSession) -----------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """OK: the handshake succeeded and ``credits`` were granted."""

    credits: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """ERROR from the worker; the session is closed."""

    message: str


@dataclass(frozen=True, slots=True)
class NotifyAcked:
    """NOTIFY_ACK: on success, resume after ``point_of_ref`` (2**64-1: from the very start)."""

    stream_id: int
    success: bool
    point_of_ref: int


@dataclass(frozen=True, slots=True)
class Acked:
    """ACK: new credits, and the ``(stream_id, point_of_ref)`` pairs the worker has handled."""

    credits: int
    acks: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class RestartRequested:
    """RESTART: reconnect (to ``address`` if not empty) and re-NOTIFY every stream."""

    address: str


# -- worker side of a sink connection (WorkerSinkSession) ------------------------------------


@dataclass(frozen=True, slots=True)
class SinkReady:
    """OK from the sink."""

    credits: int


@dataclass(frozen=True, slots=True)
class StreamAccepted:
    """The sink accepted the output stream (its point of reference is informative only)."""

    stream_id: int
    point_of_ref: int


@dataclass(frozen=True, slots=True)
class UncommittedReported:
    """REPLY_UNCOMMITTED: transactions the sink holds after phase 1 without a phase 2."""

    rtag: int
    txn_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VoteReceived:
    """TWOPC_REPLY: the sink's phase-1 vote."""

    txn_id: str
    commit: bool


@dataclass(frozen=True, slots=True)
class SinkError:
    """ERROR from the sink; the session is closed."""

    message: str


@dataclass(frozen=True, slots=True)
class SinkRestarted:
    """RESTART from the sink; the session is closed and the worker should reconnect."""

    address: str


# -- external sink side of a sink connection (SinkEndpointSession) ---------------------------


@dataclass(frozen=True, slots=True)
class WorkerConnected:
    """A worker's HELLO was accepted and OK sent."""

    worker_name: str
    program_name: str


@dataclass(frozen=True, slots=True)
class StreamNotified:
    """A worker opened an output stream (NOTIFY_ACK sent)."""

    stream_id: int
    stream_name: str
    point_of_ref: int


@dataclass(frozen=True, slots=True)
class Payloads:
    """Consecutive output MESSAGEs of one stream; ``offsets`` are their message ids (byte offsets
    of each payload in the worker's output) and parallel ``payloads``."""

    stream_id: int
    offsets: list[int]
    payloads: list[bytes]


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """EOS_MESSAGE from the worker: the stream is closed until notified again."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class UncommittedListRequested:
    """LIST_UNCOMMITTED: answer with ``reply_uncommitted(rtag, txn_ids)``."""

    rtag: int


@dataclass(frozen=True, slots=True)
class Phase1Requested:
    """PHASE1: make the ranges durable, then answer with ``vote(txn_id, commit)``."""

    txn_id: str
    where_list: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True, slots=True)
class Phase2Requested:
    """PHASE2: the outcome of a transaction (commit: make visible; abort: discard)."""

    txn_id: str
    commit: bool


@dataclass(frozen=True, slots=True)
class WorkersLeftReported:
    """WORKERS_LEFT: those workers' output streams are finished."""

    rtag: int
    workers: tuple[str, ...]


SourceEvent: TypeAlias = HandshakeDone | StreamOpened | Messages | StreamClosed | SessionClosed
"""What ``SourceSession.receive`` returns."""

ClientEvent: TypeAlias = Accepted | Rejected | NotifyAcked | Acked | RestartRequested
"""What ``ClientSession.receive`` returns."""

WorkerSinkEvent: TypeAlias = (
    SinkReady | StreamAccepted | UncommittedReported | VoteReceived | SinkError | SinkRestarted
)
"""What ``WorkerSinkSession.receive`` returns."""

EndpointEvent: TypeAlias = (
    WorkerConnected
    | StreamNotified
    | Payloads
    | StreamEnded
    | UncommittedListRequested
    | Phase1Requested
    | Phase2Requested
    | WorkersLeftReported
    | SessionClosed
)
"""What ``SinkEndpointSession.receive`` returns."""
