"""The connector wire protocol v3, sans-IO: frames, 2PC frames and the session state machines.

Nothing here touches a socket, a thread or an event loop. The layers, lowest first:

* :mod:`~wallaroo.protocol.frames`: frames 0-8 (HELLO ... EOS_MESSAGE) as frozen values with
  byte-exact ``encode()``/``decode_frame()``; :mod:`~wallaroo.protocol.reader`: the incremental
  :class:`FrameReader`; :mod:`~wallaroo.protocol.twopc`: the two-phase-commit frames 201-206
  carried on stream 0 of a sink connection.
* :mod:`~wallaroo.protocol.source_session`: the worker's side of a source connection
  (:class:`SourceSession`, with the one-owner-per-stream :class:`StreamRegistry`);
  :mod:`~wallaroo.protocol.client_session`: the connector's side (:class:`ClientSession`).
* :mod:`~wallaroo.protocol.sink_session`: the worker's side of a sink connection
  (:class:`WorkerSinkSession`) and, from :mod:`~wallaroo.protocol.sink_endpoint`, the external
  sink's side (:class:`SinkEndpointSession`).

Sessions take bytes in ``receive()`` and return events (:mod:`~wallaroo.protocol.events`);
the bytes they produce come back from ``take_output()`` or from the method that made them.
Malformed bytes raise :class:`~wallaroo.errors.FrameError`, a peer breaking the protocol
:class:`~wallaroo.errors.ProtocolError` (sessions on the listening side answer ERROR instead).
"""

from __future__ import annotations

from wallaroo.protocol.client_session import ClientSession, ClientStatistics
from wallaroo.protocol.events import (
    Accepted,
    Acked,
    ClientEvent,
    EndpointEvent,
    HandshakeDone,
    Messages,
    NotifyAcked,
    Payloads,
    Phase1Requested,
    Phase2Requested,
    Rejected,
    RestartRequested,
    SessionClosed,
    SinkError,
    SinkReady,
    SinkRestarted,
    SourceEvent,
    StreamAccepted,
    StreamClosed,
    StreamEnded,
    StreamNotified,
    StreamOpened,
    UncommittedListRequested,
    UncommittedReported,
    VoteReceived,
    WorkerConnected,
    WorkerSinkEvent,
    WorkersLeftReported,
)
from wallaroo.protocol.frames import (
    MAX_FRAME_SIZE,
    NONE_SEEN,
    SINK_VERSION,
    SOURCE_VERSION,
    Ack,
    EosMessage,
    Error,
    Frame,
    FrameType,
    Hello,
    Message,
    Notify,
    NotifyAck,
    Ok,
    Restart,
    decode_frame,
    encode_frame,
    encode_message,
)
from wallaroo.protocol.reader import FrameReader
from wallaroo.protocol.sink_endpoint import EndpointStatistics, SinkEndpointSession
from wallaroo.protocol.sink_session import (
    OUTPUT_STREAM_ID,
    WorkerSinkSession,
    WorkerSinkStatistics,
)
from wallaroo.protocol.source_session import SourceSession, SourceSessionStatistics
from wallaroo.protocol.stream_registry import RegistryStatistics, StreamRegistry
from wallaroo.protocol.twopc import (
    CONTROL_STREAM_ID,
    ListUncommitted,
    ReplyUncommitted,
    TwoPCFrame,
    TwoPCPhase1,
    TwoPCPhase2,
    TwoPCReply,
    TwoPCTag,
    WorkersLeft,
    decode_twopc,
    unwrap_twopc,
    wrap_twopc,
)

__all__ = [
    "CONTROL_STREAM_ID",
    "MAX_FRAME_SIZE",
    "NONE_SEEN",
    "OUTPUT_STREAM_ID",
    "SINK_VERSION",
    "SOURCE_VERSION",
    "Accepted",
    "Ack",
    "Acked",
    "ClientEvent",
    "ClientSession",
    "ClientStatistics",
    "EndpointEvent",
    "EndpointStatistics",
    "EosMessage",
    "Error",
    "Frame",
    "FrameReader",
    "FrameType",
    "HandshakeDone",
    "Hello",
    "ListUncommitted",
    "Message",
    "Messages",
    "Notify",
    "NotifyAck",
    "NotifyAcked",
    "Ok",
    "Payloads",
    "Phase1Requested",
    "Phase2Requested",
    "RegistryStatistics",
    "Rejected",
    "ReplyUncommitted",
    "Restart",
    "RestartRequested",
    "SessionClosed",
    "SinkEndpointSession",
    "SinkError",
    "SinkReady",
    "SinkRestarted",
    "SourceEvent",
    "SourceSession",
    "SourceSessionStatistics",
    "StreamAccepted",
    "StreamClosed",
    "StreamEnded",
    "StreamNotified",
    "StreamOpened",
    "StreamRegistry",
    "TwoPCFrame",
    "TwoPCPhase1",
    "TwoPCPhase2",
    "TwoPCReply",
    "TwoPCTag",
    "UncommittedListRequested",
    "UncommittedReported",
    "VoteReceived",
    "WorkerConnected",
    "WorkerSinkEvent",
    "WorkerSinkSession",
    "WorkerSinkStatistics",
    "WorkersLeft",
    "WorkersLeftReported",
    "decode_frame",
    "decode_twopc",
    "encode_frame",
    "encode_message",
    "unwrap_twopc",
    "wrap_twopc",
]
