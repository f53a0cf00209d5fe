"""Scripted byte sessions against the worker's side of a source connection."""

from __future__ import annotations

import pytest

from wallaroo.errors import FrameError, WallarooParameterError
from wallaroo.protocol import (
    NONE_SEEN,
    Ack,
    EosMessage,
    Error,
    Frame,
    FrameReader,
    HandshakeDone,
    Hello,
    Message,
    Messages,
    Notify,
    NotifyAck,
    Ok,
    RegistryStatistics,
    Restart,
    SessionClosed,
    SourceSession,
    StreamClosed,
    StreamOpened,
    StreamRegistry,
)

COOKIE = "Dragons-Love-Tacos"


def session(
    registry: StreamRegistry | None = None, *, max_credits: int = 10, **options: object
) -> SourceSession:
    return SourceSession(
        cookie=COOKIE,
        max_credits=max_credits,
        refill_credits=4,
        registry=registry if registry is not None else StreamRegistry(),
        **options,  # type: ignore[arg-type]
    )


def out(s: SourceSession) -> list[Frame]:
    """The frames the session queued for the connector."""
    return FrameReader().feed(s.take_output())


def hello(version: str = "0.0.1", cookie: str = COOKIE) -> bytes:
    return Hello(version, cookie, "celsius", "feed-1").encode()


def msg(
    stream_id: int, message_id: int, payload: bytes | None = b"p", key: bytes | None = None
) -> bytes:
    return Message(stream_id, message_id, 0, key, payload).encode()


def opened(s: SourceSession, *stream_ids: int) -> None:
    """Handshake and open streams, discarding the output."""
    s.receive(hello() + b"".join(Notify(i, f"s{i}", 0).encode() for i in stream_ids))
    s.take_output()


# -- handshake ----------------------------------------------------------------------------


def test_handshake_ok() -> None:
    s = session()
    assert s.receive(hello()) == [HandshakeDone("celsius", "feed-1")]
    assert out(s) == [Ok(10)]
    assert not s.closed
    assert s.statistics().credits_outstanding == 10


def test_bad_version_gets_error_and_closes() -> None:
    s = session()
    events = s.receive(hello(version="9.9.9") + Notify(1, "x", 0).encode())
    reason = "unknown protocol version '9.9.9', wanted '0.0.1'"
    assert events == [SessionClosed(reason, error=True)]
    assert out(s) == [Error(reason)]
    assert s.closed
    assert s.receive(hello()) == []
    assert s.take_output() == b""


def test_bad_cookie_is_named_without_leaking_the_configured_cookie() -> None:
    s = session()
    [event] = s.receive(hello(cookie="wrong"))
    assert isinstance(event, SessionClosed)
    assert event.error
    [error] = out(s)
    assert isinstance(error, Error)
    assert "bad cookie" in error.message
    assert COOKIE not in error.message
    assert s.statistics().errors == 1


def test_first_frame_must_be_hello() -> None:
    s = session()
    s.receive(Notify(1, "x", 0).encode())
    assert out(s) == [Error("expected HELLO first, got NOTIFY")]
    assert s.closed


def test_second_hello_is_a_protocol_error() -> None:
    s = session()
    s.receive(hello() + hello())
    assert out(s) == [Ok(10), Error("unexpected HELLO: the handshake is already done")]


@pytest.mark.parametrize(
    "frame", [Ok(5), NotifyAck(True, 1, 0), Ack(3, ((1, 2),)), Restart("h:1")], ids=repr
)
def test_frames_in_the_wrong_direction_get_error(frame: Frame) -> None:
    s = session()
    events = s.receive(hello() + frame.encode())
    reason = f"a connector must not send {frame.TYPE.name} frames"
    assert events[-1] == SessionClosed(reason, error=True)
    assert out(s) == [Ok(10), Error(reason)]


def test_error_from_the_connector_closes_without_answer() -> None:
    s = session()
    s.receive(hello())
    s.take_output()
    events = s.receive(Error("going away").encode())
    assert events == [SessionClosed("the connector sent ERROR: going away", error=True)]
    assert s.take_output() == b""
    assert s.closed


# -- malformed bytes ----------------------------------------------------------------------


