"""Scripted byte sessions for both ends of a connector sink connection (two-phase commit)."""

from __future__ import annotations

import pytest

from wallaroo.errors import FrameError, ProtocolError, WallarooParameterError
from wallaroo.protocol import (
    Ack,
    EndpointStatistics,
    EosMessage,
    Error,
    Frame,
    FrameReader,
    Hello,
    ListUncommitted,
    Message,
    Notify,
    NotifyAck,
    Ok,
    Payloads,
    Phase1Requested,
    Phase2Requested,
    ReplyUncommitted,
    Restart,
    SessionClosed,
    SinkEndpointSession,
    SinkError,
    SinkReady,
    SinkRestarted,
    StreamAccepted,
    StreamEnded,
    StreamNotified,
    TwoPCFrame,
    TwoPCPhase1,
    TwoPCPhase2,
    TwoPCReply,
    UncommittedListRequested,
    UncommittedReported,
    VoteReceived,
    WorkerConnected,
    WorkerSinkSession,
    WorkerSinkStatistics,
    WorkersLeft,
    WorkersLeftReported,
    unwrap_twopc,
    wrap_twopc,
)

NAME = "app-w-initializer-id-1"


def worker() -> WorkerSinkSession:
    return WorkerSinkSession(app_name="app", worker_name="initializer", sink_id=1, cookie="c")


def connected() -> WorkerSinkSession:
    """A worker session past OK and NOTIFY_ACK."""
    w = worker()
    w.intro(1)
    w.receive(Ok(500).encode() + NotifyAck(True, 1, 0).encode())
    return w


def frames(data: bytes) -> list[Frame]:
    return FrameReader().feed(data)


def inner(data: bytes) -> list[TwoPCFrame]:
    """The 2PC frames carried by the stream-0 MESSAGEs of ``data``."""
    return [unwrap_twopc(f) for f in frames(data) if isinstance(f, Message) and f.stream_id == 0]


# -- worker side: intro and handshake ---------------------------------------------------------


def test_intro_bytes() -> None:
    w = worker()
    assert w.stream_name == NAME
    assert w.closed
    data = w.intro(42)
    assert data == (
        Hello("v0.0.1", "c", "app", "initializer").encode()
        + Notify(1, NAME, 0).encode()
        + Message(0, 0, 0, None, bytes.fromhex("c9000000000000002a")).encode()
    )
    assert not w.closed


def test_data_before_intro_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="before the worker's intro"):
        worker().receive(Ok(500).encode())


