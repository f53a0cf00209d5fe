"""Scripted byte sessions against the connector's side of a source connection."""

from __future__ import annotations

import pytest

from wallaroo.errors import FrameError, ProtocolError
from wallaroo.protocol import (
    NONE_SEEN,
    Accepted,
    Ack,
    Acked,
    ClientSession,
    ClientStatistics,
    EosMessage,
    Error,
    Frame,
    Hello,
    Message,
    Messages,
    Notify,
    NotifyAck,
    NotifyAcked,
    Ok,
    Rejected,
    Restart,
    RestartRequested,
    SourceSession,
    StreamClosed,
    StreamRegistry,
)


def client() -> ClientSession:
    return ClientSession("0.0.1", "cookie", "feed", "one")


def accepted(credits: int = 10) -> ClientSession:
    c = client()
    c.hello()
    assert c.receive(Ok(credits).encode()) == [Accepted(credits)]
    return c


def with_open_stream(stream_id: int = 1, credits: int = 10) -> ClientSession:
    c = accepted(credits)
    c.notify(stream_id, "s", 0)
    c.receive(NotifyAck(True, stream_id, NONE_SEEN).encode())
    return c


def test_hello_bytes_and_only_once() -> None:
    c = client()
    assert c.hello() == Hello("0.0.1", "cookie", "feed", "one").encode()
    with pytest.raises(ProtocolError, match="already sent"):
        c.hello()


def test_defaults_match_the_source_protocol() -> None:
    assert ClientSession().hello() == Hello("0.0.1", "", "", "").encode()


def test_data_before_hello_is_a_protocol_error() -> None:
    c = client()
    with pytest.raises(ProtocolError, match="before HELLO"):
        c.receive(Ok(1).encode())
    assert c.closed


def test_ok_grants_credits_once() -> None:
    c = accepted(10)
    assert c.credits == 10
    with pytest.raises(ProtocolError, match="OK twice"):
        c.receive(Ok(1).encode())
    assert c.closed
    assert c.receive(Ok(1).encode()) == []  # a closed session ignores data


def test_a_worker_error_message_is_escaped_and_clipped_for_the_log() -> None:
    c = client()
    c.hello()
    (event,) = c.receive(Error("evil\x1b[2J\n" + "y" * 5000).encode())
    assert isinstance(event, Rejected)
    assert "\x1b" not in event.message and "\n" not in event.message
    assert event.message.startswith("evil\\x1b[2J\\nyyy") and len(event.message) < 400


def test_error_rejects_and_closes() -> None:
    c = client()
    c.hello()
    assert c.receive(Error("bad cookie").encode() + Ok(1).encode()) == [Rejected("bad cookie")]
    assert c.closed
    with pytest.raises(ProtocolError, match="closed"):
        c.notify(1, "s", 0)


def test_frames_before_ok_are_protocol_errors() -> None:
    c = client()
    c.hello()
    with pytest.raises(ProtocolError, match="ACK before OK"):
        c.receive(Ack(1, ()).encode())


def test_notify_needs_the_handshake_and_costs_a_credit() -> None:
    c = client()
    c.hello()
    with pytest.raises(ProtocolError, match="before the worker's OK"):
        c.notify(1, "s", 0)
    c.receive(Ok(10).encode())
    assert c.notify(1, "s", 5) == Notify(1, "s", 5).encode()
    assert c.credits == 9
    assert not c.is_open(1)
    events = c.receive(NotifyAck(True, 1, 42).encode())
    assert events == [NotifyAcked(1, True, 42)]
    assert c.is_open(1)
    c.notify(1, "s", 42)  # re-notify keeps an open stream open
    assert c.is_open(1)


def test_refused_notify_leaves_the_stream_closed() -> None:
    c = accepted()
    c.notify(2, "s", 0)
    assert c.receive(NotifyAck(False, 2, NONE_SEEN).encode()) == [NotifyAcked(2, False, NONE_SEEN)]
    with pytest.raises(ProtocolError, match="stream 2 is not open"):
        c.message(2, 1, b"x")


def test_notify_ack_for_an_unknown_stream_is_a_protocol_error() -> None:
    c = accepted()
    with pytest.raises(ProtocolError, match="never notified"):
        c.receive(NotifyAck(True, 9, 0).encode())


def test_message_requires_an_open_stream_and_costs_a_credit() -> None:
    c = accepted()
    with pytest.raises(ProtocolError, match="not open"):
        c.message(1, 1, b"x")
    c = with_open_stream(1)
    assert (
        c.message(1, 7, b"data", event_time=99, key=b"k")
        == Message(1, 7, 99, b"k", b"data").encode()
    )
    assert c.credits == 8


