"""The file sink's files in-process: torn and corrupt logs, mismatched files, abort rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from twopc_driver import SinkDriver, wait_until

import wallaroo.experimental as wx
from wallaroo.connectors.file_sink import (
    FileSink,
    load_abort_rules,
    read_committed,
    read_txnlog,
    worker_paths,
)

pytestmark = pytest.mark.timeout(30)


def record(op: str, txn: str, start: int, end: int) -> str:
    return json.dumps({"op": op, "txn": txn, "start": start, "end": end, "time": 0}) + "\n"


def files(tmp_path: Path) -> tuple[str, str]:
    return worker_paths(str(tmp_path / "out"), "w1")


def test_worker_paths():
    assert worker_paths("/d/out", "w1") == ("/d/out.w1", "/d/out.txnlog.w1")
    assert worker_paths("/d/out", "w1", "/l/log") == ("/d/out.w1", "/l/log.w1")
    for bad in ("../x", "a/b", "", ".hidden", "x y"):
        with pytest.raises(ValueError, match="cannot be part of a file name"):
            worker_paths("/d/out", bad)


def test_a_torn_last_log_line_is_ignored_and_cut_off(tmp_path):
    output, txnlog = files(tmp_path)
    Path(output).write_bytes(b"committedprepared+open")
    text = record("1-ok", "t1", 0, 9) + record("2-ok", "t1", 0, 9) + record("1-ok", "t2", 9, 17)
    Path(txnlog).write_text(text + '{"op": "2-o')
    assert read_committed(output, txnlog) == b"committed"
    assert read_txnlog(txnlog)[1] == len(text)
    sink = FileSink("w1", output, txnlog, [])
    assert sink.recover() == wx.SinkRecovery(9, wx.Transaction("t2", 9, 17))
    assert Path(txnlog).read_text() == text
    assert Path(output).read_bytes() == b"committedprepared"
    sink.commit(wx.Transaction("t2", 9, 17))
    sink.close()
    assert read_committed(output, txnlog) == b"committedprepared"


def test_a_corrupt_log_or_a_short_output_file_is_refused(tmp_path):
    output, txnlog = files(tmp_path)
    Path(output).write_bytes(b"abc")
    Path(txnlog).write_text(record("1-ok", "t1", 0, 3) + "garbage\n" + record("2-ok", "t1", 0, 3))
    sink = FileSink("w1", output, txnlog, [])
    with pytest.raises(ValueError, match="corrupt at line 2"):
        sink.recover()
    Path(txnlog).write_text(record("1-ok", "t1", 0, 3) + '{"op": "2-ok", "txn": "t1"}\n')
    with pytest.raises(ValueError, match="corrupt at line 2"):
        sink.recover()
    Path(txnlog).write_text(record("1-ok", "t1", 0, 5) + record("2-ok", "t1", 0, 5))
    with pytest.raises(ValueError, match="holds 3 bytes but its transaction log says 5"):
        sink.recover()
    with pytest.raises(ValueError, match="holds 3 bytes, but 5 were committed"):
        read_committed(output, txnlog)
    sink.close()


def test_a_sink_that_cannot_recover_refuses_the_worker_with_error(tmp_path, connector):
    output, txnlog = files(tmp_path)
    Path(output).write_bytes(b"")
    Path(txnlog).write_text(record("1-ok", "t1", 0, 5) + record("2-ok", "t1", 0, 5))
    sink = connector(sink_factory=lambda worker: FileSink(worker, output, txnlog, []))
    d = SinkDriver(sink.port)
    with pytest.raises(ConnectionError):
        d.connect(timeout=5)
    assert any("do not belong together" in e for e in d.errors)
    d.close()


def test_the_file_sink_works_in_process(tmp_path, connector, driver):
    def make(worker: str) -> FileSink:
        return FileSink(worker, *worker_paths(str(tmp_path / "out"), worker), [])

    sink = connector(sink_factory=make)
    d = driver(sink.port, worker="w7")
    d.send(b"in-process")
    assert d.checkpoint() is True
    d.drop()
    d.connect()  # if the new connection came first, the PHASE2 was lost: reported, resolved
    output, txnlog = worker_paths(str(tmp_path / "out"), "w7")
    wait_until(lambda: read_committed(output, txnlog) == b"in-process")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[1, 2]", "a rule is a JSON object"),
        ('{"local_txn": 1, "vote": "abort", "when": 3}', "unknown keys"),
        ('{"vote": "abort"}', "exactly one of"),
        ('{"local_txn": 1, "txn_id": "x", "vote": "abort"}', "exactly one of"),
        ('{"local_txn": 1, "vote": "maybe"}', "vote must be"),
        ('{"local_txn": 1, "vote": "abort", "close": "now"}', "close must be"),
        ('{"local_txn": true, "vote": "abort"}', "whole number"),
        ('{"txn_id": "(", "vote": "abort"}', "missing \\)"),
        ("{not json", "line 1"),
    ],
)
def test_bad_abort_rules_name_the_line(tmp_path, line, message):
    path = tmp_path / "rules"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        load_abort_rules(str(path))


def test_abort_rules_match_by_txn_id_local_number_and_worker(tmp_path):
    path = tmp_path / "rules"
    path.write_text(
        "# comment\n\n"
        '{"txn_id": "c_id=3$", "vote": "abort"}\n'
        '{"local_txn": 2, "worker": "w2", "vote": "commit", "close": "after_reply"}\n'
    )
    by_id, by_number = load_abort_rules(str(path))
    assert (by_id.line, by_id.vote, by_id.close) == (3, False, None)
    assert by_id.matches("any", "app-w-any-id-0:c_id=3", 9)
    assert not by_id.matches("any", "app-w-any-id-0:c_id=33", 9)
    assert by_number.matches("w2", "whatever", 2)
    assert not by_number.matches("w1", "whatever", 2)
    assert not by_number.matches("w2", "whatever", 3)
