"""SinkConnector against fake workers built from the worker's sans-IO sink session."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from connector_apps import UNIT_APP
from connector_helpers import write_module

import wallaroo.experimental as wx
from wallaroo.errors import StreamDecoderError, WallarooParameterError
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


ARGS = ["prog", "--application-module", "unit_app", "--connector", "out"]


@pytest.fixture
def make_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., wx.SinkConnector]]:
    """``make_sink(*extra_args, **options)``: a SinkConnector for ``unit_app``'s ``out``, made
    in ``tmp_path`` (so the default dead-letter file is ``tmp_path/wallaroo-deadletter/...``)."""
    write_module(tmp_path, "unit_app", UNIT_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OUT_COOKIE", "tacos")
    made: list[wx.SinkConnector] = []

    def make(*extra: str, **options: Any) -> wx.SinkConnector:
        connector = wx.SinkConnector([*ARGS, *extra], **{"buffer_size": 8, **options})
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


@pytest.fixture
def sink(make_sink: Callable[..., wx.SinkConnector]) -> wx.SinkConnector:
    return make_sink()


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


def dead_letters(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_received(sink: wx.SinkConnector, count: int) -> None:
    deadline = time.monotonic() + 5
    while sink.statistics().received < count:
        assert time.monotonic() < deadline, sink.statistics()
        time.sleep(0.01)


def test_outputs_the_decoder_rejects_are_dead_letters_and_the_others_are_read(sink, workers):
    sink.listen(port=0)
    worker = connect(workers, sink)
    worker.send(b"ok1", b"\xff1", b"ok2", b"\xff2", b"\xff3", b"ok3")
    wait_received(sink, 6)
    assert sink.read_many(10, timeout=5) == ["ok1", "ok2", "ok3"]  # one batch, in order
    assert sink.dead_letter_path == sink.dead_letter_path.absolute()
    assert sink.dead_letter_path == Path.cwd() / "wallaroo-deadletter" / "out-sink.jsonl"
    letters = dead_letters(sink.dead_letter_path)
    assert [base64.b64decode(d["payload"]) for d in letters] == [b"\xff1", b"\xff2", b"\xff3"]
    assert [d["message_id"] for d in letters] == [3, 8, 10]  # byte offsets in w1's output
    assert {(d["worker"], d["pipeline"], d["stage"], d["error_type"]) for d in letters} == {
        ("w1", "p", "sink decoder decode_out", "UnicodeDecodeError")
    }
    assert {d["payload_encoding"] for d in letters} == {"raw"}
    stats = sink.statistics()
    assert (stats.received, stats.read, stats.buffered, stats.dead_letters) == (6, 6, 0, 3)


def test_the_seed_read_loop_reads_past_a_rejected_output(sink, workers):
    sink.listen(port=0)
    worker = connect(workers, sink)
    for i in range(5):
        worker.send(b"\xffbad" if i == 2 else f"line {i}".encode())
    got = []
    while True:  # the seed's loop, which a StreamDecoderError used to end
        message = sink.read()
        got.append(message)
        if message == "line 4":
            break
    assert got == ["line 0", "line 1", "line 3", "line 4"]
    assert [d["message_id"] for d in dead_letters(sink.dead_letter_path)] == [12]


def test_a_read_waits_past_rejected_outputs_for_a_good_one_within_its_timeout(sink, workers):
    sink.listen(port=0)
    worker = connect(workers, sink)
    worker.send(b"\xff", b"\xfe")
    wait_received(sink, 2)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        sink.read(timeout=0.3)
    assert 0.25 < time.monotonic() - started < 2
    assert sink.statistics().dead_letters == 2
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(sink.read(timeout=5)))
    reader.start()
    worker.send(b"\xfd")
    time.sleep(0.05)  # the reader takes the bad one alone and waits on
    worker.send(b"good")
    reader.join(10)
    assert got == ["good"]
    assert sink.statistics().dead_letters == 3


def test_raise_mode_raises_for_a_rejected_output_and_loses_nothing_after_it(make_sink, workers):
    sink = make_sink(on_decode_error="raise")
    sink.listen(port=0)
    worker = connect(workers, sink)
    worker.send(b"ok1", b"\xff\xfe", b"ok2", b"\xfd", b"ok3")
    wait_received(sink, 5)
    assert sink.read_many(10, timeout=5) == ["ok1"]
    with pytest.raises(StreamDecoderError, match="decoder of sink connector 'out'"):
        sink.read(timeout=5)
    assert sink.read_many(10, timeout=5) == ["ok2"]
    with pytest.raises(StreamDecoderError, match="payload of 1 bytes"):
        sink.read_many(10, timeout=5)
    assert sink.read_many(10, timeout=5) == ["ok3"]
    assert not sink.dead_letter_path.exists()
    assert sink.statistics().dead_letters == 0
    with pytest.raises(WallarooParameterError, match="on_decode_error"):
        make_sink(on_decode_error="drop")


def test_the_program_flag_names_the_dead_letter_file_and_wins_over_the_argument(
    make_sink, workers, tmp_path
):
    chosen = tmp_path / "by-argument.jsonl"
    assert make_sink(dead_letter_path=chosen).dead_letter_path == chosen
    flagged = tmp_path / "letters" / "by-flag.jsonl"
    sink = make_sink("--out-deadletter_path", str(flagged), dead_letter_path=chosen)
    assert sink.dead_letter_path == flagged
    assert make_sink(optional_params=["deadletter_path"]).params.deadletter_path is None
    sink.listen(port=0)
    connect(workers, sink).send(b"\xff", b"after")
    assert sink.read(timeout=5) == "after"
    assert [d["payload"] for d in dead_letters(flagged)] == ["/w=="]
    assert not chosen.exists()


def test_dead_letters_are_logged_first_in_full_then_as_a_total(sink, workers, caplog):
    caplog.set_level(logging.INFO, logger="wallaroo.connector")
    sink.listen(port=0)
    worker = connect(workers, sink)
    worker.send(*[b"\xff\n\x1b[31m"] * 1000, b"last")  # 1,000 in about a millisecond
    assert read_n(sink, 1) == ["last"]
    sink.close()
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(lines) == 2, lines
    first, total = lines
    assert (
        "sink connector 'out': dead letter at sink decoder decode_out, an output of 7 bytes "
        in first
    )
    assert "from worker 'w1' (message id 0): UnicodeDecodeError:" in first
    assert f"kept in {sink.dead_letter_path}" in first
    assert (
        total == f"sink connector 'out': 1000 dead letters in all; kept in {sink.dead_letter_path}"
    )
    assert len(dead_letters(sink.dead_letter_path)) == 1000


def test_a_dead_letter_file_that_cannot_be_written_is_an_error_and_keeps_the_output(
    make_sink, workers, tmp_path
):
    (tmp_path / "not-a-dir").write_text("")
    sink = make_sink(dead_letter_path=tmp_path / "not-a-dir" / "out.jsonl")
    sink.listen(port=0)
    worker = connect(workers, sink)
    worker.send(b"ok", b"\xff", b"after")
    wait_received(sink, 3)
    assert sink.read_many(10, timeout=5) == ["ok"]
    for _ in range(2):
        with pytest.raises(wx.ConnectorError, match="cannot write its dead-letter file"):
            sink.read(timeout=5)
    stats = sink.statistics()
    assert (stats.buffered, stats.dead_letters) == (2, 0)


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


def test_a_program_records_what_its_own_checks_reject_with_dead_letter(sink, tmp_path):
    try:
        raise ValueError("no (field, value) pair")
    except ValueError as exc:
        sink.dead_letter(b"raw", exc, worker="w9", message_id=40, stage="my check")
        sink.dead_letter(("a", "b", "c"), exc)
    first, second = dead_letters(sink.dead_letter_path)
    assert (first["worker"], first["message_id"], first["stage"], first["payload"]) == (
        "w9", 40, "my check", "cmF3",
    )  # fmt: skip
    assert first["traceback"].startswith("test_sink_connector.py:")
    assert (second["worker"], second["stage"], second["payload_encoding"]) == (
        "", "sink decoder decode_out", "pickle",
    )  # fmt: skip
    assert sink.statistics().dead_letters == 2
