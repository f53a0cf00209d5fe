"""The metrics service inside a worker (in this process): connector credits, checkpoints,
history, and that it stays out of the way (no metrics, no service)."""

import asyncio
import json
import sys
from pathlib import Path

import wallaroo
import wallaroo.experimental as wx
from wallaroo.protocol.frames import Hello, Message, Notify, NotifyAck, Ok
from wallaroo.protocol.reader import FrameReader
from wallaroo.worker.runtime import WorkerOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "worker"))
from helpers import with_worker

COOKIE = "metrics-cookie"


def connector_app(sink_port):
    enc = wx.stream_message_encoder(lambda v: v)
    dec = wx.stream_message_decoder(lambda data: data.decode())
    source = wx.SourceConnectorConfig(
        "feed", enc, dec, 0, cookie=COOKIE, max_credits=100, refill_credits=10
    )
    out = wallaroo.encoder(lambda s: s + "\n")
    pipeline = wallaroo.source("Feed", source).to_sink(
        wallaroo.TCPSinkConfig("127.0.0.1", sink_port, out)
    )
    return wallaroo.build_application("Feed App", pipeline)


async def http_get(address, path):
    reader, writer = await asyncio.open_connection(*address)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 "), head
    return body


async def drain(reader, writer):
    while await reader.read(65536):
        pass
    writer.close()


def run_worker(options, scenario):
    async def main():
        sink = await asyncio.start_server(drain, "127.0.0.1", 0)
        port = sink.sockets[0].getsockname()[1]
        try:
            return await with_worker(connector_app(port), scenario, options)
        finally:
            sink.close()

    return asyncio.run(main())


async def connector(port, n):
    """A connector connection that opened a stream and sent ``n`` messages."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frames = FrameReader()
    writer.write(Hello("0.0.1", COOKIE, "test", "one").encode())
    writer.write(Notify(1, "s1", 0).encode())
    got = []
    while not any(isinstance(f, NotifyAck) for f in got):
        got += frames.feed(await reader.read(65536))
    assert isinstance(got[0], Ok)
    writer.write(b"".join(Message(1, i + 1, 0, None, b"m%d" % i).encode() for i in range(n)))
    await writer.drain()
    return writer


def test_stats_show_connector_sessions_with_their_credits_and_a_history(tmp_path):
    options = WorkerOptions(
        resilience_dir=str(tmp_path),
        metrics_http="127.0.0.1:0",
        metrics_interval_s=0.05,
        run_with_resilience=True,
        time_between_checkpoints_ns=50_000_000,
    )

    async def scenario(worker):
        address = worker.metrics.http_address
        writer = await connector(worker.addresses["feed"][1], 5)
        for _ in range(100):
            doc = json.loads(await http_get(address, "/api/stats"))
            if doc["sources"][0]["messages"] == 5 and doc["checkpoints"]["taken"] >= 2:
                break
            await asyncio.sleep(0.05)
        history = json.loads(await http_get(address, "/api/history"))
        stats = worker.statistics()
        writer.close()
        return doc, history, stats

    doc, history, stats = run_worker(options, scenario)
    (source,) = doc["sources"]
    assert source["kind"] == "connector source" and source["connections"] == 1
    (session,) = source["sessions"]
    assert session["messages"] == 5 and session["open_streams"] == 1
    assert 0 <= session["credits"] <= 100 and source["credits"] == session["credits"]
    (conn,) = stats.connections
    assert conn.source == "feed" and conn.session.messages_delivered == 5
    cp = doc["checkpoints"]
    assert cp["taken"] >= 2 and cp["recent_durations_s"]
    assert all(d >= 0 for d in cp["recent_durations_s"])
    assert len(history) >= 2 and {"t", "pipelines", "stages"} <= set(history[-1])
    assert history[-1]["pipelines"]["Feed"].keys() >= {"in", "out", "p50", "p95", "p99", "p999"}


def test_without_metrics_there_is_no_service_and_no_timing(tmp_path):
    async def scenario(worker):
        return worker.metrics, worker.engine.metrics, worker.statistics()

    service, timed, stats = run_worker(WorkerOptions(resilience_dir=str(tmp_path)), scenario)
    assert service is None and not timed
    assert all(s.latency is None for s in stats.engine.segments)
