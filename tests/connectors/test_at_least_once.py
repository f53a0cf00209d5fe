"""AtLeastOnceSourceConnector, MultiSourceConnector and the file readers."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from connector_apps import UNIT_APP
from connector_helpers import Procs, free_port, write_module
from fake_connector_worker import FakeWorker

import wallaroo.experimental as wx
from wallaroo.errors import WallarooParameterError
from wallaroo.experimental import connector_wire_messages as cwm
from wallaroo.experimental.connectors import (
    FramedFileReader,
    MultiSourceConnector,
    ThrottledFileReader,
)
from wallaroo.protocol.frames import NONE_SEEN

pytestmark = pytest.mark.timeout(30)


def framed_file(path: Path, records: list[bytes]) -> list[int]:
    """Write u32-framed records; return each record's end offset (its point of reference)."""
    ends = []
    with path.open("wb") as f:
        for record in records:
            f.write(struct.pack(">I", len(record)) + record)
            ends.append(f.tell())
    return ends


@pytest.fixture
def worker() -> Iterator[FakeWorker]:
    fake = FakeWorker()
    yield fake
    fake.close()


class Recorder(wx.AtLeastOnceSourceConnector):
    """Records every hook call."""

    def __init__(self, port: int, cookie: str = "") -> None:
        super().__init__("0.0.1", cookie, "recorder", "r1", "127.0.0.1", port)
        self.calls: list[tuple[str, object]] = []
        self.opened = threading.Event()

    def stream_added(self, stream: wx.Stream) -> None:
        self.calls.append(("added", stream))

    def stream_opened(self, stream: wx.Stream) -> None:
        self.calls.append(("opened", stream))
        self.opened.set()

    def stream_closed(self, stream: wx.Stream) -> None:
        self.calls.append(("closed", stream))

    def stream_acked(self, stream: wx.Stream) -> None:
        self.calls.append(("acked", stream))

    def handle_restarted(self, streams: list[wx.Stream]) -> None:
        self.calls.append(("restarted", streams))
        super().handle_restarted(streams)


def test_hooks_follow_the_stream_through_messages_restart_and_end(worker):
    conn = Recorder(worker.port)
    try:
        conn.notify(5, "five")  # before connect: sent once connected
        conn.connect()
        assert conn.opened.wait(5)
        assert conn.calls[:2] == [
            ("added", wx.Stream(5, "five", NONE_SEEN, False)),
            ("opened", wx.Stream(5, "five", NONE_SEEN, True)),
        ]
        with pytest.raises(wx.ProtocolError, match="not open"):
            conn.write(cwm.Message(6, 0, 0, None, b"x"))
        for i in range(3):
            conn.write(cwm.Message(5, i, 0, None, b"m%d" % i))
        worker.wait(lambda: len(worker.messages) == 3)
        conn.opened.clear()
        worker.restart()
        assert conn.opened.wait(5)
        assert ("closed", wx.Stream(5, "five", NONE_SEEN, False)) in conn.calls
        assert ("opened", wx.Stream(5, "five", 2, True)) in conn.calls
        conn.end_of_stream(5)
        deadline = time.monotonic() + 5
        while not any(c[0] == "acked" for c in conn.calls) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ("acked", wx.Stream(5, "five", 2, False)) in conn.calls
        assert worker.ended == [5]
    finally:
        conn.shutdown()
    assert conn.join(5) is None


class Queued(Recorder):
    """An iterator fed by another thread, which calls wake(); asked again after idle only
    every 30 s, so that only wake() can get a message through in time."""

    idle_poll = 30.0

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.queue: list[cwm.Message] = []
        self.asked_idle = threading.Event()

    def __next__(self) -> cwm.Message | None:
        if self.queue:
            return self.queue.pop(0)
        self.asked_idle.set()
        return None