def test_unknown_frame_type_gets_error() -> None:
    s = session()
    s.receive(hello() + b"\x00\x00\x00\x01\x09")
    frames = out(s)
    assert isinstance(frames[-1], Error)
    assert "unknown frame type 9" in frames[-1].message
    assert s.closed


def test_twopc_garbage_on_a_source_is_a_message_on_an_unregistered_stream() -> None:
    s = session()
    s.receive(hello() + Message(0, 0, 0, None, b"\xc9" + bytes(8)).encode())
    assert out(s)[-1] == Error("message on unregistered stream 0")


def test_frames_before_a_malformed_one_are_handled_then_error() -> None:
    s = session()
    events = s.receive(hello() + Notify(1, "a", 0).encode() + b"\x00\x00\x00\x02\x05\x00")
    assert [type(e) for e in events] == [HandshakeDone, StreamOpened, SessionClosed]
    frames = out(s)
    assert frames[:2] == [Ok(10), NotifyAck(True, 1, NONE_SEEN)]
    assert isinstance(frames[2], Error)
    assert "truncated MESSAGE" in frames[2].message


def test_malformed_first_frame_gets_error() -> None:
    s = session()
    [event] = s.receive(b"\x00\x00\x00\x00")
    assert isinstance(event, SessionClosed)
    assert "bad frame length 0" in event.reason


def test_length_header_beyond_max_frame_size_fails_before_the_body() -> None:
    s = session(max_frame_size=1000)
    s.receive(hello())
    s.take_output()
    [event] = s.receive((1001).to_bytes(4, "big"))
    assert isinstance(event, SessionClosed)
    assert "exceeds the maximum of 1000" in event.reason
    assert s.closed


def test_truncated_frame_then_connection_lost_releases_streams() -> None:
    registry = StreamRegistry()
    s = session(registry)
    opened(s, 7)
    whole = msg(7, 3)
    assert s.receive(whole[:10]) == []
    assert registry.owner(7) is s
    s.connection_lost()
    s.connection_lost()
    assert s.closed
    assert registry.owner(7) is None
    assert registry.resume_point(7) == NONE_SEEN  # the NOTIFY_ACK position: nothing processed


# -- streams and messages -----------------------------------------------------------------


def test_notify_opens_a_new_stream_from_the_beginning() -> None:
    s = session()
    events = s.receive(hello() + Notify(123, "celsius.msg", 1001).encode())
    assert events[1] == StreamOpened(123, "celsius.msg", NONE_SEEN)
    assert out(s)[1] == NotifyAck(True, 123, NONE_SEEN)
    assert s.statistics().open_streams == 1


def test_message_on_unopened_stream_gets_error() -> None:
    s = session()
    s.receive(hello())
    s.take_output()
    events = s.receive(msg(5, 1))
    assert events == [SessionClosed("message on unregistered stream 5", error=True)]
    assert out(s) == [Error("message on unregistered stream 5")]


def test_consecutive_messages_of_a_stream_are_batched_and_deduplicated() -> None:
    s = session(max_credits=100)
    s.receive(hello() + Notify(1, "a", 0).encode() + Notify(2, "b", 0).encode())
    data = (
        Message(1, 40, 7, b"k", b"x").encode()
        + msg(1, 41, None)
        + msg(1, 41)  # duplicate
        + msg(2, 5)
        + msg(2, 4)  # duplicate
        + msg(1, 42, b"z")
        + msg(1, 30)  # duplicate
    )
    events = s.receive(data)
    assert events == [
        Messages(1, [40, 41], [7, 0], [b"k", None], [b"x", None]),
        Messages(2, [5], [0], [None], [b"p"]),
        Messages(1, [42], [0], [None], [b"z"]),
    ]
    stats = s.statistics()
    assert (stats.messages_delivered, stats.duplicates_skipped) == (4, 3)


def test_a_control_frame_ends_a_batch() -> None:
    s = session(max_credits=100)
    opened(s, 1)
    events = s.receive(msg(1, 1) + Notify(2, "b", 0).encode() + msg(1, 2))
    assert [type(e) for e in events] == [Messages, StreamOpened, Messages]


