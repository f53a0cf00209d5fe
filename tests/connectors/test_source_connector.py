"""SourceConnector against a fake worker (the worker's sans-IO session on real sockets) and,
through a proxy that can cut the connection, against the real worker."""

from __future__ import annotations

import hashlib
import time

import pytest
from connector_helpers import Procs, Proxy, free_port
from fake_connector_worker import FakeWorker

import wallaroo.experimental as wx
from wallaroo.errors import ConfigurationError
from wallaroo.protocol.frames import NONE_SEEN

pytestmark = pytest.mark.timeout(30)

FEED_ID = int.from_bytes(hashlib.sha256(b"feed").digest()[:8], "big")


def args(*extra: str) -> list[str]:
    return ["prog", "--application-module", "unit_app", "--connector", "feed", *extra]


def connector(made: list[wx.SourceConnector], *extra: str) -> wx.SourceConnector:
    result = wx.SourceConnector(args(*extra))
    made.append(result)
    return result


def test_a_new_stream_starts_at_id_zero_and_counts_up(worker, connectors):
    conn = connector(connectors)
    conn.connect()
    for i in range(5):
        conn.write(f"m{i}")
    worker.wait(lambda: len(worker.messages) == 5)
    assert worker.ids(FEED_ID) == [0, 1, 2, 3, 4]
    assert worker.payloads() == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert worker.opened == [(FEED_ID, "feed", NONE_SEEN)]
    assert conn.statistics().next_message_id == 5


def test_ids_continue_after_the_notify_ack_point_of_reference(worker, connectors):
    worker.seed(FEED_ID, 41)
    conn = connector(connectors)
    conn.connect()
    conn.write_many([b"a", b"b"])
    worker.wait(lambda: len(worker.messages) == 2)
    assert worker.ids() == [42, 43]


def test_a_lost_connection_reconnects_and_ids_continue(worker, connectors):
    conn = connector(connectors)
    conn.connect()
    conn.write_many([f"{i}" for i in range(10)])
    worker.wait(lambda: len(worker.messages) == 10)
    worker.cut()
    worker.wait(lambda: not worker._live)
    conn.write_many([f"{i}" for i in range(10, 20)])
    worker.wait(lambda: len(worker.messages) == 20)
    assert worker.ids() == list(range(20))
    assert worker.connections == 2
    assert conn.statistics().reconnects == 1
    assert worker.opened[1] == (FEED_ID, "feed", 9)


def test_unacknowledged_messages_are_sent_again_after_a_reconnect(worker, connectors):
    worker.processing = False  # the worker never reports progress: nothing is acknowledged
    conn = connector(connectors)
    conn.connect()
    conn.write_many([b"x", b"y", b"z"])
    worker.wait(lambda: len(worker.messages) == 3)
    worker.cut()
    worker.wait(lambda: not worker._live)
    worker.processing = True
    conn.write(b"w")
    worker.wait(lambda: len(worker.messages) == 7)
    assert worker.payloads() == [b"x", b"y", b"z", b"x", b"y", b"z", b"w"]
    assert worker.ids() == [0, 1, 2, 0, 1, 2, 3]


def test_restart_reconnects_and_renotifies(worker, connectors):
    conn = connector(connectors)
    conn.connect()
    conn.write_many([b"a", b"b", b"c"])
    worker.wait(lambda: len(worker.messages) == 3)
    worker.restart()
    worker.wait(lambda: not worker._live)
    conn.write_many([b"d", b"e"])
    worker.wait(lambda: len(worker.messages) == 5)
    assert worker.ids() == [0, 1, 2, 3, 4]
    assert [o[2] for o in worker.opened] == [NONE_SEEN, 2]


def test_few_credits_block_until_the_worker_acks(app, monkeypatch, connectors):
    fake = FakeWorker(max_credits=10, refill_credits=3)
    monkeypatch.setenv("FEED_PORT", str(fake.port))
    monkeypatch.setenv("FEED_CREDITS", "10")
    monkeypatch.setenv("FEED_REFILL", "3")
    try:
        conn = connector(connectors)
        conn.connect()
        for i in range(50):
            conn.write(str(i))
        conn.write_many(str(i) for i in range(50, 200))
        fake.wait(lambda: len(fake.messages) == 200)
        assert fake.ids() == list(range(200))
        assert conn.statistics().credits <= 10
    finally:
        fake.close()


