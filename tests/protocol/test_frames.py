"""Deterministic edge cases of the frame codec and the incremental reader."""

from __future__ import annotations

import struct

import pytest

from wallaroo.errors import FrameError
from wallaroo.protocol import (
    Ack,
    EosMessage,
    Error,
    FrameReader,
    FrameType,
    Hello,
    Message,
    Notify,
    NotifyAck,
    Restart,
    TwoPCPhase1,
    TwoPCReply,
    WorkersLeft,
    decode_frame,
    decode_twopc,
    unwrap_twopc,
)
from wallaroo.protocol._codec import message_error


def frame(kind: int, body: bytes) -> bytes:
    return struct.pack(">IB", len(body) + 1, kind) + body


# -- decode_frame ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "truncated frame: 0 bytes"),
        (b"\x00\x00\x00\x00\x01", "bad frame length 0"),
        (b"\x00\x00\x00\x05\x01\x00", "truncated frame: the length prefix says 5 bytes, 2 given"),
        (frame(1, bytes(4)) + b"\x00", "1 trailing bytes after a frame of length 5"),
        (frame(9, b""), "unknown frame type 9"),
        (frame(1, bytes(3)), "truncated OK body: initial_credits needs 4 bytes, 3 left"),
        (frame(1, bytes(5)), "1 trailing bytes after the OK body"),
        (frame(4, b"\x02" + bytes(16)), "NOTIFY_ACK success must be 0 or 1, got 2"),
        (frame(2, b"\x00\x02\xff\xfe"), "ERROR message is not valid UTF-8"),
        (frame(7, b"\x00\x00\x00\x01\xc3"), "RESTART address is not valid UTF-8"),
        (frame(6, bytes(4) + b"\xff\xff\xff\xff"), "ack count is 4294967295 but only 0 bytes"),
        (frame(5, bytes(25)), "truncated MESSAGE body: 25 bytes, at least 26 needed"),
        (frame(5, bytes(24) + b"\x00\x05k"), "truncated MESSAGE body: key of 5 bytes, 1 left"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_decode_frame_names_what_is_wrong(data: bytes, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        decode_frame(data)


def test_every_frame_type_has_its_number() -> None:
    assert [int(t) for t in FrameType] == list(range(9))
    assert [cls.TYPE for cls in (Hello, Notify, NotifyAck, Message, Ack, Restart)] == [
        FrameType.HELLO,
        FrameType.NOTIFY,
        FrameType.NOTIFY_ACK,
        FrameType.MESSAGE,
        FrameType.ACK,
        FrameType.RESTART,
    ]


# -- encoding limits ------------------------------------------------------------------------


def test_strings_and_keys_longer_than_65535_bytes_raise() -> None:
    assert len(Error("é" * 32767).encode()) == 4 + 1 + 2 + 65534
    with pytest.raises(FrameError, match="ERROR message is 65536 bytes long"):
        Error("é" * 32768).encode()
    with pytest.raises(FrameError, match="HELLO cookie is 70000 bytes long"):
        Hello("0.0.1", "c" * 70000, "", "").encode()
    with pytest.raises(FrameError, match="MESSAGE key is 65536 bytes long"):
        Message(1, 1, 0, b"k" * 65536, None).encode()
    with pytest.raises(FrameError, match="txn id is 65536 bytes long"):
        TwoPCReply("t" * 65536, True).encode()
    with pytest.raises(FrameError, match="worker name is 65536 bytes long"):
        WorkersLeft(1, ("w" * 65536,)).encode()
    # The RESTART address has a u32 length, so it may be longer.
    assert decode_frame(Restart("h" * 70000).encode()) == Restart("h" * 70000)


def test_fields_of_the_wrong_type_raise_frame_error() -> None:
    with pytest.raises(FrameError, match="HELLO version must be a str, got bytes"):
        Hello(b"0.0.1", "", "", "").encode()  # type: ignore[arg-type]
    with pytest.raises(FrameError, match="RESTART address must be a str, got NoneType"):
        Restart(None).encode()  # type: ignore[arg-type]
    with pytest.raises(FrameError, match="stream_id '1' does not fit a u64"):
        Notify("1", "s", 0).encode()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frame_value", "match"),
    [
        (Notify(1, "s", -1), "point_of_ref"),
        (NotifyAck(True, 2**64, 0), "stream_id"),
        (Ack(1, ((1, -5),)), "acked point_of_ref"),
        (Ack(1, ((-1, 5),)), "acked stream_id"),
        (EosMessage(2**64), "stream_id"),
        (TwoPCPhase1("t", ((1, 0, -1),)), "where list end"),
        (TwoPCPhase1("t", ((1, -1, 0),)), "where list start"),
        (TwoPCPhase1("t", ((-1, 0, 0),)), "where list stream_id"),
        (WorkersLeft(-1, ()), "rtag"),
    ],
    ids=repr,
)
def test_out_of_range_integers_raise_on_encode(frame_value: object, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        frame_value.encode()  # type: ignore[attr-defined]


def test_message_error_blames_the_length_when_every_field_fits() -> None:
    error = message_error(1, 2, 3, b"k", b"payload")
    assert isinstance(error, FrameError)
    assert "too long for a u32 length" in str(error)


# -- 2PC ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inner", "match"),
    [
        (b"", "empty 2PC frame"),
        (b"\x05", "unknown 2PC frame tag 5"),
        (b"\xc9\x00", "truncated LIST_UNCOMMITTED body"),
        (b"\xcc\x00\x01t\x07", "TWOPC_REPLY commit must be 0 or 1, got 7"),
        (b"\xcb\x00\x00\x00\x00\x00\x02" + bytes(24), "where list length is 2 but only 24"),
        (b"\xc9" + bytes(9), "1 trailing bytes after the LIST_UNCOMMITTED body"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_decode_twopc_names_what_is_wrong(inner: bytes, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        decode_twopc(inner)


def test_unwrap_twopc_needs_stream_zero_and_a_payload() -> None:
    with pytest.raises(FrameError, match="not on stream 1"):
        unwrap_twopc(Message(1, 0, 0, None, b"\xc9" + bytes(8)))
    with pytest.raises(FrameError, match="empty 2PC frame"):
        unwrap_twopc(Message(0, 0, 0, None, None))


# -- FrameReader ----------------------------------------------------------------------------


def test_reader_rejects_a_bad_max_frame_size() -> None:
    with pytest.raises(ValueError, match="max_frame_size"):
        FrameReader(0)


def test_reader_refuses_a_long_length_as_soon_as_its_header_arrives() -> None:
    reader = FrameReader(max_frame_size=100)
    assert reader.feed(b"\x00\x00") == []
    with pytest.raises(FrameError, match="frame length 101 exceeds the maximum of 100"):
        reader.feed(b"\x00\x65")
    assert reader.pending == 0


def test_reader_errors_are_sticky() -> None:
    reader = FrameReader()
    with pytest.raises(FrameError, match="bad frame length 0"):
        reader.feed(b"\x00\x00\x00\x00")
    with pytest.raises(FrameError, match="bad frame length 0"):
        reader.feed(EosMessage(1).encode())
    assert reader.error is not None


def test_reader_returns_good_frames_then_raises_on_the_next_call() -> None:
    reader = FrameReader()
    good = EosMessage(1).encode()
    assert reader.feed(good + frame(5, bytes(24) + b"\x00\x09")) == [EosMessage(1)]
    assert reader.error is not None
    assert "key of 9 bytes overruns it" in str(reader.error)
    with pytest.raises(FrameError, match="overruns"):
        reader.feed(b"")


def test_reader_rejects_a_short_message_body() -> None:
    with pytest.raises(FrameError, match="truncated MESSAGE body: 3 bytes"):
        FrameReader().feed(frame(5, bytes(3)))


def test_reader_assembles_a_large_frame_from_small_chunks() -> None:
    reader = FrameReader()
    data = Message(1, 2, 3, b"k", b"x" * 100_000).encode()
    for i in range(0, len(data) - 1000, 1000):
        assert reader.feed(data[i : i + 1000]) == []
    [message] = reader.feed(data[(len(data) - 1) // 1000 * 1000 :])
    assert message == Message(1, 2, 3, b"k", b"x" * 100_000)
    assert reader.pending == 0


def test_reader_keeps_the_tail_of_a_chunk() -> None:
    reader = FrameReader()
    data = EosMessage(1).encode() + EosMessage(2).encode()
    assert reader.feed(data[:15]) == [EosMessage(1)]
    assert reader.pending == 2
    assert reader.feed(data[15:]) == [EosMessage(2)]
    assert reader.pending == 0


def test_every_exported_name_resolves() -> None:
    import importlib

    import wallaroo.protocol as package

    for module_name in (
        "frames",
        "reader",
        "twopc",
        "events",
        "stream_registry",
        "source_session",
        "client_session",
        "sink_session",
        "sink_endpoint",
    ):
        module = importlib.import_module(f"wallaroo.protocol.{module_name}")
        for name in module.__all__:
            assert hasattr(module, name), f"{module_name}.{name}"
    assert all(hasattr(package, name) for name in package.__all__)
    assert package.__all__ == sorted(package.__all__, key=lambda n: (not n.isupper(), n))
