"""The worker's connector sink on a fake transport: output after a checkpoint's barrier is held
(counted once, in the buffer and against the gate) until phase 2, then sent or dropped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from wallaroo.protocol.frames import Message, NotifyAck, Ok
from wallaroo.protocol.reader import FrameReader
from wallaroo.protocol.sink_session import WorkerSinkSession
from wallaroo.protocol.twopc import (
    ReplyUncommitted,
    TwoPCPhase1,
    TwoPCReply,
    unwrap_twopc,
    wrap_twopc,
)
from wallaroo.worker.connector_sink import ConnectorSinkOutput
from wallaroo.worker.flow import HIGH_WATER, Gate


class FakeTransport:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def take(self) -> list[Any]:
        frames = FrameReader().feed(bytes(self.data))
        self.data.clear()
        return frames


def output_payloads(frames: list[Any]) -> list[tuple[int, bytes]]:
    return [
        (f.message_id, f.message) for f in frames if isinstance(f, Message) and f.stream_id == 1
    ]


def connected(gate: Gate) -> tuple[ConnectorSinkOutput, FakeTransport]:
    session = WorkerSinkSession(app_name="app", worker_name="w1", sink_id=0, cookie="c")
    out = ConnectorSinkOutput("out", "127.0.0.1", 1, gate, logging.getLogger("test"), session)
    transport = FakeTransport()
    out.connection_made(transport)  # type: ignore[arg-type]
    transport.take()  # the intro
    out.data_received(
        Ok(500).encode() + NotifyAck(True, 1, 0).encode() + wrap_twopc(ReplyUncommitted(1, ()))
    )
    return out, transport


def test_output_after_the_barrier_is_held_until_a_commit() -> None:
    async def main() -> None:
        gate = Gate()
        out, transport = connected(gate)
        out.write([b"ab", b"cde"])
        out.write_sized([b"f"], 1)
        assert output_payloads(transport.take()) == [(0, b"ab"), (2, b"cde"), (5, b"f")]

        assert out.barrier(7) == {"offset": 6, "txn": "app-w-w1-id-0:c_id=7"}
        out.write([b"gh"])
        out.write_sized([b"x" * HIGH_WATER], HIGH_WATER)
        assert transport.data == b""  # held, not framed: the offsets wait for phase 2
        assert out.buffered_bytes == 2 + HIGH_WATER and not gate.is_open
        vote = asyncio.ensure_future(out.prepare(7, timeout=5))
        await asyncio.sleep(0.01)
        (phase1,) = [unwrap_twopc(f) for f in transport.take()]
        assert isinstance(phase1, TwoPCPhase1) and phase1.where_list == ((1, 0, 6),)
        out.data_received(wrap_twopc(TwoPCReply("app-w-w1-id-0:c_id=7", True)))
        assert await vote is True

        out.commit("app-w-w1-id-0:c_id=7")
        sent = transport.take()
        assert output_payloads(sent) == [(6, b"gh"), (8, b"x" * HIGH_WATER)]
        assert out.buffered_bytes == 0 and gate.is_open

        out.barrier(8)
        out.write([b"lost"])
        out.abort("app-w-w1-id-0:c_id=8")  # never prepared: the sink saw nothing of it
        assert output_payloads(transport.take()) == [] and out.buffered_bytes == 0
        out.write([b"next"])
        assert output_payloads(transport.take()) == [(8 + HIGH_WATER, b"next")]

    asyncio.run(main())


def test_output_waits_for_the_intro_and_is_counted_once() -> None:
    asyncio.run(_waits_for_the_intro())


async def _waits_for_the_intro() -> None:
    gate = Gate()
    session = WorkerSinkSession(app_name="app", worker_name="w1", sink_id=0, cookie="c")
    out = ConnectorSinkOutput("out", "127.0.0.1", 1, gate, logging.getLogger("test"), session)
    out.write_sized([b"abc", b""], 3)
    out.write_sized([b"de"], None)  # not counted by the caller: counted here, as it waits
    assert out.buffered_bytes == 5 and gate.is_open
    out.write_sized([b"y" * HIGH_WATER], HIGH_WATER)
    assert not gate.is_open
    transport = FakeTransport()
    out.connection_made(transport)  # type: ignore[arg-type]
    transport.take()
    assert out.buffered_bytes == 5 + HIGH_WATER  # nothing is sent before the sink's answers
    out.data_received(
        Ok(500).encode() + NotifyAck(True, 1, 0).encode() + wrap_twopc(ReplyUncommitted(1, ()))
    )
    assert output_payloads(transport.take()) == [(0, b"abc"), (3, b"de"), (5, b"y" * HIGH_WATER)]
    assert out.buffered_bytes == 0 and gate.is_open
