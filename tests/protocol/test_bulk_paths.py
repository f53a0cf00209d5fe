"""The bulk paths of the protocol give the same results as the frame-by-frame ones: MESSAGE runs
(``FrameReader.feed_runs``) with their fixed-size stretches, frames packed in one pass
(``pack_messages``) and length-prefixed payloads of framed TCP input."""

from __future__ import annotations

import random
import struct

import pytest

from wallaroo.errors import FrameError
from wallaroo.protocol._codec import pack_messages
from wallaroo.protocol.frames import (
    EosMessage,
    Frame,
    Message,
    Notify,
    decode_frame,
    encode_message,
)
from wallaroo.protocol.reader import FrameReader, LengthPrefixedReader, MessageRun


def mixed_frames(seed: int) -> list[Frame]:
    """Blocks of MESSAGEs (fixed-size stretches, varied sizes, keys, empty payloads, several
    streams) between control frames."""
    rng = random.Random(seed)
    frames: list[Frame] = []
    next_id = 0
    for _ in range(30):
        kind = rng.choice(["fixed", "fixed", "varied", "keyed", "control", "two streams"])
        count = rng.choice([1, 5, 16, 17, 40, 300])
        if kind == "control":
            control: list[Frame] = [EosMessage(7), Notify(3, "s", 1)]
            frames.append(rng.choice(control))
            continue
        size = rng.choice([0, 1, 4, 8, 33])
        key = rng.choice([None, b"k", b"key-0"]) if kind == "keyed" else None
        for i in range(count):
            stream = rng.choice([1, 2**64 - 1]) if kind == "two streams" else 1
            if kind == "varied":
                size = rng.randint(0, 40)
            payload = bytes([i % 251]) * size or None
            time = rng.choice([0, 5, -(2**63)]) if rng.random() < 0.3 else 0
            frames.append(Message(stream, next_id, time, key, payload))
            next_id += rng.choice([1, 1, 1, 3])
    return frames


def chunks(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), 40))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@pytest.mark.parametrize("seed", range(8))
def test_feed_gives_the_frames_whole_or_in_pieces(seed: int) -> None:
    frames = mixed_frames(seed)
    data = b"".join(f.encode() for f in frames)
    assert FrameReader().feed(data) == frames
    reader = FrameReader()
    got = [frame for piece in chunks(data, random.Random(seed)) for frame in reader.feed(piece)]
    assert got == frames
    assert reader.pending == 0


@pytest.mark.parametrize("seed", range(8))
def test_runs_are_the_maximal_sequences_of_messages_of_one_stream(seed: int) -> None:
    frames = mixed_frames(seed)
    items = FrameReader().feed_runs(b"".join(f.encode() for f in frames))
    expected: list[Frame | list[Message]] = []
    for frame in frames:
        last = expected[-1] if expected else None
        if not isinstance(frame, Message):
            expected.append(frame)
        elif isinstance(last, list) and last[0].stream_id == frame.stream_id:
            last.append(frame)
        else:
            expected.append([frame])
    assert len(items) == len(expected)
    for item, want in zip(items, expected, strict=True):
        if isinstance(item, MessageRun):
            assert isinstance(want, list)
            assert item.messages() == want
            assert len(item) == len(want)
            assert repr(item) == f"MessageRun(stream_id={item.stream_id}, messages={len(want)})"
        else:
            assert item == want


def test_a_stretch_of_fixed_size_records_with_keys_and_times() -> None:
    messages = [
        Message(9, 100 + i, i * 7 - 50, b"%03d" % i, struct.pack(">d", i)) for i in range(500)
    ]
    [run] = FrameReader().feed_runs(b"".join(m.encode() for m in messages))
    assert isinstance(run, MessageRun)
    assert run.message_ids == [m.message_id for m in messages]
    assert run.event_times == [m.event_time for m in messages]
    assert run.keys == [m.key for m in messages]
    assert run.payloads == [m.message for m in messages]


def test_an_odd_frame_in_a_stretch_and_a_bad_frame_after_it() -> None:
    messages = [Message(1, i, 0, None, b"abcd") for i in range(100)]
    messages[60] = Message(1, 60, 0, None, b"longer payload")
    bad = struct.pack(">IB", 27, 5) + bytes(24) + b"\x00\x09"  # a key that overruns the frame
    reader = FrameReader()
    [run] = reader.feed_runs(b"".join(m.encode() for m in messages) + bad)
    assert isinstance(run, MessageRun)
    assert run.messages() == messages
    with pytest.raises(FrameError, match="key of 9 bytes overruns it"):
        reader.feed_runs(b"")