def test_messages_builds_one_bytes_object_and_spends_a_credit_each() -> None:
    c = with_open_stream(3, credits=100)
    data = c.messages(3, [(1, b"a"), (2, None), (3, b"ccc")], event_time=5, key=b"k")
    assert data == b"".join(
        Message(3, i, 5, b"k", p).encode() for i, p in [(1, b"a"), (2, None), (3, b"ccc")]
    )
    assert c.credits == 100 - 1 - 3
    assert c.statistics().messages_sent == 3


@pytest.mark.parametrize(
    ("items", "kwargs", "match"),
    [
        ([(1, b"a"), (-1, b"b")], {}, "message_id"),
        ([(2**64, b"a")], {}, "message_id"),
        ([(1, b"a")], {"event_time": 2**63}, "event_time"),
        ([(1, b"a")], {"key": b"k" * 65536}, "key"),
    ],
    ids=["negative id", "huge id", "event time", "long key"],
)
def test_messages_out_of_range_raise_frame_error_and_spend_nothing(
    items: list[tuple[int, bytes]], kwargs: dict[str, object], match: str
) -> None:
    c = with_open_stream(1)
    with pytest.raises(FrameError, match=match):
        c.messages(1, items, **kwargs)  # type: ignore[arg-type]
    assert c.credits == 9


def test_eos_closes_the_stream_without_spending_a_credit() -> None:
    c = with_open_stream(4)
    assert c.eos(4) == EosMessage(4).encode()
    assert c.credits == 9
    assert not c.is_open(4)
    with pytest.raises(ProtocolError, match="not open"):
        c.eos(4)


def test_ack_adds_credits() -> None:
    c = accepted(10)
    assert c.receive(Ack(5, ((1, 2),)).encode()) == [Acked(5, ((1, 2),))]
    assert c.credits == 15


def test_restart_closes_every_stream_and_the_session() -> None:
    c = with_open_stream(1)
    assert c.receive(Restart("127.0.0.1:7100").encode()) == [RestartRequested("127.0.0.1:7100")]
    assert c.closed
    assert not c.is_open(1)


@pytest.mark.parametrize(
    "frame",
    [Hello("0.0.1", "", "", ""), Notify(1, "s", 0), Message(1, 1, 0, None, b"x"), EosMessage(1)],
    ids=repr,
)
def test_frames_a_worker_must_not_send_raise_protocol_error(frame: Frame) -> None:
    c = accepted()
    with pytest.raises(ProtocolError, match=f"must not send {frame.TYPE.name}"):
        c.receive(frame.encode())
    assert c.closed


def test_malformed_bytes_raise_frame_error_after_the_good_frames() -> None:
    c = client()
    c.hello()
    with pytest.raises(FrameError, match="unknown frame type 200"):
        c.receive(Ok(10).encode() + b"\x00\x00\x00\x01\xc8")
    assert c.closed
    assert c.credits == 10  # the OK before the bad frame was applied


def test_error_frame_closes_the_session() -> None:
    c = accepted()
    assert c.error("giving up") == Error("giving up").encode()
    assert c.closed


def test_statistics_snapshot() -> None:
    c = with_open_stream(1)
    c.message(1, 1, b"x")
    c.receive(Ack(2, ()).encode())
    assert c.statistics() == ClientStatistics(
        state="streaming",
        credits=10,
        messages_sent=1,
        notifies_sent=1,
        frames_received=3,
        acks_received=1,
        open_streams=1,
    )


def test_a_client_and_a_worker_session_talk() -> None:
    worker = SourceSession(
        cookie="cookie", max_credits=8, refill_credits=2, registry=StreamRegistry()
    )
    c = client()
    worker.receive(c.hello())
    c.receive(worker.take_output())
    worker.receive(c.notify(77, "file.txt", 0))
    [acked] = c.receive(worker.take_output())
    assert acked == NotifyAcked(77, True, NONE_SEEN)
    sent = 0
    delivered: list[bytes | None] = []
    while sent < 20:
        batch = [(sent + i, b"m%d" % (sent + i)) for i in range(max(c.credits, 0))]
        sent += len(batch)
        for event in worker.receive(c.messages(77, batch)):
            assert isinstance(event, Messages)
            delivered.extend(event.payloads)
            worker.processed(77, event.message_ids[-1])
        assert worker.flush_acks()
        c.receive(worker.take_output())
    assert delivered == [b"m%d" % i for i in range(sent)]
    assert c.credits == 8
    assert worker.receive(c.eos(77)) == [StreamClosed(77, sent - 1)]
    [ack] = c.receive(worker.take_output())
    assert ack == Acked(0, ((77, sent - 1),))
