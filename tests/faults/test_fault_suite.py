"""The fault suite: the correctness app fed by file sources, with the durable file sink; the
worker dies six times (twice at crash points of a checkpoint), the source and the sink
connectors are SIGKILLed twice each; the committed output must be exactly the input, per key.

Then the ``file_source`` connector's own guarantees, with the same pipeline: an end of file the
worker lost is sent again, a restart resumes where the worker says, a file changed under the
worker stops it, ``u32`` framing, the rate limit, ``follow``, and its usage errors.

Replay a run of the suite with ``WALLAROO_FAULT_SEED=<seed>`` (the seed is printed, and
reported on failure).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time

import pytest
from fault_driver import APP_DIR, BIN, REPO, Pipeline, choose_seed, run_fault_schedule, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEYS = int(os.environ.get("WALLAROO_FAULT_KEYS", "100"))
PER_KEY = int(os.environ.get("WALLAROO_FAULT_PER_KEY", "1000"))


def test_repeated_sigkills_leave_the_committed_output_exact(tmp_path):
    seed = choose_seed()
    print(f"fault suite seed {seed} (replay with WALLAROO_FAULT_SEED={seed})")
    rng = random.Random(seed)
    # 100,000 messages over 100 keys in 3 files, at most 4,000 a second: the faults all fire
    # while the source still has data to send.
    run = Pipeline(tmp_path, keys=KEYS, per_key=PER_KEY, files=3, seed=seed, rate=4000)
    with run.reporting(seed):
        run_fault_schedule(run, rng)
        run.finish()
        run.check_output()
        kinds = [fault.kind for fault in run.faults]
        assert kinds.count("worker SIGKILL") + sum("crash" in k for k in kinds) >= 5
        assert {"worker crash during-write", "worker crash after-phase1"} <= set(kinds)
        assert {"source SIGKILL", "sink SIGKILL"} <= set(kinds)
        # The worker died between PHASE1 and PHASE2 twice at least: each time the sink had
        # voted commit, and the restarted worker aborted that transaction.
        ops: dict[str, list[str]] = {}
        for record in run.txnlog():
            ops.setdefault(record["txn"], []).append(record["op"])
        assert sum(o[:2] == ["1-ok", "2-rollback"] for o in ops.values()) >= 2
        # The restarted source resumed where the worker said, not from the start.
        restarted = run.source.log().split("==== start 2", 1)[1]
        assert "resuming at offset" in restarted and "from the beginning" not in restarted
        print(run.report(seed))


# -- the file source connector ----------------------------------------------------------------


def test_an_end_of_file_the_worker_lost_is_sent_again_with_the_records(tmp_path):
    # No checkpoint in the first worker's life: it has every record and every end of file,
    # and acknowledged nothing, when it dies. The source must send it all again.
    run = Pipeline(tmp_path, keys=10, per_key=100, files=2, checkpoint_ms=600_000)
    with run.reporting():
        run.start()
        for path in run.input_paths:
            run.source.wait_for_log(f"{path}: end of file at offset", 60)
        assert run.committed_size() == 0
        run.worker.kill()
        assert run.source.running
        run.set_checkpoint_interval(200)
        run.worker.start()
        run.finish()
        run.check_output()
        log = run.source.log()
        for path in run.input_paths:
            assert log.count(f"{path}: end of file at offset") == 2
            assert log.count(f"{path}: starting from the beginning") == 2


def test_a_restarted_source_resumes_where_the_worker_says(tmp_path):
    run = Pipeline(tmp_path, keys=10, per_key=300, files=2, rate=1000)
    with run.reporting():
        run.start()
        third = run.expected_bytes // 3
        wait_until(lambda: run.committed_size() >= third, 60, "a third of the output committed")
        assert run.source.stop() == 0  # SIGTERM: a clean stop, the streams are not ended
        assert "stopping (SIGTERM)" in run.source.current_log()
        run.source.start()
        run.finish()
        run.check_output()
        restarted = run.source.current_log()
        offsets = [int(o) for o in re.findall(r"resuming at offset (\d+)", restarted)]
        assert len(offsets) >= 2 and all(offset > 0 for offset in offsets[:2]), restarted
        assert "end of file" not in run.source.log().split("==== start 2", 1)[0]


def test_u32_framing_and_the_rate_limit(tmp_path):
    run = Pipeline(tmp_path, keys=5, per_key=200, files=2, framing="u32", rate=500)
    with run.reporting():
        started = time.monotonic()
        run.start()
        run.finish()
        # 1,000 records at 500 a second, in bursts of at most 50: 1.9 s at least.
        assert time.monotonic() - started >= 1.9
        run.check_output()
        assert "u32, at most 500 records/s" in run.source.log()


def test_follow_sends_what_is_appended_and_waits_for_whole_lines(tmp_path):
    run = Pipeline(tmp_path, keys=4, per_key=100, files=1, follow=True)
    path = run.input_paths[0]
    data = path.read_bytes()
    half = data.index(b"\n", len(data) // 2) + 1
    path.write_bytes(data[:half])
    with run.reporting():
        run.start()
        wait_until(lambda: run.committed_size() == half, 60, "the first half committed")
        with path.open("ab") as f:  # a line without its end, left so for two checkpoints
            f.write(data[half : half + 4])
        checkpoints = len(run.txnlog())
        wait_until(lambda: len(run.txnlog()) >= checkpoints + 4, 60, "two more checkpoints")
        assert run.committed_size() == half
        with path.open("ab") as f:
            f.write(data[half + 4 :])
        wait_until(lambda: run.committed_size() == len(data), 60, "everything committed")
        assert run.source.running  # following: it does not end
        assert run.source.stop() == 0
        assert run.worker.stop() == 0
        assert run.sink.stop() == 0
        run.check_output()
        assert "end of file" not in run.source.log()


@pytest.mark.parametrize(
    ("change", "message"),
    [("truncated", "beyond its end"), ("shifted", "which is not the start of a line")],
)
def test_a_file_changed_under_the_worker_stops_the_source(tmp_path, change, message):
    run = Pipeline(tmp_path, keys=4, per_key=50, files=1)
    path = run.input_paths[0]
    with run.reporting():
        run.start()
        assert run.source.wait(60) == 0  # the worker has the file up to its end
        data = path.read_bytes()
        path.write_bytes(data[:100] if change == "truncated" else b"x" + data)
        run.source.start()
        assert run.source.wait(60) == 1
        log = run.source.current_log()
        assert f"{path}: the worker resumes it at offset {len(data)}, " in log
        assert message in log
        assert run.worker.stop() == 0
        assert run.sink.stop() == 0


USAGE_ERRORS = {
    "no files": ([], "the following arguments are required: --sequences-files"),
    "a missing file": (["--sequences-files", "{dir}/missing"], "missing is not a file"),
    "a bad framing": (["--sequences-framing", "csv"], "--sequences-framing must be 'lines' or"),
    "a bad rate": (["--sequences-rate", "0"], "--sequences-rate must be a positive number"),
    "a bad follow": (["--sequences-follow", "maybe"], "--sequences-follow must be 'true' or"),
    "a bad poll_interval": (
        ["--sequences-follow", "true", "--sequences-poll_interval", "-1"],
        "--sequences-poll_interval must be a positive number of seconds",
    ),
    "an unknown connector": (
        ["--connector", "nope", "--nope-files", "{dir}/input"],
        "has no source connector named 'nope'",
    ),
}
WAYS = {
    "module": [sys.executable, "-m", "wallaroo.connectors.file_source"],
    "executable": [str(REPO / "connectors" / "file_source")],
    "wallaroo connector": [str(BIN / "wallaroo"), "connector", "file_source"],
}


# Every error through the module; one through the other ways, to show they are wired.
@pytest.mark.parametrize(
    ("case", "way"),
    [*((case, "module") for case in USAGE_ERRORS),
     ("a bad framing", "executable"), ("a bad framing", "wallaroo connector")],
)  # fmt: skip
def test_usage_errors_exit_2(tmp_path, case, way):
    extra, message = USAGE_ERRORS[case]
    (tmp_path / "input").write_bytes(b"k000:0\n")
    args = ["--application-module", "sequence_check", "--connector", "sequences"]
    if case not in ("no files", "a missing file", "an unknown connector"):
        args += ["--sequences-files", str(tmp_path / "input")]
    args += [a.replace("{dir}", str(tmp_path)) for a in extra]
    env = {**os.environ, "PYTHONPATH": str(APP_DIR), "SEQUENCE_SOURCE_PORT": "1"}
    done = subprocess.run([*WAYS[way], *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
