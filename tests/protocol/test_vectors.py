"""Every byte-exact vector of protocol-vectors.json encodes and decodes exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from wallaroo.protocol import (
    Ack,
    EosMessage,
    Error,
    Frame,
    FrameReader,
    FrameType,
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
    TwoPCTag,
    WorkersLeft,
    decode_frame,
    decode_twopc,
    encode_frame,
    unwrap_twopc,
    wrap_twopc,
)

VECTORS = json.loads(
    (Path(__file__).parents[2] / "tests" / "data" / "protocol-vectors.json").read_text("utf-8")
)


def build_frame(fields: dict[str, Any]) -> Frame:
    """The frame value the vector's fields describe."""
    kind = FrameType(fields["type"])
    if kind is FrameType.HELLO:
        return Hello(
            fields["version"], fields["cookie"], fields["program_name"], fields["instance_name"]
        )
    if kind is FrameType.OK:
        return Ok(fields["initial_credits"])
    if kind is FrameType.ERROR:
        return Error(fields["message"])
    if kind is FrameType.NOTIFY:
        return Notify(fields["stream_id"], fields["stream_name"], fields["point_of_ref"])
    if kind is FrameType.NOTIFY_ACK:
        return NotifyAck(fields["success"], fields["stream_id"], fields["point_of_ref"])
    if kind is FrameType.MESSAGE:
        key = fields["key"]
        payload = bytes.fromhex(fields["payload_hex"])
        return Message(
            fields["stream_id"],
            fields["message_id"],
            fields["event_time"],
            key.encode("utf-8") if key else None,
            payload or None,
        )
    if kind is FrameType.ACK:
        return Ack(fields["credits"], tuple((s, p) for s, p in fields["acks"]))
    if kind is FrameType.RESTART:
        return Restart(fields["address"])
    return EosMessage(fields["stream_id"])


def build_twopc(fields: dict[str, Any]) -> TwoPCFrame:
    """The 2PC frame value the vector's fields describe."""
    tag = TwoPCTag(fields["tag"])
    if tag is TwoPCTag.LIST_UNCOMMITTED:
        return ListUncommitted(fields["rtag"])
    if tag is TwoPCTag.REPLY_UNCOMMITTED:
        return ReplyUncommitted(fields["rtag"], tuple(fields["txn_ids"]))
    if tag is TwoPCTag.PHASE1:
        return TwoPCPhase1(fields["txn_id"], tuple(tuple(w) for w in fields["where_list"]))
    if tag is TwoPCTag.TWOPC_REPLY:
        return TwoPCReply(fields["txn_id"], fields["commit"])
    if tag is TwoPCTag.PHASE2:
        return TwoPCPhase2(fields["txn_id"], fields["commit"])
    return WorkersLeft(fields["rtag"], tuple(fields["workers"]))


def names(section: str) -> list[str]:
    return [vector["name"] for vector in VECTORS[section]]


def test_every_frame_type_and_tag_has_a_vector() -> None:
    assert {v["fields"]["type"] for v in VECTORS["frames"]} == {int(t) for t in FrameType}
    assert {v["fields"]["tag"] for v in VECTORS["two_pc_inner"]} == {int(t) for t in TwoPCTag}


@pytest.mark.parametrize("vector", VECTORS["frames"], ids=names("frames"))
def test_frame_encodes_to_the_vector(vector: dict[str, Any]) -> None:
    frame = build_frame(vector["fields"])
    assert frame.encode().hex() == vector["frame_hex"]
    assert encode_frame(frame).hex() == vector["frame_hex"]


@pytest.mark.parametrize("vector", VECTORS["frames"], ids=names("frames"))
def test_frame_decodes_from_the_vector(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["frame_hex"])
    expected = build_frame(vector["fields"])
    assert decode_frame(data) == expected
    assert type(expected).decode_body(data[5:]) == expected
    assert FrameReader().feed(data) == [expected]


def test_decoded_message_fields_match_the_vector_exactly() -> None:
    vector = next(v for v in VECTORS["frames"] if v["name"] == "MESSAGE")
    message = decode_frame(bytes.fromhex(vector["frame_hex"]))
    assert isinstance(message, Message)
    assert message.key == b"k1"
    assert message.message == bytes.fromhex("40000000")
    empty = decode_frame(bytes.fromhex(VECTORS["frames"][6]["frame_hex"]))
    assert isinstance(empty, Message)
    assert (empty.key, empty.message, empty.event_time) == (None, None, -1)


def test_all_frames_concatenated_read_back_in_order() -> None:
    stream = b"".join(bytes.fromhex(v["frame_hex"]) for v in VECTORS["frames"])
    expected = [build_frame(v["fields"]) for v in VECTORS["frames"]]
    assert FrameReader().feed(stream) == expected


@pytest.mark.parametrize("vector", VECTORS["two_pc_inner"], ids=names("two_pc_inner"))
def test_twopc_encodes_to_the_vector(vector: dict[str, Any]) -> None:
    assert build_twopc(vector["fields"]).encode().hex() == vector["inner_hex"]


@pytest.mark.parametrize("vector", VECTORS["two_pc_inner"], ids=names("two_pc_inner"))
def test_twopc_decodes_from_the_vector(vector: dict[str, Any]) -> None:
    inner = bytes.fromhex(vector["inner_hex"])
    expected = build_twopc(vector["fields"])
    assert decode_twopc(inner) == expected
    assert type(expected).decode_body(inner[1:]) == expected


@pytest.mark.parametrize("vector", VECTORS["two_pc_inner"], ids=names("two_pc_inner"))
def test_twopc_travels_in_a_stream_zero_message(vector: dict[str, Any]) -> None:
    frame = build_twopc(vector["fields"])
    wrapped = wrap_twopc(frame)
    message = decode_frame(wrapped)
    assert message == Message(0, 0, 0, None, bytes.fromhex(vector["inner_hex"]))
    assert isinstance(message, Message)
    assert unwrap_twopc(message) == frame