def test_handshake_events() -> None:
    w = worker()
    w.intro(1)
    events = w.receive(
        Ok(500).encode()
        + NotifyAck(True, 1, 0).encode()
        + wrap_twopc(ReplyUncommitted(1, (f"{NAME}:c_id=3",)))
    )
    assert events == [
        SinkReady(500),
        StreamAccepted(1, 0),
        UncommittedReported(1, (f"{NAME}:c_id=3",)),
    ]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (Ok(1).encode(), "too few credits"),
        (Ok(5).encode() + Ok(5).encode(), "OK twice"),
        (NotifyAck(True, 1, 0).encode(), "NOTIFY_ACK before OK"),
        (Ok(5).encode() + NotifyAck(False, 1, 0).encode(), "refused output stream"),
        (Ok(5).encode() + NotifyAck(True, 2, 0).encode(), "unexpected NOTIFY_ACK for stream 2"),
        (Ok(5).encode() + 2 * NotifyAck(True, 1, 0).encode(), "unexpected NOTIFY_ACK"),
        (Ok(5).encode() + Ack(5, ()).encode(), "must not send ACK"),
        (Ok(5).encode() + Hello("v0.0.1", "", "", "").encode(), "must not send HELLO"),
        (Ok(5).encode() + Notify(1, "x", 0).encode(), "must not send NOTIFY"),
        (Ok(5).encode() + EosMessage(1).encode(), "must not send EOS_MESSAGE"),
        (Ok(5).encode() + wrap_twopc(ListUncommitted(1)), "must not send LIST_UNCOMMITTED"),
        (Ok(5).encode() + Message(1, 0, 0, None, b"x").encode(), "stream 0, not on stream 1"),
        (Ok(5).encode() + Message(0, 0, 0, None, b"\x01").encode(), "unknown 2PC frame tag 1"),
        (Ok(5).encode() + b"\x00\x00\x00\x01\x63", "unknown frame type 99"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_sink_protocol_violations_raise_and_close(data: bytes, match: str) -> None:
    w = worker()
    w.intro(1)
    with pytest.raises(ProtocolError, match=match):
        w.receive(data)
    assert w.closed
    assert w.receive(Ok(5).encode()) == []


def test_a_sink_error_message_is_escaped_and_clipped_for_the_log() -> None:
    (event,) = connected().receive(Error("evil\x1b[2J\nline " + "x" * 5000).encode())
    assert isinstance(event, SinkError)
    assert "\x1b" not in event.message and "\n" not in event.message
    assert event.message.startswith("evil\\x1b[2J\\nline xxx") and len(event.message) < 400


def test_sink_error_and_restart_close_the_connection() -> None:
    w = connected()
    assert w.receive(Error("Bad cookie").encode() + Ok(5).encode()) == [SinkError("Bad cookie")]
    assert w.closed
    w.intro(2)
    assert w.receive(Restart("").encode()) == [SinkRestarted("")]
    assert w.closed


def test_malformed_bytes_raise_frame_error() -> None:
    w = worker()
    w.intro(1)
    with pytest.raises(FrameError, match="bad frame length 0"):
        w.receive(b"\x00\x00\x00\x00")


# -- worker side: output and two-phase commit ------------------------------------------------


def test_payload_message_ids_are_byte_offsets() -> None:
    w = connected()
    data = w.payloads([b"abc", b"", b"de"])
    assert frames(data) == [Message(1, 0, 0, None, b"abc"), Message(1, 3, 0, None, b"de")]
    assert w.offset == 5
    assert frames(w.payloads([b"f"])) == [Message(1, 5, 0, None, b"f")]
    assert w.payloads([]) == b""
    assert w.statistics().payloads_sent == 3


def test_txn_ids_and_phase_bytes() -> None:
    w = connected()
    w.payloads([b"x" * 1000])
    assert w.txn_id(3) == f"{NAME}:c_id=3"
    assert w.phase1(3) == wrap_twopc(TwoPCPhase1(f"{NAME}:c_id=3", ((1, 0, 1000),)))
    assert w.pending_txn == f"{NAME}:c_id=3"
    with pytest.raises(ProtocolError, match="between phase 1 and phase 2"):
        w.payloads([b"y"])
    with pytest.raises(ProtocolError, match="has not had its phase 2"):
        w.phase1(4)
    assert w.receive(wrap_twopc(TwoPCReply(f"{NAME}:c_id=3", True))) == [
        VoteReceived(f"{NAME}:c_id=3", True)
    ]
    assert w.phase2(f"{NAME}:c_id=3", True) == wrap_twopc(TwoPCPhase2(f"{NAME}:c_id=3", True))
    assert (w.committed_offset, w.offset) == (1000, 1000)
    assert w.statistics().pending_txn is None
    w.payloads([b"y" * 800])
    assert inner(w.phase1(4)) == [TwoPCPhase1(f"{NAME}:c_id=4", ((1, 1000, 1800),))]


def test_aborted_phase2_rewinds_to_the_committed_offset() -> None:
    w = connected()
    w.payloads([b"abcd"])
    w.phase1(1)
    assert inner(w.phase2(f"{NAME}:c_id=1", False)) == [TwoPCPhase2(f"{NAME}:c_id=1", False)]
    assert (w.committed_offset, w.offset, w.pending_txn) == (0, 0, None)
    assert (w.statistics().commits, w.statistics().aborts) == (0, 1)


def test_phase2_of_another_transaction_changes_nothing() -> None:
    w = connected()
    w.payloads([b"abcd"])
    w.phase1(2)
    w.phase2(f"{NAME}:c_id=1", True)  # resolving an old txn reported after a reconnect
    assert (w.committed_offset, w.offset, w.pending_txn) == (0, 4, f"{NAME}:c_id=2")


def test_restore_and_reconnect_notify_at_the_current_offset() -> None:
    w = connected()
    w.payloads([b"abc"])
    w.phase1(1)
    w.connection_lost()
    assert w.closed
    w.restore(1800, 1000)
    assert (w.offset, w.committed_offset, w.pending_txn) == (1800, 1000, None)
    assert frames(w.intro(9))[1] == Notify(1, NAME, 1800)
    w.restore(7)
    assert (w.offset, w.committed_offset) == (7, 7)
    with pytest.raises(ValueError, match="committed_offset"):
        w.restore(5, 6)
    with pytest.raises(ValueError, match="committed_offset"):
        w.restore(2**64)


def test_workers_left_and_error_bytes() -> None:
    w = connected()
    assert inner(w.workers_left(7, ["worker2", "worker3"])) == [
        WorkersLeft(7, ("worker2", "worker3"))
    ]
    assert w.error("bye") == Error("bye").encode()
    assert w.closed


def test_worker_statistics() -> None:
    w = worker()
    w.connection_lost()  # nothing to lose yet
    assert w.statistics().state == "new"
    w = connected()
    w.payloads([b"ab"])
    assert w.statistics() == WorkerSinkStatistics(
        state="connected",
        offset=2,
        committed_offset=0,
        pending_txn=None,
        payloads_sent=1,
        frames_received=2,
        commits=0,
        aborts=0,
    )


# -- external sink side -------------------------------------------------------------------


def endpoint(**options: object) -> SinkEndpointSession:
    return SinkEndpointSession(cookie="c", **options)  # type: ignore[arg-type]


def test_endpoint_answers_the_intro() -> None:
    w, e = worker(), endpoint()
    events = e.receive(w.intro(5))
    assert events == [
        WorkerConnected("initializer", "app"),
        StreamNotified(1, NAME, 0),
        UncommittedListRequested(5),
    ]
    assert e.worker_name == "initializer"
    answer = e.take_output()
    assert frames(answer) == [Ok(500), NotifyAck(True, 1, 0)]
    e.reply_uncommitted(5, [f"{NAME}:c_id=3"])
    assert w.receive(answer + e.take_output()) == [
        SinkReady(500),
        StreamAccepted(1, 0),
        UncommittedReported(5, (f"{NAME}:c_id=3",)),
    ]


def test_a_full_two_phase_commit_round() -> None:
    w, e = worker(), endpoint(credits=10)
    e.receive(w.intro(1))
    e.reply_uncommitted(1, [])
    assert w.receive(e.take_output()) == [
        SinkReady(10),
        StreamAccepted(1, 0),
        UncommittedReported(1, ()),
    ]
    events = e.receive(w.payloads([b"hello ", b"world"]) + w.phase1(1))
    assert events == [
        Payloads(1, [0, 6], [b"hello ", b"world"]),
        Phase1Requested(f"{NAME}:c_id=1", ((1, 0, 11),)),
    ]
    e.vote(f"{NAME}:c_id=1", True)
    assert w.receive(e.take_output()) == [VoteReceived(f"{NAME}:c_id=1", True)]
    assert e.receive(w.phase2(f"{NAME}:c_id=1", True)) == [Phase2Requested(f"{NAME}:c_id=1", True)]
    assert w.committed_offset == 11
    e.vote("other", False)
    stats = e.statistics()
    assert (stats.payloads_received, stats.payload_bytes, stats.phase1_requests) == (2, 11, 1)
    assert (stats.votes_commit, stats.votes_abort) == (1, 1)


def test_endpoint_auto_commit_answers_by_itself() -> None:
    w, e = worker(), endpoint(auto_commit=True)
    events = e.receive(w.intro(3))
    assert events == [WorkerConnected("initializer", "app"), StreamNotified(1, NAME, 0)]
    w.receive(e.take_output())
    assert w.statistics().frames_received == 3
    events = e.receive(w.payloads([b"x"]) + w.phase1(1))
    assert events == [Payloads(1, [0], [b"x"])]
    assert inner(e.take_output()) == [TwoPCReply(f"{NAME}:c_id=1", True)]
    assert e.receive(w.phase2(f"{NAME}:c_id=1", True)) == [Phase2Requested(f"{NAME}:c_id=1", True)]


def test_endpoint_batches_per_stream_and_the_control_stream_splits_batches() -> None:
    e = endpoint()
    e.receive(
        Hello("v0.0.1", "c", "app", "w").encode()
        + Notify(1, "a", 0).encode()
        + Notify(2, "b", 0).encode()
    )
    events = e.receive(
        Message(1, 0, 0, None, b"a").encode()
        + Message(1, 1, 0, None, None).encode()  # no payload: nothing to deliver
        + Message(1, 1, 0, None, b"b").encode()
        + Message(2, 0, 0, None, b"c").encode()
        + wrap_twopc(WorkersLeft(1, ("w2",)))
        + Message(2, 1, 0, None, b"d").encode()
        + EosMessage(2).encode()
    )
    assert events == [
        Payloads(1, [0, 1], [b"a", b"b"]),
        Payloads(2, [0], [b"c"]),
        WorkersLeftReported(1, ("w2",)),
        Payloads(2, [1], [b"d"]),
        StreamEnded(2),
    ]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            Hello("0.0.1", "c", "app", "w").encode(),
            "unknown protocol version '0.0.1', wanted 'v0.0.1'",
        ),
        (Notify(1, "a", 0).encode(), "expected HELLO first, got NOTIFY"),
        (Message(1, 0, 0, None, b"x").encode(), "expected HELLO first, got MESSAGE"),
        (
            b"\x00\x00\x00\x00",
            "malformed frame: bad frame length 0: a frame holds at least its type byte",
        ),
    ],
    ids=["version", "notify first", "message first", "bad length"],
)
def test_endpoint_handshake_errors(data: bytes, reason: str) -> None:
    e = endpoint()
    assert e.receive(data) == [SessionClosed(reason, error=True)]
    assert frames(e.take_output()) == [Error(reason)]
    assert e.closed
    assert e.receive(Hello("v0.0.1", "c", "app", "w").encode()) == []


