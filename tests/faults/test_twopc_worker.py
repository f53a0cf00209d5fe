"""The original's six two-phase-commit fault cases, end to end with the real worker.

``machida --run-with-resilience`` runs the correctness app (every key's values exactly once and
in order), fed by the ``file_source`` connector, with the durable ``file_sink`` as its sink. An
abort rule of the sink matches one transaction id (checkpoint :data:`FAULTED`, taken while
data flows) and votes, and perhaps closes the connection, as the case says. The run goes on to
the end; then the committed output must be exactly the input, per key, and the sink's
transaction log must show the expected outcome of the faulted transaction. Where that outcome
is an abort, the worker must have rolled back and replayed.
"""

from __future__ import annotations

import re

import pytest
from fault_driver import Pipeline

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

FAULTED = 6
"""The checkpoint whose transaction is faulted (1.2 s into the run, with data flowing)."""
TXN = f":c_id={FAULTED}"

# case: (the rule's vote and close, the faulted transaction's ops in the log, whether the
# worker rolls back, whether the sink reports the transaction to the worker on reconnection)
CASES = {
    "abort vote": ({"vote": "abort"}, [["1-rollback", "2-rollback"]], True, False),
    "abort, close before reply": (
        {"vote": "abort", "close": "before_reply"}, [["1-rollback"]], True, False),
    # The worker sends PHASE2 abort on a connection the sink is closing: whether the sink logs
    # it depends on timing; the transaction is aborted either way.
    "abort, close after reply": (
        {"vote": "abort", "close": "after_reply"},
        [["1-rollback"], ["1-rollback", "2-rollback"]], True, False),
    "commit vote": ({"vote": "commit"}, [["1-ok", "2-ok"]], False, False),
    "commit, close before reply": (
        {"vote": "commit", "close": "before_reply"}, [["1-ok", "2-rollback"]], True, True),
    "commit, close after reply": (
        {"vote": "commit", "close": "after_reply"}, [["1-ok", "2-ok"]], False, True),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_faulted_transaction_ends_as_the_original_says(tmp_path, case):
    rule, outcomes, rolls_back, reported = CASES[case]
    rules = [{"txn_id": f"c_id={FAULTED}$", **rule}]
    run = Pipeline(tmp_path, keys=20, per_key=300, files=2, rate=2000, abort_rules=rules)
    with run.reporting():
        run.start()
        run.finish()
        run.check_output()
        assert run.outcomes(TXN) in outcomes
        first = next(r for r in run.txnlog() if r["txn"].endswith(TXN))
        assert first["start"] < first["end"], "the faulted transaction held no output"
        assert (
            f"abort rule of line 1 applies to Sequence Check-w-worker-id-0{TXN}" in run.sink.log()
        )
        worker_log = run.worker.log()
        rollback = re.search(
            rf"checkpoint {FAULTED} aborted \(.*\); rolling back to checkpoint \d+ and replaying",
            worker_log,
        )
        assert (rollback is not None) == rolls_back, worker_log[-3000:]
        if rolls_back:  # the source was told to replay: it resumed after its first start
            assert run.source.log().count("resuming at offset") >= len(run.input_paths)
        if case == "commit vote":
            assert "aborted" not in worker_log
        # A transaction that voted commit is reported on the next connection; the worker
        # settles it by its checkpoint's outcome (at once, or once the checkpoint is decided).
        assert (f"holds uncommitted transaction {run.txn_id(FAULTED)}" in worker_log
                or f"holds transaction {run.txn_id(FAULTED)} of the checkpoint in progress"
                in worker_log) == reported  # fmt: skip