def test_close_ends_the_stream_and_waits_for_its_ack(worker, connectors):
    conn = connector(connectors)
    conn.connect()
    conn.write("last")
    conn.close()
    worker.wait(lambda: worker.ended == [FEED_ID])
    stats = conn.statistics()
    assert (stats.connected, stats.unacked, stats.pending) == (False, 0, 0)
    with pytest.raises(wx.ConnectorError, match="closed"):
        conn.write("more")


def test_key_and_event_time_are_sent(worker, connectors):
    conn = connector(connectors)
    conn.connect()
    conn.write("v", event_time=1234, key="k")
    conn.write(b"w", key=b"\x00\x01")
    worker.wait(lambda: len(worker.messages) == 2)
    assert [m[2] for m in worker.messages] == [b"k", b"\x00\x01"]
    with pytest.raises(TypeError, match="key"):
        conn.write("v", key=3)


def test_the_instance_parameter_names_the_stream(worker, connectors):
    conn = connector(connectors, "--feed-instance", "2")
    assert conn.stream_name == "feed-2"
    assert conn.stream_id == int.from_bytes(hashlib.sha256(b"feed-2").digest()[:8], "big")
    assert conn.stream_id == wx.stream_id_for("feed-2") == wx.stream_id_for(b"feed-2")
    conn.connect()
    conn.write("x")
    worker.wait(lambda: len(worker.messages) == 1)
    assert worker.opened == [(conn.stream_id, "feed-2", NONE_SEEN)]
    assert worker.hellos[0].program_name == "feed"


def test_write_before_connect_is_an_error(worker, connectors):
    conn = connector(connectors)
    with pytest.raises(wx.ConnectorError, match=r"connect\(\)"):
        conn.write("x")


def test_a_wrong_cookie_is_refused_with_the_workers_reason(app, monkeypatch, connectors):
    fake = FakeWorker(cookie="right")
    monkeypatch.setenv("FEED_PORT", str(fake.port))
    monkeypatch.setenv("FEED_COOKIE", "wrong")
    try:
        with pytest.raises(wx.ConnectorError, match="bad cookie"):
            connector(connectors).connect()
    finally:
        fake.close()


def test_connect_retries_until_its_timeout(app, monkeypatch, connectors):
    monkeypatch.setenv("FEED_PORT", str(free_port()))
    started = time.monotonic()
    with pytest.raises(wx.ConnectorError, match="did not accept a connection"):
        connector(connectors).connect(timeout=0.5)
    assert time.monotonic() - started < 3


def test_an_unknown_connector_lists_the_known_ones(app):
    with pytest.raises(ConfigurationError, match="no source connector named 'nope'.*'feed'"):
        wx.SourceConnector(["p", "--application-module", "unit_app", "--connector", "nope"])
    with pytest.raises(ConfigurationError, match="'out' is a sink connector"):
        wx.SourceConnector(["p", "--application-module", "unit_app", "--connector", "out"])


@pytest.mark.slow
def test_with_the_real_worker_a_cut_connection_loses_and_duplicates_nothing(
    app, monkeypatch, procs: Procs
):
    """Values in flight when the connection breaks are sent again; the worker drops what it
    already has, so the sink sees every value once, in order."""
    feed_port, out_port = free_port(), free_port()
    for name, value in (("FEED_PORT", feed_port), ("OUT_PORT", out_port)):
        monkeypatch.setenv(name, str(value))
        procs.env[name] = str(value)
    sink = wx.SinkConnector(["p", "--application-module", "unit_app", "--connector", "out"])
    sink.listen()
    proxy = Proxy(feed_port)
    conn = wx.SourceConnector(args())
    try:
        procs.machida("unit_app").wait_for("running application")
        conn.connect(port=proxy.port)
        expected = [f"v{i}" for i in range(5000)]
        for batch in range(50):
            conn.write_many(expected[batch * 100 : (batch + 1) * 100])
            if batch in (10, 30):
                proxy.cut()
        got: list[str] = []
        while len(got) < len(expected):
            got.extend(sink.read_many(5000, timeout=10))
        assert got == expected
        assert conn.statistics().reconnects == 2
        assert conn.statistics().next_message_id == 5000
        with pytest.raises(TimeoutError):
            sink.read(timeout=0.3)
    finally:
        conn.close(timeout=1.0)
        sink.close()
        proxy.close()