def test_endpoint_bad_cookie_does_not_leak_its_cookie() -> None:
    e = SinkEndpointSession(cookie="secret")
    [event] = e.receive(Hello("v0.0.1", "guess", "app", "w").encode())
    assert isinstance(event, SessionClosed)
    assert "bad cookie" in event.reason
    assert "secret" not in event.reason


@pytest.mark.parametrize(
    ("frame_bytes", "reason"),
    [
        (Message(3, 0, 0, None, b"x").encode(), "message on unregistered stream 3"),
        (Notify(0, "ctl", 0).encode(), "stream 0 is reserved for two-phase commit frames"),
        (EosMessage(3).encode(), "end of stream on unregistered stream 3"),
        (
            Hello("v0.0.1", "c", "a", "w").encode(),
            "unexpected HELLO: the handshake is already done",
        ),
        (Ok(5).encode(), "a worker must not send OK frames to a sink"),
        (Ack(5, ()).encode(), "a worker must not send ACK frames to a sink"),
        (wrap_twopc(TwoPCReply("t", True)), "a worker must not send TWOPC_REPLY"),
        (wrap_twopc(ReplyUncommitted(1, ())), "a worker must not send REPLY_UNCOMMITTED"),
        (
            Message(0, 0, 0, None, None).encode(),
            "malformed 2PC frame: empty 2PC frame: expected a tag byte (201-206)",
        ),
    ],
    ids=lambda v: "" if isinstance(v, bytes) else v,
)
def test_endpoint_protocol_violations_get_error(frame_bytes: bytes, reason: str) -> None:
    e = endpoint()
    e.receive(Hello("v0.0.1", "c", "app", "w").encode())
    e.take_output()
    assert e.receive(frame_bytes) == [SessionClosed(reason, error=True)]
    assert frames(e.take_output()) == [Error(reason)]
    e.reply_uncommitted(1, [])  # ignored once closed
    e.vote("t", True)
    assert e.take_output() == b""