def test_a_truncated_message_is_refused_in_the_middle_of_a_stream() -> None:
    short = struct.pack(">IB", 20, 5) + bytes(19)
    data = b"".join(encode_message(1, i, 0, None, b"x") for i in range(3)) + short + bytes(40)
    with pytest.raises(FrameError, match="truncated MESSAGE body: 19 bytes"):
        FrameReader().feed(short + bytes(40))
    reader = FrameReader()
    assert len(reader.feed(data)) == 3
    assert reader.error is not None


# -- packing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 8, 32, 33])
@pytest.mark.parametrize("count", [1, 15, 16, 100])
@pytest.mark.parametrize("key", [b"", b"the-key"])
def test_pack_messages_equals_one_frame_at_a_time(size: int, count: int, key: bytes) -> None:
    payloads = [bytes([i % 256]) * size for i in range(count)]
    ids = range(2**64 - count, 2**64)
    expected = b"".join(
        encode_message(2**63, i, -3, key or None, p) for i, p in zip(ids, payloads, strict=True)
    )
    assert pack_messages(2**63, ids, payloads, -3, key) == expected


def test_pack_messages_of_mixed_sizes_and_a_field_out_of_range() -> None:
    payloads = [b"a" * (i % 5) for i in range(50)]
    ids = list(range(0, 500, 10))
    expected = b"".join(
        encode_message(1, i, 0, None, p) for i, p in zip(ids, payloads, strict=True)
    )
    assert pack_messages(1, ids, payloads, 0, b"") == expected
    with pytest.raises(struct.error):
        pack_messages(1, range(2**64 - 1, 2**64 + 19), [b"x"] * 20, 0, b"")


# -- length-prefixed payloads (framed TCP input) ------------------------------------------------


def framed(payloads: list[bytes], fmt: str = ">I") -> bytes:
    return b"".join(struct.pack(fmt, len(p)) + p for p in payloads)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fmt", [">I", ">H"])
def test_length_prefixed_payloads_whole_or_in_pieces(seed: int, fmt: str) -> None:
    rng = random.Random(seed)
    payloads: list[bytes] = []
    for _ in range(20):
        size = rng.choice([0, 4, 12, rng.randint(0, 300)])
        payloads += [bytes([rng.randrange(256)]) * size for _ in range(rng.choice([1, 16, 200]))]
    data = framed(payloads, fmt)
    header = struct.Struct(fmt)
    assert LengthPrefixedReader(header.size, header.unpack_from, 1000).feed(data) == payloads
    reader = LengthPrefixedReader(header.size, header.unpack_from, 1000)
    got = [p for piece in chunks(data, rng) for p in reader.feed(piece)]
    assert got == payloads
    assert reader.pending == 0


def test_length_prefixed_reader_with_a_custom_header_and_a_large_frame() -> None:
    def read_header(data: bytes, offset: int) -> tuple[int, ...]:
        return (int(data[offset : offset + 3]),)  # three ASCII digits

    reader = LengthPrefixedReader(3, read_header, 999)
    data = b"".join(b"%03d" % len(p) + p for p in [b"hello", b"", b"x" * 999] * 20)
    assert reader.feed(data[:1000]) == [b"hello", b""]
    assert reader.pending == 1000 - 8 - 3
    assert len(reader.feed(data[1000:])) == 58


def test_length_prefixed_reader_refuses_a_long_frame_and_stays_failed() -> None:
    reader = LengthPrefixedReader(4, struct.Struct(">I").unpack_from, 10)
    with pytest.raises(FrameError, match="frame length 11 is outside 0..10"):
        reader.feed(framed([b"ok", b"x" * 11]))
    assert reader.error is not None
    with pytest.raises(FrameError, match="outside"):
        reader.feed(framed([b"ok"]))
    with pytest.raises(ValueError, match="header_length"):
        LengthPrefixedReader(0, struct.Struct(">I").unpack_from, 10)


def test_the_vectors_decode_the_same_through_runs() -> None:
    frames = [Message(1, i, 0, None, b"%d" % i) for i in range(20)]
    data = b"".join(f.encode() for f in frames)
    assert [decode_frame(f.encode()) for f in frames] == FrameReader().feed(data)
