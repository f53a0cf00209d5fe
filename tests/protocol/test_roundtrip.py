"""Properties: every frame round-trips, chunking never matters, garbage raises only FrameError."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wallaroo.errors import FrameError
from wallaroo.protocol import (
    Ack,
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
    ReplyUncommitted,
    Restart,
    TwoPCFrame,
    TwoPCPhase1,
    TwoPCPhase2,
    TwoPCReply,
    WorkersLeft,
    decode_frame,
    decode_twopc,
    encode_message,
    unwrap_twopc,
    wrap_twopc,
)

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
text = st.text(max_size=40)
key = st.one_of(st.none(), st.binary(min_size=1, max_size=40))
payload = st.one_of(st.none(), st.binary(min_size=1, max_size=300))

frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(Hello, text, text, text, text),
    st.builds(Ok, u32),
    st.builds(Error, text),
    st.builds(Notify, u64, text, u64),
    st.builds(NotifyAck, st.booleans(), u64, u64),
    st.builds(Message, u64, u64, i64, key, payload),
    st.builds(Ack, u32, st.lists(st.tuples(u64, u64), max_size=6).map(tuple)),
    st.builds(Restart, text),
    st.builds(EosMessage, u64),
)

twopc_frames: st.SearchStrategy[TwoPCFrame] = st.one_of(
    st.builds(ListUncommitted, u64),
    st.builds(ReplyUncommitted, u64, st.lists(text, max_size=5).map(tuple)),
    st.builds(TwoPCPhase1, text, st.lists(st.tuples(u64, u64, u64), max_size=5).map(tuple)),
    st.builds(TwoPCReply, text, st.booleans()),
    st.builds(TwoPCPhase2, text, st.booleans()),
    st.builds(WorkersLeft, u64, st.lists(text, max_size=5).map(tuple)),
)


@given(frames)
def test_every_frame_round_trips(frame: Frame) -> None:
    data = frame.encode()
    assert struct.unpack_from(">I", data)[0] == len(data) - 4
    assert data[4] == frame.TYPE
    assert decode_frame(data) == frame
    assert type(frame).decode_body(data[5:]) == frame


@given(twopc_frames)
def test_every_twopc_frame_round_trips(frame: TwoPCFrame) -> None:
    inner = frame.encode()
    assert inner[0] == frame.TAG
    assert decode_twopc(inner) == frame
    assert type(frame).decode_body(inner[1:]) == frame
    message = decode_frame(wrap_twopc(frame))
    assert isinstance(message, Message)
    assert unwrap_twopc(message) == frame


@given(st.lists(frames, max_size=12), st.lists(st.integers(0, 4000), max_size=20))
def test_chunk_splits_never_change_the_frames(batch: list[Frame], cuts: list[int]) -> None:
    data = b"".join(frame.encode() for frame in batch)
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    reader = FrameReader()
    out: list[Frame] = []
    for start, end in itertools.pairwise(points):
        out.extend(reader.feed(data[start:end]))
    assert out == batch
    assert reader.pending == 0
    assert reader.error is None


@given(st.lists(frames, min_size=1, max_size=8))
def test_byte_at_a_time_gives_the_same_frames(batch: list[Frame]) -> None:
    data = b"".join(frame.encode() for frame in batch)
    reader = FrameReader()
    out: list[Frame] = []
    for i in range(len(data)):
        out.extend(reader.feed(data[i : i + 1]))
        assert reader.pending == (i + 1) - sum(len(f.encode()) for f in out)
    assert out == batch


@given(st.binary(max_size=200))
def test_random_bytes_only_raise_frame_error(data: bytes) -> None:
    try:
        decode_frame(data)
    except FrameError:
        pass
    reader = FrameReader(max_frame_size=1024)
    try:
        reader.feed(data)
        reader.feed(data)
    except FrameError:
        pass
    try:
        decode_twopc(data)
    except FrameError:
        pass


@given(st.integers(0, 12), st.binary(max_size=120))
def test_random_bodies_decode_strictly_or_raise_frame_error(kind: int, body: bytes) -> None:
    data = struct.pack(">IB", len(body) + 1, kind) + body
    try:
        frame = decode_frame(data)
    except FrameError:
        return
    # Decoding is strict: whatever decodes re-encodes to exactly the same bytes.
    assert frame.encode() == data


@given(st.integers(195, 210), st.binary(max_size=120))
def test_random_twopc_bodies_decode_strictly_or_raise_frame_error(tag: int, body: bytes) -> None:
    inner = bytes([tag]) + body
    try:
        frame = decode_twopc(inner)
    except FrameError:
        return
    assert frame.encode() == inner


@given(frames, st.data())
def test_truncated_or_padded_frames_raise_frame_error(frame: Frame, data: st.DataObject) -> None:
    encoded = frame.encode()
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(FrameError):
        decode_frame(encoded[:cut])
    with pytest.raises(FrameError, match="trailing"):
        decode_frame(encoded + b"\x00")


@given(
    st.one_of(st.integers(max_value=-1), st.integers(min_value=2**64)),
    st.sampled_from(["stream_id", "message_id"]),
)
def test_out_of_range_ids_raise_frame_error_on_encode(value: int, field: str) -> None:
    ids = {"stream_id": 1, "message_id": 1, field: value}
    with pytest.raises(FrameError, match=field):
        encode_message(ids["stream_id"], ids["message_id"], 0, None, b"x")
    with pytest.raises(FrameError, match="stream_id"):
        EosMessage(value).encode()


@given(st.one_of(st.integers(max_value=-(2**63) - 1), st.integers(min_value=2**63)))
def test_out_of_range_event_time_raises_frame_error(value: int) -> None:
    with pytest.raises(FrameError, match="event_time"):
        Message(1, 1, value, None, None).encode()


@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32)))
def test_out_of_range_credits_raise_frame_error(value: int) -> None:
    with pytest.raises(FrameError, match="credits"):
        Ok(value).encode()
    with pytest.raises(FrameError, match="credits"):
        Ack(value, ()).encode()