def test_dedup_after_renotify_with_an_acked_point_of_ref() -> None:
    registry = StreamRegistry()
    first = session(registry, max_credits=100)
    opened(first, 9)
    first.receive(b"".join(msg(9, i) for i in range(1, 6)))
    assert first.processed(9, 3)
    first.connection_lost()  # released at the last processed position, 3
    second = session(registry, max_credits=100)
    events = second.receive(hello() + Notify(9, "s9", 0).encode())
    assert events[1] == StreamOpened(9, "s9", 3)
    assert out(second)[1] == NotifyAck(True, 9, 3)
    events = second.receive(msg(9, 2) + msg(9, 3) + msg(9, 4) + msg(9, 5))
    assert events == [Messages(9, [4, 5], [0, 0], [None, None], [b"p", b"p"])]
    assert second.statistics().duplicates_skipped == 2


def test_eos_acks_at_once_and_renotify_resumes_at_the_released_point() -> None:
    registry = StreamRegistry()
    s = session(registry, max_credits=100)
    opened(s, 4)
    s.receive(msg(4, 10) + msg(4, 11))
    events = s.receive(EosMessage(4).encode())
    assert events == [StreamClosed(4, 11)]
    assert out(s) == [Ack(0, ((4, 11),))]
    assert registry.owner(4) is None
    assert registry.resume_point(4) == 11
    assert s.statistics().open_streams == 0
    assert not s.processed(4, 11)  # late report for the ended stream: ignored
    events = s.receive(Notify(4, "s4", 0).encode() + msg(4, 11) + msg(4, 12))
    assert events == [StreamOpened(4, "s4", 11), Messages(4, [12], [0], [None], [b"p"])]
    assert out(s) == [NotifyAck(True, 4, 11)]


def test_eos_without_messages_acks_none_seen() -> None:
    s = session()
    opened(s, 4)
    assert s.receive(EosMessage(4).encode()) == [StreamClosed(4, NONE_SEEN)]
    assert out(s) == [Ack(0, ((4, NONE_SEEN),))]


def test_eos_on_unregistered_stream_gets_error() -> None:
    s = session()
    opened(s)
    s.receive(EosMessage(3).encode())
    assert out(s) == [Error("end of stream on unregistered stream 3")]


def test_one_owner_per_stream_across_two_sessions() -> None:
    registry = StreamRegistry()
    first, second = session(registry), session(registry)
    opened(first, 7)
    events = second.receive(hello() + Notify(7, "s7", 0).encode())
    assert events == [HandshakeDone("celsius", "feed-1")]
    assert out(second) == [Ok(10), NotifyAck(False, 7, NONE_SEEN)]
    assert second.statistics().notifies_refused == 1
    first.receive(msg(7, 1) + EosMessage(7).encode())
    assert second.receive(Notify(7, "s7", 0).encode()) == [StreamOpened(7, "s7", 1)]
    assert registry.statistics() == RegistryStatistics(
        active_streams=1, inactive_streams=0, acquired=2, refused=1, released=1
    )


def test_renotify_of_an_open_stream_is_acked_as_it_stands() -> None:
    s = session()
    opened(s, 3)
    s.receive(msg(3, 8))
    assert s.receive(Notify(3, "s3", 0).encode()) == []
    assert out(s) == [NotifyAck(True, 3, 8)]


# -- credits and acks ---------------------------------------------------------------------


def test_credits_are_granted_in_bulk_only_after_processed() -> None:
    s = session()  # max 10, refill 4
    opened(s, 1)  # one credit for the NOTIFY
    s.receive(b"".join(msg(1, i) for i in range(1, 6)))
    assert s.statistics().credits_outstanding == 4
    assert s.take_output() == b""  # receiving never acks by itself
    assert s.processed(1, 5)
    assert s.flush_acks()
    assert out(s) == [Ack(6, ((1, 5),))]
    assert s.statistics().credits_outstanding == 10
    assert not s.flush_acks()  # nothing due
    assert not s.flush_acks(force=True)  # nothing processed since
    s.receive(msg(1, 6))
    s.processed(1, 6)
    assert not s.flush_acks()  # above the refill mark
    assert s.flush_acks(force=True)
    assert out(s) == [Ack(1, ((1, 6),))]