def test_endpoint_frames_before_a_malformed_one_are_handled() -> None:
    e = endpoint()
    events = e.receive(Hello("v0.0.1", "c", "app", "w").encode() + b"\x00\x00\x00\x01\x0a")
    assert events == [
        WorkerConnected("w", "app"),
        SessionClosed("malformed frame: unknown frame type 10 (known: 0-8)", error=True),
    ]
    assert frames(e.take_output()) == [
        Ok(500),
        Error("malformed frame: unknown frame type 10 (known: 0-8)"),
    ]


def test_endpoint_stops_at_the_first_violation_in_a_batch() -> None:
    e = endpoint()
    events = e.receive(
        Hello("v0.0.1", "c", "app", "w").encode()
        + Message(3, 0, 0, None, b"x").encode()
        + Notify(1, "a", 0).encode()
    )
    assert events[-1] == SessionClosed("message on unregistered stream 3", error=True)
    assert e.statistics().frames_received == 2


def test_endpoint_error_from_the_worker_closes() -> None:
    e = endpoint()
    e.receive(Hello("v0.0.1", "c", "app", "w").encode())
    e.take_output()
    assert e.receive(Error("shutting down").encode()) == [
        SessionClosed("the worker sent ERROR: shutting down", error=True)
    ]
    assert e.take_output() == b""


def test_endpoint_connection_lost_and_statistics() -> None:
    e = endpoint()
    e.receive(Hello("v0.0.1", "c", "app", "w").encode())
    e.connection_lost()
    assert e.closed
    assert e.statistics() == EndpointStatistics(
        state="closed",
        worker_name="w",
        frames_received=1,
        payloads_received=0,
        payload_bytes=0,
        phase1_requests=0,
        votes_commit=0,
        votes_abort=0,
        errors=0,
    )


@pytest.mark.parametrize("credits", [1, 2**32])
def test_endpoint_credit_bounds(credits: int) -> None:
    with pytest.raises(WallarooParameterError, match="credits"):
        SinkEndpointSession(credits=credits)
