"""The sessions on their bulk paths: runs of MESSAGEs in, runs of frames out, with the same
de-duplication, credit counting and offsets as one frame at a time."""

from __future__ import annotations

from wallaroo.protocol import (
    ClientSession,
    EosMessage,
    FrameReader,
    Hello,
    Message,
    Messages,
    Notify,
    NotifyAck,
    Ok,
    Payloads,
    SessionClosed,
    SinkEndpointSession,
    SourceSession,
    StreamRegistry,
    WorkerSinkSession,
    WorkersLeftReported,
)
from wallaroo.protocol.twopc import WorkersLeft, wrap_twopc


def opened_source(*stream_ids: int) -> SourceSession:
    s = SourceSession(cookie="", max_credits=1000, refill_credits=10, registry=StreamRegistry())
    s.receive(
        Hello("0.0.1", "", "p", "i").encode()
        + b"".join(Notify(i, f"s{i}", 2**64 - 1).encode() for i in stream_ids)
    )
    s.take_output()
    return s


def messages(stream_id: int, ids: list[int]) -> bytes:
    return b"".join(Message(stream_id, i, i * 10, None, b"%d" % i).encode() for i in ids)


def test_a_run_with_ids_out_of_order_keeps_each_new_highest_id() -> None:
    s = opened_source(1)
    assert s.receive(messages(1, [0, 1, 2])) == [
        Messages(1, [0, 1, 2], [0, 10, 20], [None] * 3, [b"0", b"1", b"2"])
    ]
    events = s.receive(messages(1, [1, 5, 3, 6, 6, 9]))
    assert events == [Messages(1, [5, 6, 9], [50, 60, 90], [None] * 3, [b"5", b"6", b"9"])]
    assert s.receive(messages(1, [2, 9])) == []  # all seen: no event
    stats = s.statistics()
    assert (stats.messages_delivered, stats.duplicates_skipped) == (6, 5)
    assert (stats.frames_received, stats.credits_outstanding) == (1 + 1 + 11, 1000 - 1 - 11)


def test_runs_of_two_streams_and_gapped_ids() -> None:
    s = opened_source(1, 2)
    events = s.receive(messages(1, [0, 10, 20]) + messages(2, [4]) + messages(1, [21, 40]))
    assert [(e.stream_id, e.message_ids) for e in events if isinstance(e, Messages)] == [
        (1, [0, 10, 20]),
        (2, [4]),
        (1, [21, 40]),
    ]


def test_a_run_on_a_stream_never_opened_closes_the_session() -> None:
    s = opened_source(1)
    [closed] = s.receive(messages(1, [0]) + messages(5, [0, 1, 2]))[1:]
    assert closed == SessionClosed("message on unregistered stream 5", error=True)
    assert s.closed
    assert s.statistics().frames_received == 2 + 2  # HELLO, NOTIFY, one MESSAGE of each run


def test_a_message_run_instead_of_hello_is_refused() -> None:
    s = SourceSession(cookie="", max_credits=10, refill_credits=1, registry=StreamRegistry())
    s.receive(messages(1, [0, 1]))
    assert s.closed
    assert "expected HELLO first, got MESSAGE" in str(FrameReader().feed(s.take_output()))


def test_client_message_run_equals_messages_and_spends_credits() -> None:
    c = ClientSession()
    c.hello()
    c.receive(Ok(100).encode())
    c.notify(4, "s", 0)
    c.receive(NotifyAck(True, 4, 0).encode())
    payloads = [b"%04d" % i for i in range(40)]
    run = c.message_run(4, 7, payloads, event_time=3, key=b"k")
    assert run == c.messages(4, list(enumerate(payloads, start=7)), event_time=3, key=b"k")
    assert c.credits == 100 - 1 - 80
    assert c.statistics().messages_sent == 80


def test_worker_sink_payloads_in_one_pass_and_the_endpoint_reads_them() -> None:
    w = WorkerSinkSession(app_name="a", worker_name="w", sink_id=0, cookie="")
    e = SinkEndpointSession(auto_commit=True)
    e.receive(w.intro(1))
    w.receive(e.take_output())
    fixed = [b"%08d" % i for i in range(100)]
    assert e.receive(w.payloads(fixed)) == [Payloads(1, list(range(0, 800, 8)), fixed)]
    mixed = [b"a", b"", b"bcd", b"", b"ef"]
    assert e.receive(w.payloads(iter(mixed))) == [
        Payloads(1, [800, 801, 804], [b"a", b"bcd", b"ef"])
    ]
    assert w.offset == 806
    assert w.statistics().payloads_sent == 103


def test_the_endpoint_drops_empty_payloads_and_splits_runs_at_control_frames() -> None:
    e = SinkEndpointSession()
    e.receive(Hello("v0.0.1", "", "app", "w").encode() + Notify(1, "a", 0).encode())
    events = e.receive(
        Message(1, 0, 0, None, b"a").encode()
        + Message(1, 1, 0, None, None).encode()
        + Message(1, 1, 0, None, b"b").encode()
        + wrap_twopc(WorkersLeft(1, ("w2",)))
        + Message(1, 2, 0, None, b"c").encode()
        + Message(1, 3, 0, None, None).encode()
        + EosMessage(1).encode()
    )
    assert events[:3] == [
        Payloads(1, [0, 1], [b"a", b"b"]),
        WorkersLeftReported(1, ("w2",)),
        Payloads(1, [2], [b"c"]),
    ]
    assert e.statistics().payloads_received == 3
