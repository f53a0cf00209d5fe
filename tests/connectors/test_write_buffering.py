"""``SourceConnector.write`` buffers: when a written message is handed to the socket (by the
call itself, by the connector's thread after ``linger``, by ``flush``/``poll``/``write_many``/
``close``, at the interpreter's exit), and what the connector's thread reports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fake_connector_worker import FakeWorker

import wallaroo.experimental as wx
from wallaroo.experimental.source_connector import BUFFER_MESSAGES

pytestmark = pytest.mark.timeout(30)

ARGS = ["prog", "--application-module", "unit_app", "--connector", "feed"]


def connected(connectors: list[wx.SourceConnector], linger: float) -> wx.SourceConnector:
    connector = wx.SourceConnector(ARGS, linger=linger)
    connectors.append(connector)
    connector.connect()
    return connector


def test_with_linger_zero_write_sends_before_it_returns(worker, connectors) -> None:
    conn = connected(connectors, linger=0)
    conn.write("now")
    assert conn.statistics().pending == 0
    worker.wait(lambda: worker.payloads() == [b"now"])


def test_a_written_message_waits_for_flush_poll_or_write_many(worker, connectors) -> None:
    conn = connected(connectors, linger=60)
    conn.write("a")
    time.sleep(0.2)
    assert conn.statistics().pending == 1
    assert worker.payloads() == []
    conn.flush()
    assert conn.statistics().pending == 0
    worker.wait(lambda: worker.payloads() == [b"a"])
    conn.write("b")
    conn.poll()
    worker.wait(lambda: worker.payloads() == [b"a", b"b"])
    conn.write("c")
    conn.write_many(["d", "e"])
    worker.wait(lambda: worker.payloads() == [b"a", b"b", b"c", b"d", b"e"])
    assert worker.ids() == [0, 1, 2, 3, 4]


def test_the_connectors_thread_sends_a_message_after_linger(worker, connectors) -> None:
    conn = connected(connectors, linger=0.05)
    started = time.monotonic()
    conn.write("alone")
    worker.wait(lambda: worker.payloads() == [b"alone"], timeout=5)
    assert time.monotonic() - started >= 0.04
    assert conn.statistics().pending == 0


def test_a_full_buffer_is_sent_by_the_write_that_fills_it(worker, connectors) -> None:
    conn = connected(connectors, linger=60)
    for i in range(BUFFER_MESSAGES - 1):
        conn.write(str(i))
    assert conn.statistics().pending == BUFFER_MESSAGES - 1
    conn.write("last")
    assert conn.statistics().pending == 0
    worker.wait(lambda: len(worker.messages) == BUFFER_MESSAGES)
    conn.write("x" * 70_000)  # 64 KiB of payload fill it too
    assert conn.statistics().pending == 0


def test_close_sends_what_is_buffered_then_ends_the_stream(worker, connectors) -> None:
    conn = connected(connectors, linger=60)
    conn.write("before the end", event_time=5, key="k")
    conn.close()
    worker.wait(lambda: worker.ended == [conn.stream_id])
    assert worker.messages == [(conn.stream_id, 0, b"k", b"before the end")]


def test_the_connectors_thread_reconnects_after_a_cut(worker, connectors) -> None:
    conn = connected(connectors, linger=0.01)
    conn.write("one")
    worker.wait(lambda: len(worker.messages) == 1)
    worker.cut()  # noticed by the thread while it reads ACKs, or when it sends "two"
    conn.write("two")
    worker.wait(lambda: worker.payloads() == [b"one", b"two"] and worker.connections == 2)
    assert worker.ids() == [0, 1]
    assert conn.statistics().reconnects == 1


def test_an_error_met_by_the_connectors_thread_is_raised_by_the_next_call(
    worker, connectors
) -> None:
    conn = connected(connectors, linger=0.01)
    conn.write("first")
    worker.wait(lambda: len(worker.messages) == 1)
    worker.send_error("go away")
    deadline = time.monotonic() + 5
    with pytest.raises(wx.ConnectorError, match="go away"):  # noqa: PT012
        while time.monotonic() < deadline:  # the thread sends, then reads the ERROR
            conn.write("more")
            time.sleep(0.02)
    with pytest.raises(wx.ConnectorError, match=r"connect\(\)"):
        conn.write("after")


def test_close_does_not_wait_for_credits_the_thread_is_waiting_for(app, monkeypatch, connectors):
    fake = FakeWorker(max_credits=10, refill_credits=3)
    fake.acking = False  # no ACK, so no credits after the first 10 (one went to NOTIFY)
    monkeypatch.setenv("FEED_PORT", str(fake.port))
    monkeypatch.setenv("FEED_CREDITS", "10")
    monkeypatch.setenv("FEED_REFILL", "3")
    try:
        conn = connected(connectors, linger=0.01)
        for i in range(15):
            conn.write(str(i))
        fake.wait(lambda: len(fake.messages) == 9)
        started = time.monotonic()
        conn.close(timeout=0.3)
        assert time.monotonic() - started < 3
    finally:
        fake.close()


def test_what_is_buffered_is_sent_when_the_interpreter_exits(worker, app: Path) -> None:
    program = textwrap.dedent(
        f"""
        import wallaroo.experimental as wx

        connector = wx.SourceConnector({ARGS!r}, linger=60)
        connector.connect()
        connector.write("written just before the end")
        """
    )
    env = dict(os.environ, PYTHONPATH=str(app), FEED_PORT=str(worker.port))
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    worker.wait(lambda: worker.payloads() == [b"written just before the end"])
