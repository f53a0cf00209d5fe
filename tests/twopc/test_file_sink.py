"""The durable file sink (wallaroo.connectors.file_sink) as a program, driven like a worker."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from twopc_driver import MODULE, FileSinkRun, SinkProgram, wait_until

from wallaroo.connectors.file_sink import read_committed, read_txnlog
from wallaroo.testing import check_sink_connector

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(app, tmp_path, programs):
    return FileSinkRun(tmp_path, programs)


def test_commit_and_abort_in_the_files(run, driver):
    d = driver(run.port)
    d.send(b"hello ", b"world")
    assert d.checkpoint() is True
    wait_until(lambda: run.committed() == b"hello world")
    d.send(b"!")
    txn_id, vote = d.phase1()
    assert vote is True
    assert run.file() == b"hello world!"  # durable, not committed
    assert run.committed() == b"hello world"
    d.phase2(txn_id, False)
    wait_until(lambda: run.file() == b"hello world")
    d.send(b"?")
    assert d.checkpoint() is True
    wait_until(lambda: run.committed() == b"hello world?")
    assert run.ops() == ["1-ok", "2-ok", "1-ok", "2-rollback", "1-ok", "2-ok"]
    assert run.committed() == d.committed_output()


@pytest.mark.parametrize("worker_completed", [True, False], ids=["commit", "abort"])
def test_reconnect_resolves_the_uncommitted_transaction(run, driver, worker_completed):
    d = driver(run.port)
    d.send(b"base")
    assert d.checkpoint() is True
    d.send(b"-pending")
    txn_id, vote = d.phase1()
    assert vote is True
    if worker_completed:
        d.last_checkpoint = (txn_id, d.session.offset)
        d.drop()
        d.session.phase2(txn_id, True)
    else:
        d.crash()
    assert d.connect() == (txn_id,)
    expected = b"base-pending" if worker_completed else b"base"
    wait_until(lambda: run.file() == expected and run.committed() == expected)
    assert run.committed() == d.committed_output()


@pytest.mark.parametrize("worker_completed", [True, False], ids=["commit", "abort"])
def test_sigkill_between_phase1_and_phase2(run, driver, worker_completed):
    d = driver(run.port)
    d.send(b"0123")
    assert d.checkpoint() is True
    d.send(b"4567", b"89")
    txn_id, vote = d.phase1()
    assert vote is True
    run.program.kill()
    if worker_completed:  # the checkpoint completed; PHASE2 cannot be delivered
        d.last_checkpoint = (txn_id, d.session.offset)
        d.phase2(txn_id, True)
        d.drop()
    else:  # the worker died too, before its checkpoint completed
        d.crash()
    run.restart()
    assert d.connect() == (txn_id,)
    d.send(b"ab")
    assert d.checkpoint() is True
    expected = b"0123456789ab" if worker_completed else b"0123ab"
    wait_until(lambda: run.committed() == expected)
    assert run.committed() == d.committed_output()


def test_sigkill_with_uncommitted_output_truncates_on_restart(run, driver):
    d = driver(run.port)
    d.send(b"kept")
    assert d.checkpoint() is True
    d.send(b"unsent-checkpoint")
    wait_until(lambda: run.file() == b"keptunsent-checkpoint")
    run.program.kill()
    d.crash()
    run.restart()
    assert d.connect() == ()
    assert run.file() == b"kept"
    d.send(b"new")
    assert d.checkpoint() is True
    wait_until(lambda: run.committed() == b"keptnew")


def test_missing_and_duplicate_output_vote_abort(run, driver):
    d = driver(run.port)
    d.send(b"a")
    d.lose(b"b")
    d.send(b"c")
    assert d.checkpoint() is False
    d.send(b"ab")
    d.session.restore(1, 0)
    d.send(b"B")  # offset 1 again: a duplicate
    assert d.checkpoint() is False
    d.send(b"a", b"b", b"c")
    assert d.checkpoint() is True
    wait_until(lambda: run.committed() == b"abc")
    assert run.ops() == ["1-rollback", "2-rollback", "1-rollback", "2-rollback", "1-ok", "2-ok"]
    reasons = [r.get("reason", "") for r in read_txnlog(f"{run.path}.txnlog.w1")[0]]
    assert reasons[0].startswith("missing data")
    assert reasons[2].startswith("duplicate data")


# The original's six fault cases: the rule for the first transaction, the vote the worker
# sees (None: the connection closed first), whether that transaction ends committed, and the
# transaction log it leaves (before the second, committed, transaction).
FAULTS = {
    "abort vote": ({"vote": "abort"}, False, False, ["1-rollback", "2-rollback"]),
    "abort, close before reply": (
        {"vote": "abort", "close": "before_reply"}, None, False, ["1-rollback"]),
    "abort, close after reply": (
        {"vote": "abort", "close": "after_reply"}, False, False, ["1-rollback"]),
    "commit vote": ({"vote": "commit"}, True, True, ["1-ok", "2-ok"]),
    "commit, close before reply": (
        {"vote": "commit", "close": "before_reply"}, None, False, ["1-ok", "2-rollback"]),
    "commit, close after reply": (
        {"vote": "commit", "close": "after_reply"}, True, True, ["1-ok", "2-ok"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FAULTS))
def test_abort_rule_fault_cases(app, tmp_path, programs, driver, case):
    rule, seen, committed, ops = FAULTS[case]
    run = FileSinkRun(tmp_path, programs, rules=[{"local_txn": 1, **rule}])
    d = driver(run.port)
    d.send(b"first ", b"round")
    txn_id = d.session.txn_id(1)
    assert d.checkpoint() is seen
    if "close" in rule:
        assert d.wait_closed()
        # A commit vote recorded before the close is reported; the worker commits it only if
        # it had the vote (its checkpoint completed), else aborts it.
        recorded = rule["vote"] == "commit"
        assert d.connect() == ((txn_id,) if recorded else ())
    if not committed:
        d.send(b"first ", b"round")  # the worker rolled back and sends it again
    d.send(b" second")
    assert d.checkpoint() is True
    wait_until(lambda: run.committed() == b"first round second")
    assert run.committed() == d.committed_output()
    assert run.ops() == [*ops, "1-ok", "2-ok"]


def test_a_txn_id_rule(app, tmp_path, programs, driver):
    run = FileSinkRun(tmp_path, programs, rules=[{"txn_id": "c_id=2$", "vote": "abort"}])
    d = driver(run.port)
    for expected_vote in (True, False, True):
        d.send(b"x")
        assert d.checkpoint() is expected_vote
    wait_until(lambda: run.committed() == b"xx")
    assert "abort rule of line 2 applies to twopc-w-w1-id-0:c_id=2" in run.program.output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_it_cleanly(run, driver, sig):
    first = run.program.lines[0]
    assert f"listening for the worker on 127.0.0.1:{run.port}" in first
    assert f"writing to {run.path}.<worker>, transaction log {run.path}.txnlog.<worker>" in first
    d = driver(run.port)
    d.send(b"x")
    assert d.checkpoint() is True
    wait_until(lambda: run.committed() == b"x")  # PHASE2 has no reply: wait until it is applied
    assert run.program.stop(sig) == 0
    assert run.committed() == b"x"


def test_instance_and_txnlog_parameters(app, tmp_path, programs, driver):
    logs = tmp_path / "logs"
    logs.mkdir()
    extra = ("--out-instance", "east", "--out-txnlog", str(logs / "tx"))
    run = FileSinkRun(tmp_path, programs, extra=extra)
    assert run.program.lines[0].split(": ", 1)[1].startswith("file_sink 'east' for connector 'out'")
    d = driver(run.port)
    d.send(b"elsewhere")
    assert d.checkpoint() is True
    wait_until(lambda: read_committed(f"{run.path}.w1", f"{logs}/tx.w1") == b"elsewhere")
    assert not Path(f"{run.path}.txnlog.w1").exists()


def test_bad_abort_rules_exit_2(app, tmp_path):
    rules = tmp_path / "rules"
    rules.write_text('{"local_txn": 1, "vote": "commit"}\n{"local_txn": 0, "vote": "abort"}\n')
    program = SinkProgram(tmp_path, [*MODULE, "--application-module", "twopc_app", "--connector",
                          "out", "--out-path", str(tmp_path / "o"), "--out-abort_rules",
                          str(rules)], {})  # fmt: skip
    program.start_process()
    assert program.proc is not None
    assert program.proc.wait(20) == 2
    program.wait_for(f"{rules}, line 2: 'local_txn' must be a whole number from 1")


@pytest.mark.parametrize(
    "command",
    [[str(REPO / "connectors" / "file_sink")], [str(Path(sys.executable).parent / "wallaroo"),
                                                "connector", "file_sink"]],
    ids=["executable", "wallaroo-connector"],
)  # fmt: skip
def test_runs_as_the_executable_and_through_wallaroo_connector(app, tmp_path, programs, driver,
                                                               command):  # fmt: skip
    run = FileSinkRun(tmp_path, programs, command=command)
    d = driver(run.port, worker="initializer")
    d.send(b"ok")
    assert d.checkpoint() is True
    wait_until(lambda: run.committed("initializer") == b"ok")
    assert run.program.stop() == 0


def test_conforms(tmp_path):
    path = tmp_path / "conf"

    def delivered(payloads):
        try:
            return Path(f"{path}.conformance-worker").read_bytes() == b"".join(payloads)
        except FileNotFoundError:
            return False

    report = check_sink_connector(MODULE, delivered, params={"path": str(path)})
    assert report.exit_code == 0
    assert report.connections == 2
    assert read_committed(f"{path}.conformance-worker", f"{path}.txnlog.conformance-worker")
