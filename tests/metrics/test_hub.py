"""The metrics hub sender (``--metrics``), checked byte for byte against spec section 5.5.

The expected bytes are built here from the spec's layout with ``struct``, independently of
``wallaroo.metrics.hub``; a test server plays the original's metrics receiver.
"""

import asyncio
import logging
import struct
import time

import pytest
from metrics_helpers import TcpPeer, WorkerProcess, numbers

from wallaroo.engine.clock import SystemClock
from wallaroo.engine.deadletter import DeadLetterStatistics
from wallaroo.engine.histogram import HistogramSnapshot, LatencyHistogram
from wallaroo.engine.local import EngineStatistics
from wallaroo.engine.segment import SegmentStatistics
from wallaroo.metrics.hub import (
    HubReporter,
    HubSender,
    connect_frame,
    join_frame,
    metrics_record,
    payload_frame,
)
from wallaroo.metrics.topology import Topology
from wallaroo.worker.flow import GateStatistics
from wallaroo.worker.runtime import WorkerStatistics

U64_MAX = 2**64 - 1


def spec_text(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">I", len(b)) + b


def spec_record(name, category, worker, pipeline, metric_id, bins, low, high, period, end):
    """Spec 5.5: u32 size (18 + name lengths + 704, as the original computes it), four
    u32-prefixed strings, u16 id, 65 u64 bins, u64 min, max, period, period end."""
    lengths = sum(len(x.encode()) for x in (name, category, worker, pipeline))
    return (
        struct.pack(">I", 18 + lengths + 704)
        + spec_text(name)
        + spec_text(category)
        + spec_text(worker)
        + spec_text(pipeline)
        + struct.pack(">H", metric_id)
        + b"".join(struct.pack(">Q", n) for n in bins)
        + struct.pack(">QQQQ", low, high, period, end)
    )


def spec_payload(event, topic, data):
    body = b"\x03" + spec_text(event) + spec_text(topic) + struct.pack(">I", len(data)) + data
    assert len(body) == 1 + 12 + len(event) + len(topic) + len(data)
    return struct.pack(">I", len(body)) + body


def test_connect_join_and_payload_frames_are_the_originals():
    assert connect_frame() == b"\x00\x00\x00\x01\x01"
    topic, worker = "metrics:Parity Count", "worker-1"
    assert join_frame(topic, worker) == (
        struct.pack(">I", 1 + 4 + len(topic) + 4 + len(worker))
        + b"\x02"
        + spec_text(topic)
        + spec_text(worker)
    )
    assert payload_frame("metrics", topic, b"DATA") == spec_payload("metrics", topic, b"DATA")


def test_a_record_is_byte_exact_for_a_known_histogram():
    h = LatencyHistogram()
    h.record(1500, 10)
    h.record(70, 2)
    bins = [0] * 65
    bins[11], bins[7] = 10, 2
    got = metrics_record("decode+parse", "computation", "w1", "Parity", 3, h.snapshot(), 2, 4)
    assert got == spec_record(
        "decode+parse", "computation", "w1", "Parity", 3, bins, 70, 1500, 2, 4
    )
    assert len(got) == 4 + (4 + 12) + (4 + 11) + (4 + 2) + (4 + 6) + 2 + 65 * 8 + 4 * 8
    empty = metrics_record("é", "start-to-end", "w", "p", 0, HistogramSnapshot(), 2, 4)
    assert empty == spec_record("é", "start-to-end", "w", "p", 0, [0] * 65, U64_MAX, 0, 2, 4)


def test_the_reporter_sends_period_deltas_from_the_first_value_on():
    topo = Topology("App", ["P"], {"P": ["src"]}, {"P": [0]}, {"P": []}, {0: ["step"]}, {})
    h = LatencyHistogram()

    def stats():
        snap = h.snapshot()
        seg = SegmentStatistics(0, "P/src/step", "P", snap.count, snap.count, 0, snap, snap)
        engine = EngineStatistics((seg,), (), (), DeadLetterStatistics(0, (), None))
        return WorkerStatistics("w", engine, (), (), GateStatistics(True, (), 0, 0))

    reporter = HubReporter(topo, "w", period_ns=1000)
    assert reporter.period_end(2500) == 3000 and reporter.period_end(3000) == 4000
    assert reporter.frames(stats(), 1000) == b""  # nothing recorded yet: no reporter yet
    h.record(100, 5)
    first = reporter.metrics(stats())
    assert [(m.category, m.name, m.pipeline) for m in first] == [
        ("computation", "P/src/step", "P"),
        ("start-to-end", "P", "P"),
        ("node-ingress-egress", "w", "P"),
    ]
    assert all(m.histogram.count == 5 for m in first)
    h.record(3000, 2)
    second = reporter.metrics(stats())
    assert [m.histogram.count for m in second] == [2, 2, 2]
    assert second[0].histogram.bins[12] == 2 and second[0].histogram.bins[7] == 0
    third = reporter.frames(stats(), 5000)  # an empty period still reports, as the original
    assert (
        spec_record("P/src/step", "computation", "w", "P", 0, [0] * 65, U64_MAX, 0, 1000, 5000)
        in third
    )