def test_ack_pairs_coalesce_per_stream() -> None:
    s = session(max_credits=100)
    opened(s, 1, 2)
    s.receive(msg(1, 1) + msg(2, 1) + msg(1, 2))
    s.processed(1, 1)
    s.processed(2, 1)
    s.processed(1, 2)
    s.flush_acks(force=True)
    assert out(s) == [Ack(5, ((1, 2), (2, 1)))]


def test_low_credits_grant_even_without_positions() -> None:
    s = session()
    opened(s, 1)
    s.receive(b"".join(msg(1, i) for i in range(1, 6)))
    assert s.flush_acks()
    assert out(s) == [Ack(6, ())]


def test_an_overspending_connector_is_only_topped_up_to_max() -> None:
    s = session()
    opened(s, 1)
    s.receive(b"".join(msg(1, i) for i in range(1, 13)))
    assert s.statistics().credits_outstanding == -3
    s.flush_acks()
    assert out(s) == [Ack(10, ())]


def test_acks_are_not_sent_before_the_handshake_or_after_close() -> None:
    s = session()
    assert not s.flush_acks(force=True)
    s.checkpoint_committed({1: 1})
    s.connection_lost()
    assert not s.flush_acks(force=True)
    assert not s.processed(1, 1)
    assert s.take_output() == b""


def test_processed_rejects_a_position_that_is_not_a_u64() -> None:
    s = session()
    opened(s, 1)
    with pytest.raises(FrameError, match="point_of_ref"):
        s.processed(1, -1)


# -- acks after checkpoint ----------------------------------------------------------------


def test_acks_after_checkpoint_hold_positions_until_the_checkpoint() -> None:
    registry = StreamRegistry()
    s = session(registry, acks_after_checkpoint=True)
    opened(s, 1, 2)
    s.receive(msg(1, 1) + msg(1, 2) + msg(2, 7))
    assert s.processed(1, 2)
    assert not s.flush_acks(force=True)  # positions wait for the checkpoint
    s.receive(msg(1, 3) + msg(1, 4))  # 7 frames: 3 credits left, a credit-only ACK is due
    assert s.flush_acks()
    assert out(s) == [Ack(7, ())]
    s.checkpoint_committed({1: 2, 2: 7, 99: 5})
    assert out(s) == [Ack(0, ((1, 2), (2, 7)))]
    s.connection_lost()  # released at the checkpointed positions, not the processed ones
    assert registry.resume_point(1) == 2
    assert registry.resume_point(2) == 7


def test_eos_with_acks_after_checkpoint_waits_for_a_covering_checkpoint() -> None:
    registry = StreamRegistry()
    s = session(registry, max_credits=100, acks_after_checkpoint=True)
    opened(s, 5, 6)
    events = s.receive(msg(5, 1) + msg(5, 2) + EosMessage(5).encode() + EosMessage(6).encode())
    assert events[-2:] == [StreamClosed(5, 2), StreamClosed(6, NONE_SEEN)]
    assert s.take_output() == b""  # no immediate ACK
    assert s.statistics().open_streams == 0
    assert registry.owner(5) is s
    s.receive(Notify(5, "s5", 0).encode())  # pending close: refused, the connector retries
    assert out(s) == [NotifyAck(False, 5, 2)]
    s.checkpoint_committed({5: 1, 6: NONE_SEEN})  # does not cover message 2 of stream 5
    assert out(s) == [Ack(7, ((5, 1), (6, NONE_SEEN)))]  # 7 frames since OK
    assert registry.owner(5) is s
    assert registry.owner(6) is None
    s.checkpoint_committed({5: 2})
    out(s)
    assert registry.owner(5) is None
    assert registry.resume_point(5) == 2


def test_messages_on_a_closing_stream_get_error() -> None:
    s = session(acks_after_checkpoint=True)
    opened(s, 5)
    s.receive(EosMessage(5).encode() + msg(5, 1))
    assert out(s) == [Error("message on unregistered stream 5")]