def test_wake_asks_an_idle_iterator_again_at_once(worker):
    conn = Queued(worker.port)
    try:
        conn.notify(5, "five")
        conn.connect()
        assert conn.opened.wait(5)
        assert conn.asked_idle.wait(5)  # it had nothing: the next poll is 30 s away
        for i in range(2):
            conn.queue.append(cwm.Message(5, i, 0, None, b"m%d" % i))
            started = time.monotonic()
            conn.wake()
            worker.wait(lambda n=i: len(worker.messages) == n + 1, timeout=5)
            assert time.monotonic() - started < 1.0
    finally:
        conn.shutdown()
    assert worker.payloads() == [b"m0", b"m1"]


def test_writing_an_error_shuts_down_and_join_returns_it(worker):
    conn = Recorder(worker.port)
    conn.connect()
    conn.write(cwm.Error("giving up"))
    error = conn.join(5)
    assert isinstance(error, wx.ConnectorError)
    assert "giving up" in str(error)


def test_a_wrong_cookie_fails_connect():
    fake = FakeWorker(cookie="right")
    try:
        with pytest.raises(wx.ConnectorError, match="bad cookie"):
            Recorder(fake.port, cookie="wrong").connect()
    finally:
        fake.close()


def test_multi_source_resumes_each_file_after_the_acked_position(tmp_path, worker):
    a = tmp_path / "a.msg"
    ends = framed_file(a, [b"r%d" % i for i in range(20)])
    worker.seed(wx.stream_id_for(str(a)), ends[9])  # the worker has records 0-9 already
    conn = MultiSourceConnector("0.0.1", "", "files", "i", "127.0.0.1", worker.port)
    conn.connect()
    conn.add_source(FramedFileReader(a))
    assert conn.join(10) is None
    assert worker.payloads() == [b"r%d" % i for i in range(10, 20)]
    assert worker.ids() == ends[10:]
    assert {m[2] for m in worker.messages} == {str(a).encode()}
    assert worker.ended == [wx.stream_id_for(str(a))]


def test_multi_source_sends_everything_once_across_a_restart(tmp_path):
    worker = FakeWorker(max_credits=100, refill_credits=20)
    worker.acking = False  # the connector stops, out of credits, in the middle of the files
    paths = [tmp_path / "a.msg", tmp_path / "b.msg"]
    records = {p: [b"%s-%d" % (p.name.encode(), i) for i in range(3000)] for p in paths}
    for path in paths:
        framed_file(path, records[path])
    conn = MultiSourceConnector("0.0.1", "", "files", "i", "127.0.0.1", worker.port)
    conn.connect()
    for path in paths:
        conn.add_source(FramedFileReader(path))
    try:
        worker.wait(lambda: len(worker.messages) == 98)  # 100 credits, 2 spent on NOTIFYs
        worker.acking = True
        worker.restart()
        assert conn.join(15) is None
        assert worker.connections == 2
        for path in paths:
            sid = wx.stream_id_for(str(path))
            got = [m[3] for m in worker.messages if m[0] == sid]
            assert got == records[path]
    finally:
        worker.close()


