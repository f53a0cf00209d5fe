"""SinkConnector against fake workers built from the worker's sans-IO sink session."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from connector_apps import UNIT_APP
from connector_helpers import write_module

import wallaroo.experimental as wx
from wallaroo.errors import StreamDecoderError
from wallaroo.protocol.events import (
    SinkError,
    SinkReady,
    StreamAccepted,
    UncommittedReported,
    VoteReceived,
)
from wallaroo.protocol.sink_session import WorkerSinkSession

pytestmark = pytest.mark.timeout(30)


class FakeSinkWorker:
    """One worker connection to the sink: HELLO + NOTIFY + LIST_UNCOMMITTED, then payloads."""

    def __init__(self, port: int, name: str = "w1", cookie: str = "") -> None:
        self.session = WorkerSinkSession(
            app_name="unit", worker_name=name, sink_id=0, cookie=cookie
        )
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.events: list[object] = []
        self.sock.sendall(self.session.intro(7))

    def expect(self, kind: type, timeout: float = 10.0) -> object:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if isinstance(event, kind):
                    return self.events.pop(i)
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"closed before {kind.__name__}; got {self.events}")
            self.events.extend(self.session.receive(data))

    def ready(self) -> FakeSinkWorker:
        self.expect(SinkReady)
        self.expect(StreamAccepted)
        assert self.expect(UncommittedReported) == UncommittedReported(7, ())
        return self

    def send(self, *payloads: bytes) -> None:
        self.sock.sendall(self.session.payloads(payloads))

    def is_closed_by_peer(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[wx.SinkConnector]:
    write_module(tmp_path, "unit_app", UNIT_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("OUT_COOKIE", "tacos")
    connector = wx.SinkConnector(
        ["prog", "--application-module", "unit_app", "--connector", "out"], buffer_size=8
    )
    yield connector
    connector.close()


@pytest.fixture
def workers() -> Iterator[list[FakeSinkWorker]]:
    made: list[FakeSinkWorker] = []
    yield made
    for worker in made:
        worker.close()


def read_n(sink: wx.SinkConnector, count: int, timeout: float = 5.0) -> list[object]:
    got: list[object] = []
    while len(got) < count:
        got.extend(sink.read_many(count - len(got), timeout=timeout))
    return got


def connect(made: list[FakeSinkWorker], sink: wx.SinkConnector, name: str = "w1") -> FakeSinkWorker:
    worker = FakeSinkWorker(sink.port, name, cookie="tacos")
    made.append(worker)
    return worker.ready()


def test_listen_on_port_zero_reports_the_real_port(sink):
    with pytest.raises(wx.ConnectorError, match=r"listen\(\)"):
        _ = sink.port
    sink.listen(port=0)
    assert sink.port != 0
    assert sink.address == ("127.0.0.1", sink.port)
    with pytest.raises(wx.ConnectorError, match="already listening"):
        sink.listen(port=0)


def test_read_times_out_when_nothing_arrives(sink):
    sink.listen(port=0)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        sink.read(timeout=0.2)
    assert 0.15 < time.monotonic() - started < 2


def test_values_are_decoded_in_arrival_order(sink, workers):
    sink.listen(port=0)
    worker = connect(workers, sink)
    worker.send(b"one", b"two")
    worker.send(b"three")
    assert sink.read(timeout=5) == "one"
    assert read_n(sink, 2) == ["two", "three"]
    stats = sink.statistics()
    assert (stats.workers, stats.received, stats.read) == (("w1",), 3, 3)


def test_the_handshake_and_two_phase_commit_are_answered_without_reading(sink, workers):
    sink.listen(port=0)
    worker = connect(workers, sink)
    worker.send(b"a", b"b")
    worker.sock.sendall(worker.session.phase1(1))
    vote = worker.expect(VoteReceived)
    assert vote == VoteReceived(worker.session.txn_id(1), True)
    worker.sock.sendall(worker.session.phase2(worker.session.txn_id(1), True))
    assert read_n(sink, 2) == ["a", "b"]


def test_a_new_hello_from_the_same_worker_replaces_its_connection(sink, workers):
    sink.listen(port=0)
    first = connect(workers, sink, "w1")
    first.send(b"before")
    assert sink.read(timeout=5) == "before"
    other = connect(workers, sink, "w2")
    second = connect(workers, sink, "w1")
    assert first.is_closed_by_peer()
    second.send(b"after")
    other.send(b"other")
    assert sorted(read_n(sink, 2)) == ["after", "other"]
    assert sorted(sink.statistics().workers) == ["w1", "w2"]


def test_a_wrong_cookie_gets_an_error_and_the_connection_closes(sink, workers):
    sink.listen(port=0)
    worker = FakeSinkWorker(sink.port, "w1", cookie="nachos")
    workers.append(worker)
    error = worker.expect(SinkError)
    assert "bad cookie" in error.message
    assert worker.is_closed_by_peer()
    assert sink.statistics().workers == ()


def test_a_full_buffer_stops_reading_and_nothing_is_lost(sink, workers):
    sink.listen(port=0)
    worker = connect(workers, sink)
    payloads = [b"%05d" % i + b"." * 1000 for i in range(3000)]
    worker.sock.settimeout(None)
    sender = threading.Thread(target=worker.send, args=payloads)  # 3 MB: may wait for reads
    sender.start()
    deadline = time.monotonic() + 5
    while sink.statistics().paused_connections == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = sink.statistics()
    assert stats.paused_connections == 1
    assert stats.buffered < 1000  # bounded: the capacity plus what one read brought
    got = read_n(sink, len(payloads))
    sender.join(5)
    assert got == [p.decode() for p in payloads]


def test_a_value_the_decoder_rejects_raises_and_reading_goes_on(sink, workers):
    sink.listen(port=0)
    worker = connect(workers, sink)
    worker.send(b"ok1", b"\xff\xfe", b"ok2")
    assert sink.read_many(10, timeout=5) == ["ok1"]
    with pytest.raises(StreamDecoderError, match="decoder of sink connector 'out'"):
        sink.read(timeout=5)
    assert sink.read(timeout=5) == "ok2"


def test_after_close_buffered_values_are_read_then_it_reports_closed(sink, workers):
    sink.listen(port=0)
    worker = connect(workers, sink)
    worker.send(b"kept")
    deadline = time.monotonic() + 5
    while sink.statistics().received < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    sink.close()
    assert sink.read(timeout=1) == "kept"
    with pytest.raises(wx.ConnectorError, match="closed"):
        sink.read(timeout=1)
    assert worker.is_closed_by_peer()


def test_read_before_listen_is_an_error(sink):
    with pytest.raises(wx.ConnectorError, match=r"listen\(\)"):
        sink.read(timeout=0.1)