class FakeHub(TcpPeer):
    """The original's metrics receiver: accepts one worker and keeps every byte."""

    def __init__(self):
        self.data = bytearray()
        super().__init__()

    def received(self, chunk):
        self.data += chunk

    def frames(self):
        """Whole frames received so far: (type, body, raw bytes)."""
        out, pos, data = [], 0, bytes(self.data)
        while pos + 4 <= len(data):
            (size,) = struct.unpack_from(">I", data, pos)
            if pos + 4 + size > len(data):
                break
            raw = data[pos : pos + 4 + size]
            out.append((raw[4], raw[5:], raw))
            pos += 4 + size
        return out


def read_text(body, pos):
    (n,) = struct.unpack_from(">I", body, pos)
    return body[pos + 4 : pos + 4 + n].decode(), pos + 4 + n


def decode_payload(body):
    """PAYLOAD body -> (event, topic, record fields), per the spec."""
    event, pos = read_text(body, 0)
    topic, pos = read_text(body, pos)
    (size,) = struct.unpack_from(">I", body, pos)
    data = body[pos + 4 :]
    assert len(data) == size
    fields, p = [], 4
    for _ in range(4):
        text, p = read_text(data, p)
        fields.append(text)
    (metric_id,) = struct.unpack_from(">H", data, p)
    rest = struct.unpack_from(">69Q", data, p + 2)
    assert p + 2 + 69 * 8 == len(data)
    return event, topic, (*fields, metric_id, list(rest[:65]), *rest[65:])


@pytest.mark.slow
def test_a_worker_reports_to_the_hub_byte_for_byte(tmp_path):
    hub = FakeHub()
    worker = WorkerProcess(tmp_path, "--metrics", f"127.0.0.1:{hub.port}", "--name", "w1")
    try:
        sent = 2000
        worker.send(numbers(0, sent))
        worker.receiver.wait_lines(sent)
        deadline = time.monotonic() + 12
        while True:
            frames = hub.frames()
            records = [decode_payload(body) for kind, body, _ in frames if kind == 3]
            counted = sum(sum(r[2][5]) for r in records if r[2][1] == "start-to-end")
            if counted >= sent or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        worker.stop()
        hub.close()
    topic = "metrics:Parity Count"
    assert frames[0][2] == b"\x00\x00\x00\x01\x01"  # CONNECT
    assert frames[1][2] == (
        struct.pack(">I", 1 + 4 + len(topic) + 4 + 2) + b"\x02" + spec_text(topic) + spec_text("w1")
    )
    assert hub.connections == 1
    totals = {}
    for (kind, _, raw), (event, got_topic, fields) in zip(frames[2:], records, strict=True):
        assert kind == 3 and event == "metrics" and got_topic == topic
        name, category, worker_name, pipeline, _, bins, low, high, period, end = fields
        assert raw == spec_payload(event, topic, spec_record(*fields))  # byte for byte
        assert worker_name == "w1" and pipeline == "Parity"
        assert period == 2_000_000_000 and end % period == 0
        if sum(bins):
            assert low <= high and bins[low.bit_length()] and bins[high.bit_length()]
        else:
            assert (low, high) == (U64_MAX, 0)
        key = (category, name)
        totals[key] = totals.get(key, 0) + sum(bins)
    stages = {k: v for k, v in totals.items() if k[0] == "computation"}
    assert sorted(stages.values()) == [sent, sent]
    assert totals[("start-to-end", "Parity")] == sent
    assert totals[("node-ingress-egress", "w1")] == sent


def test_the_sender_joins_again_after_the_hub_drops_it():
    topo = Topology("App", ["P"], {"P": ["src"]}, {"P": [0]}, {"P": []}, {0: ["step"]}, {})
    h = LatencyHistogram()
    h.record(500, 3)

    def stats():
        snap = h.snapshot()
        seg = SegmentStatistics(0, "P/src/step", "P", 3, 3, 0, snap, snap)
        engine = EngineStatistics((seg,), (), (), DeadLetterStatistics(0, (), None))
        return WorkerStatistics("w", engine, (), (), GateStatistics(True, (), 0, 0))

    hello = connect_frame() + join_frame("metrics:App", "w")

    async def main():
        connections = asyncio.Queue()

        async def accept(reader, writer):
            await connections.put((reader, writer))

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reporter = HubReporter(topo, "w", period_ns=50_000_000)
        sender = HubSender("127.0.0.1", port, reporter, stats, SystemClock(), logging.getLogger())
        task = asyncio.create_task(sender.run())
        reader, writer = await asyncio.wait_for(connections.get(), 5)
        first = await asyncio.wait_for(reader.readexactly(len(hello) + 5), 5)
        writer.close()  # the hub goes away; the sender reconnects at its next period
        reader, writer = await asyncio.wait_for(connections.get(), 5)
        second = await asyncio.wait_for(reader.readexactly(len(hello)), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        writer.close()
        server.close()
        return first, second

    first, second = asyncio.run(main())
    assert first.startswith(hello) and first[len(hello) + 4] == 3  # then a PAYLOAD
    assert second == hello