@pytest.mark.slow
def test_two_framed_files_reach_the_real_worker_exactly_once(tmp_path, monkeypatch, procs: Procs):
    write_module(tmp_path, "unit_app", UNIT_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    feed_port, out_port = free_port(), free_port()
    for name, value in (("FEED_PORT", feed_port), ("OUT_PORT", out_port)):
        monkeypatch.setenv(name, str(value))
        procs.env[name] = str(value)
    expected = []
    for name in ("one.msg", "two.msg"):
        records = [f"{name}:{i}".encode() for i in range(1000)]
        framed_file(tmp_path / name, records)
        expected += [r.decode() for r in records]
    sink = wx.SinkConnector(["p", "--application-module", "unit_app", "--connector", "out"])
    sink.listen()
    try:
        procs.machida("unit_app").wait_for("running application")
        conn = MultiSourceConnector("0.0.1", "", "files", "i", "127.0.0.1", feed_port)
        conn.connect()
        conn.add_source(FramedFileReader(tmp_path / "one.msg"))
        conn.add_source(FramedFileReader(tmp_path / "two.msg"))
        assert conn.join(20) is None
        assert conn.streams == {}
        got: list[str] = []
        while len(got) < len(expected):
            got.extend(sink.read_many(2000, timeout=10))
        with pytest.raises(TimeoutError):
            sink.read(timeout=0.3)
        assert sorted(got) == sorted(expected)
        for name in ("one.msg", "two.msg"):  # each file's records in order
            assert [g for g in got if g.startswith(name)] == [
                e for e in expected if e.startswith(name)
            ]
    finally:
        sink.close()


def test_framed_file_reader_positions_and_reset(tmp_path):
    path = tmp_path / "f.msg"
    ends = framed_file(path, [b"a", b"bb", b"ccc"])
    with path.open("ab") as f:
        f.write(struct.pack(">I", 10) + b"trunc")  # a record still being written
    reader = FramedFileReader(path)
    try:
        assert reader.name == str(path)
        assert reader.key == str(path).encode()
        assert list(reader) == [(b"a", ends[0]), (b"bb", ends[1]), (b"ccc", ends[2])]
        assert reader.point_of_ref() == ends[2]
        reader.reset(ends[0])
        assert next(reader) == (b"bb", ends[1])
        reader.reset(NONE_SEEN)
        assert next(reader) == (b"a", ends[0])
        with pytest.raises(WallarooParameterError):
            reader.reset(-1)
    finally:
        reader.close()


def test_throttled_reader_lines_text_and_frames(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"first\nsecond\r\nthird")
    reader = ThrottledFileReader(lines)
    assert list(reader) == [(b"first", 0), (b"second", 6), (b"third", 14)]
    reader.reset(6)  # the record at the reset position is read again
    assert next(reader) == (b"second", 6)
    reader.close()
    text = ThrottledFileReader(lines, is_text_lines=True)
    assert next(text) == ("first", 0)
    text.close()
    framed = tmp_path / "f.msg"
    framed_file(framed, [b"x", b"yy"])
    reader = ThrottledFileReader(framed, is_framed=True)
    assert list(reader) == [(b"x", 0), (b"yy", 5)]
    reader.close()
    with pytest.raises(WallarooParameterError, match="not both"):
        ThrottledFileReader(lines, is_framed=True, is_text_lines=True)


def test_throttled_reader_yields_nothing_when_ahead_of_its_rate(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_bytes(b"0123456789\n" * 10)
    reader = ThrottledFileReader(path, limit_rate=100)  # 100 bytes/s
    try:
        assert next(reader) == (b"0123456789", 0)
        assert next(reader) == (None, 0)  # 11 bytes sent at once: wait ~0.1 s
        time.sleep(0.15)
        assert next(reader) == (b"0123456789", 11)
    finally:
        reader.close()


def test_writes_from_another_thread_wait_for_credits(tmp_path):
    fake = FakeWorker(max_credits=5, refill_credits=1)
    conn = Recorder(fake.port)
    try:
        conn.notify(9, "nine")
        conn.connect()
        assert conn.opened.wait(5)
        for i in range(50):
            conn.write(cwm.Message(9, i, 0, None, b"%d" % i))
        fake.wait(lambda: len(fake.messages) == 50)
        assert fake.ids() == list(range(50))
    finally:
        conn.shutdown()
        fake.close()
    assert conn.join(5) is None


def test_remove_source_ends_its_stream_and_then_the_connector_stops(tmp_path, worker):
    path = tmp_path / "slow.txt"
    path.write_bytes(b"line\n" * 1000)
    source = ThrottledFileReader(path, limit_rate=500)  # 100 lines a second: still running
    conn = MultiSourceConnector("0.0.1", "", "files", "i", "127.0.0.1", worker.port)
    conn.connect()
    conn.add_source(source)
    worker.wait(lambda: len(worker.messages) >= 5)
    assert conn.remove_source(source, timeout=5)
    assert worker.ended == [wx.stream_id_for(str(path))]
    assert conn.join(5) is None
    assert 5 <= len(worker.messages) < 1000


def test_an_error_from_the_worker_stops_the_connector_with_that_error(worker):
    conn = Recorder(worker.port)
    conn.notify(3, "three")
    conn.connect()
    assert conn.opened.wait(5)
    worker.send_error("out of patience")
    error = conn.join(5)
    assert isinstance(error, wx.ConnectorError)
    assert "out of patience" in str(error)