def test_eos_twice_with_acks_after_checkpoint_gets_error() -> None:
    s = session(acks_after_checkpoint=True)
    opened(s, 5)
    s.receive(EosMessage(5).encode() + EosMessage(5).encode())
    assert out(s) == [Error("end of stream on unregistered stream 5")]


# -- configuration and statistics ---------------------------------------------------------


@pytest.mark.parametrize(
    ("max_credits", "refill"), [(0, 0), (2**32, 1), (10, 10), (10, -1)], ids=str
)
def test_bad_credit_settings_are_refused(max_credits: int, refill: int) -> None:
    with pytest.raises(WallarooParameterError, match="credits"):
        SourceSession(
            cookie="", max_credits=max_credits, refill_credits=refill, registry=StreamRegistry()
        )


def test_statistics_snapshot() -> None:
    s = session()
    opened(s, 1)
    s.receive(msg(1, 1) + msg(1, 1))
    stats = s.statistics()
    assert stats.state == "streaming"
    assert stats.frames_received == 4  # HELLO included
    assert (stats.messages_delivered, stats.duplicates_skipped) == (1, 1)
    assert (stats.credits_outstanding, stats.open_streams, stats.errors) == (7, 1, 0)
    assert stats.acks_sent == 0


def test_registry_release_rules() -> None:
    registry = StreamRegistry()
    assert registry.acquire(1, "a") == (True, NONE_SEEN)
    assert registry.acquire(1, "a") == (True, NONE_SEEN)  # the holder may acquire again
    assert registry.acquire(1, "b") == (False, NONE_SEEN)
    assert not registry.release(1, "b", 5)
    assert not registry.release(2, "a", 5)
    assert registry.release(1, "a", 5)
    assert registry.acquire(1, "b") == (True, 5)
    registry.acquire(2, "b")
    registry.acquire(3, "c")
    assert registry.release_all("b") == [1, 2]
    assert registry.resume_point(1) == 5
    assert registry.resume_point(2) == NONE_SEEN
    assert registry.owner(3) == "c"
    assert registry.statistics() == RegistryStatistics(
        active_streams=1, inactive_streams=1, acquired=5, refused=1, released=3
    )


def test_with_checkpoints_a_reconnect_resumes_at_the_acked_point_and_skips_what_was_seen() -> None:
    registry = StreamRegistry()
    first = session(registry, max_credits=100, acks_after_checkpoint=True)
    opened(first, 9)
    first.receive(b"".join(msg(9, i) for i in range(1, 6)))
    first.processed(9, 5)
    first.checkpoint_committed({9: 2})
    assert first.positions() == {9: 5}
    first.connection_lost()
    assert registry.inactive_positions() == {9: 5}
    second = session(registry, max_credits=100)
    second.receive(hello() + Notify(9, "s9", 0).encode())
    assert out(second)[1] == NotifyAck(True, 9, 2)  # the connector replays after 2 ...
    events = second.receive(b"".join(msg(9, i) for i in range(3, 8)))
    assert events == [Messages(9, [6, 7], [0, 0], [None, None], [b"p", b"p"])]  # ... 3-5 skipped


def test_registry_reset_sets_both_points_and_refuses_while_streams_are_held() -> None:
    registry = StreamRegistry()
    registry.reset({9: 4})
    assert (registry.resume_point(9), registry.seen_point(9)) == (4, 4)
    assert registry.acquire(9, "owner") == (True, 4)
    with pytest.raises(RuntimeError, match="close the sessions first"):
        registry.reset({})


def test_a_checkpoint_from_before_a_streams_first_message_does_not_release_its_end():
    registry = StreamRegistry()
    s = session(registry, max_credits=100, acks_after_checkpoint=True)
    s.receive(hello() + Notify(7, "f", NONE_SEEN).encode())
    barrier = s.positions()  # {7: NONE_SEEN}: the stream has no message yet
    for message_id in (10, 20):
        s.receive(Message(7, message_id, 0, None, b"x").encode())
        s.processed(7, message_id)
    s.receive(EosMessage(7).encode())
    s.checkpoint_committed(barrier)
    assert s.positions() == {7: 20}  # still held: none of its messages is checkpointed
    s.checkpoint_committed(s.positions())
    assert registry.owner(7) is None and registry.resume_point(7) == 20
