"""SinkConnector(transactional=True): read() returns only values of committed transactions."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from twopc_driver import SinkDriver

import wallaroo.experimental as wx
from wallaroo.protocol.events import VoteReceived
from wallaroo.protocol.twopc import TwoPCPhase1, wrap_twopc

pytestmark = pytest.mark.timeout(30)


def read_n(sink: wx.SinkConnector, count: int, timeout: float = 5.0) -> list[object]:
    got: list[object] = []
    while len(got) < count:
        got.extend(sink.read_many(count - len(got), timeout=timeout))
    return got


def nothing_readable(sink: wx.SinkConnector) -> bool:
    try:
        sink.read(timeout=0.2)
    except TimeoutError:
        return True
    return False


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_values_are_readable_only_after_phase2_commit(connector, driver):
    sink = connector(transactional=True)
    d = driver(sink.port)
    d.send(b"a", b"bb", b"ccc")
    assert nothing_readable(sink)
    txn_id, vote = d.phase1()
    assert vote is True
    assert txn_id == "twopc-w-w1-id-0:c_id=1"
    assert nothing_readable(sink)
    assert sink.statistics().uncommitted == 3
    d.phase2(txn_id, True)
    assert read_n(sink, 3) == [b"a", b"bb", b"ccc"]
    stats = sink.statistics()
    assert (stats.transactional, stats.commits, stats.aborts, stats.uncommitted) == (
        True, 1, 0, 0,
    )  # fmt: skip


def test_phase2_abort_discards_the_transaction_and_the_replay_commits(connector, driver):
    sink = connector(transactional=True)
    d = driver(sink.port)
    d.send(b"x", b"y")
    txn_id, vote = d.phase1()
    assert vote is True
    d.phase2(txn_id, False)  # another part of the checkpoint failed
    assert d.session.offset == 0
    assert nothing_readable(sink)
    d.send(b"x2", b"y2")
    assert d.checkpoint() is True
    assert read_n(sink, 2) == [b"x2", b"y2"]
    assert nothing_readable(sink)
    assert (sink.statistics().commits, sink.statistics().aborts) == (1, 1)


def test_transactions_are_read_in_order(connector, driver):
    sink = connector(transactional=True)
    d = driver(sink.port)
    expected = []
    for round_ in range(5):
        batch = [f"{round_}-{i}".encode() for i in range(20)]
        d.send(*batch)
        expected += batch
        assert d.checkpoint() is True
    assert read_n(sink, 100) == expected


def test_an_empty_transaction_commits(connector, driver):
    sink = connector(transactional=True)
    d = driver(sink.port)
    assert d.checkpoint() is True
    d.send(b"after")
    assert d.checkpoint() is True
    assert read_n(sink, 1) == [b"after"]


def test_a_reported_transaction_is_committed_by_the_worker(connector, driver):
    sink = connector(transactional=True)
    d = driver(sink.port)
    assert d.reported == ()
    d.send(b"one", b"two")
    txn_id, vote = d.phase1()
    assert vote is True
    d.last_checkpoint = (txn_id, d.session.offset)  # the worker completed its checkpoint...
    d.drop()  # ...but lost the connection before PHASE2
    d.session.phase2(txn_id, True)
    assert d.connect(resolve=False) == (txn_id,)
    assert nothing_readable(sink)
    d.resolve(d.reported)
    assert read_n(sink, 2) == [b"one", b"two"]
    d.drop()
    assert d.connect() == ()


def test_a_reported_transaction_is_aborted_by_a_worker_that_restarted_before_it(connector, driver):
    sink = connector(transactional=True)
    d = driver(sink.port)
    d.send(b"first")
    assert d.checkpoint() is True
    d.send(b"lost")
    txn_id, vote = d.phase1()
    assert vote is True
    d.crash()  # died before its checkpoint completed: restarts from checkpoint 1
    assert d.connect() == (txn_id,)  # resolved: abort
    d.send(b"replayed")
    assert d.checkpoint() is True
    assert read_n(sink, 2) == [b"first", b"replayed"]
    assert nothing_readable(sink)
    assert (sink.statistics().commits, sink.statistics().aborts) == (2, 1)


def test_missing_output_votes_abort(connector, driver):
    sink = connector(transactional=True)
    d = driver(sink.port)
    d.send(b"a")
    d.lose(b"b")
    d.send(b"c")
    assert d.checkpoint() is False
    assert d.session.offset == 0
    d.send(b"a", b"b", b"c")
    assert d.checkpoint() is True
    assert read_n(sink, 3) == [b"a", b"b", b"c"]


def test_output_sent_before_a_reconnection_is_discarded(connector, driver):
    sink = connector(transactional=True)
    d = driver(sink.port)
    d.send(b"before")
    d.drop()
    d.connect()
    d.send(b"after")  # continues after "before", which the sink discarded: missing data
    assert d.checkpoint() is False
    d.send(b"before", b"after")
    assert d.checkpoint() is True
    assert read_n(sink, 2) == [b"before", b"after"]


def test_duplicate_output_votes_abort(connector, driver):
    sink = connector(transactional=True)
    d = driver(sink.port)
    d.send(b"ab", b"cd")
    d.session.restore(2, 0)  # the worker loses track and sends offset 2 again
    d.send(b"XY")
    assert d.checkpoint() is False
    d.send(b"ab", b"cd")
    assert d.checkpoint() is True
    assert read_n(sink, 2) == [b"ab", b"cd"]


def test_output_sent_again_from_the_last_commit_replaces_the_uncommitted_output(connector, driver):
    sink = connector(transactional=True)
    d = driver(sink.port)
    d.send(b"kept")
    assert d.checkpoint() is True
    d.send(b"old-1", b"old-2")
    d.session.restore(d.session.committed_offset)  # rolled back without telling the sink
    d.send(b"new")
    assert d.checkpoint() is True
    assert read_n(sink, 2) == [b"kept", b"new"]
    assert nothing_readable(sink)


def test_a_phase1_that_does_not_match_the_output_votes_abort(connector, driver):
    sink = connector(transactional=True)
    d = driver(sink.port)
    d.send(b"12345")
    d.send_raw(wrap_twopc(TwoPCPhase1("bad-range", ((1, 0, 3),))))
    d.send_raw(wrap_twopc(TwoPCPhase1("bad-stream", ((7, 0, 5),))))
    first = d.expect(VoteReceived, 5)
    second = d.expect(VoteReceived, 5)
    assert (first.txn_id, first.commit) == ("bad-range", False)
    assert (second.txn_id, second.commit) == ("bad-stream", False)


def test_a_second_phase1_before_phase2_votes_abort(connector, driver):
    sink = connector(transactional=True)
    d = driver(sink.port)
    d.send(b"x")
    txn_id, vote = d.phase1()
    assert vote is True
    d.send_raw(wrap_twopc(TwoPCPhase1("next", ((1, 1, 1),))))
    event = d.expect(VoteReceived, 5)
    assert (event.txn_id, event.commit) == ("next", False)
    assert sink.statistics().uncommitted == 1
    d.phase2(txn_id, True)
    assert read_n(sink, 1) == [b"x"]


def test_a_transaction_larger_than_the_buffer_commits(connector, driver):
    sink = connector(transactional=True, buffer_size=4)
    d = driver(sink.port)
    values = [f"v{i}".encode() for i in range(200)]
    d.send(*values)
    assert d.checkpoint() is True
    assert read_n(sink, 200) == values


def test_a_slow_reader_pauses_the_connection_until_it_reads(connector, driver):
    sink = connector(transactional=True, buffer_size=4)
    d = driver(sink.port)
    first = [f"a{i}".encode() for i in range(4)]
    d.send(*first)
    assert d.checkpoint() is True
    wait_until(lambda: sink.statistics().buffered == 4)
    second = [f"b{i}".encode() for i in range(10)]
    d.send(*second)
    wait_until(lambda: sink.statistics().paused_connections == 1)
    assert read_n(sink, 4) == first
    wait_until(lambda: sink.statistics().paused_connections == 0)
    assert d.checkpoint() is True
    assert read_n(sink, 10) == second


def test_workers_are_independent_and_keep_their_order(connector, driver):
    sink = connector(transactional=True)
    one, two = driver(sink.port, worker="w1"), driver(sink.port, worker="w2")
    one.send(b"1a", b"1b")
    two.send(b"2a")
    assert two.checkpoint() is True
    assert read_n(sink, 1) == [b"2a"]
    two.send(b"2b")
    assert one.checkpoint() is True
    assert two.checkpoint() is True
    assert sorted(read_n(sink, 3)) == [b"1a", b"1b", b"2b"]
    assert set(sink.statistics().workers) == {"w1", "w2"}


def test_a_restarted_connector_takes_the_workers_offset(connector, driver):
    first = connector(transactional=True)
    port = first.port
    d = driver(port)
    d.send(b"committed")
    assert d.checkpoint() is True
    assert read_n(first, 1) == [b"committed"]
    d.send(b"in-flight")
    first.close()  # the connector process dies with "in-flight" uncommitted
    d.drop()
    second = connector(port, transactional=True)
    assert d.connect() == ()
    d.send(b"more")  # starts past "in-flight", which the new process never saw
    assert d.checkpoint() is False  # missing data: the worker rolls back and sends it again
    d.send(b"in-flight", b"more")
    assert d.checkpoint() is True
    assert read_n(second, 2) == [b"in-flight", b"more"]


def dead_letters(path: Path) -> list[tuple[bytes, str, int]]:
    """(payload, worker, message id) of each dead letter in the file."""
    if not path.exists():
        return []
    letters = [json.loads(line) for line in path.read_text().splitlines()]
    return [(base64.b64decode(d["payload"]), d["worker"], d["message_id"]) for d in letters]


def test_a_rejected_output_of_a_committed_transaction_is_a_dead_letter_once(
    connector, driver, tmp_path
):
    path = tmp_path / "out.jsonl"
    sink = connector(transactional=True, dead_letter_path=path)
    d = driver(sink.port)
    d.send(b"a", b"\xffbad", b"b")
    txn_id, vote = d.phase1()
    assert vote is True
    d.phase2(txn_id, False)  # rolled back: nothing was read, so nothing is a dead letter yet
    assert nothing_readable(sink)
    assert dead_letters(path) == []
    d.send(b"a", b"\xffbad", b"b")  # the replay, committed
    assert d.checkpoint() is True
    d.send(b"c")
    assert d.checkpoint() is True
    assert read_n(sink, 3) == [b"a", b"b", b"c"]
    assert nothing_readable(sink)
    assert dead_letters(path) == [(b"\xffbad", "w1", 1)]
    assert sink.statistics().dead_letters == 1


def test_default_mode_still_returns_values_at_once(connector, driver):
    sink = connector()
    d = driver(sink.port)
    d.send(b"now")
    assert read_n(sink, 1) == [b"now"]
    assert sink.statistics().transactional is False


class Exploding(wx.TransactionalSink):
    """Fails its first recover(), then works (values dropped)."""

    recovers = 0

    def recover(self) -> wx.SinkRecovery:
        type(self).recovers += 1
        if type(self).recovers == 1:
            raise OSError("disk on fire")
        return wx.SinkRecovery(0)

    def append(self, offset, payloads):
        pass

    def prepare(self, txn, problem):
        return problem is None

    def commit(self, txn):
        pass

    def abort(self, txn):
        pass


def test_a_failing_hook_closes_the_connection_with_error(connector):
    sink = connector(sink_factory=lambda worker: Exploding())
    d = SinkDriver(sink.port)
    with pytest.raises(ConnectionError):
        d.connect(timeout=5)
    assert any("disk on fire" in e for e in d.errors)
    assert d.connect() == ()  # recover() runs again on the next connection
    d.send(b"x")
    assert d.checkpoint() is True
    with pytest.raises(wx.ConnectorError, match="sink_factory"):
        sink.read(timeout=0.1)
    d.close()
