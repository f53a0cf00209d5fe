"""Crash recovery with real processes: SIGKILL the worker mid-stream, restart it with the same
command; the connector replays and the keyed state ends exact (exactly-once state)."""

import signal
import subprocess
import time

import pytest
from endpoint import Endpoint
from recovery_helpers import (
    assert_recovered,
    counting_worker,
    final_counts,
    kill_all,
    settle_and_stop,
    start_feeder,
)


@pytest.mark.slow
def test_worker_sigkill_and_restart_keeps_state_exact(tmp_path):
    sink = Endpoint()
    worker_cmd, env = counting_worker("counting_app", sink, tmp_path / "res", 100_000_000)
    procs = []
    files = []

    def log_file(name):
        files.append((tmp_path / name).open("w"))
        return files[-1]

    worker_logs = []

    def start_worker():
        worker_logs.append(tmp_path / f"w{len(procs)}.log")
        p = subprocess.Popen(worker_cmd, env=env, stderr=log_file(worker_logs[-1].name))
        procs.append(p)
        return p

    total, keys = 6000, 30
    try:
        worker = start_worker()
        feeder = start_feeder(total, keys, "0.02", env, log_file("feeder.log"))
        procs.append(feeder)
        for _ in range(3):
            deadline = time.monotonic() + 20
            before = len(sink.lines())
            while len(sink.lines()) < before + 800 and time.monotonic() < deadline:
                time.sleep(0.05)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = start_worker()
        assert feeder.wait(120) == 0, (tmp_path / "feeder.log").read_text()
        expected = {f"k{i}": total // keys for i in range(keys)}
        settle_and_stop(worker, sink, expected, 30, worker_logs[-1])
    finally:
        kill_all(procs, files)
        sink.close()
    assert_recovered(tmp_path, sink, expected, 3)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["before-phase1", "after-phase1", "during-write", "after-write"])
def test_a_crash_at_each_point_of_a_checkpoint_recovers_exactly(tmp_path, point):
    sink = Endpoint()
    cmd, env = counting_worker("counting_app", sink, tmp_path / "res", 50_000_000)
    total, keys = 4000, 20
    logs = [(tmp_path / f"{i}.log").open("w") for i in range(3)]
    crashing = subprocess.Popen(
        cmd, env={**env, "WALLAROO_CRASH_POINT": f"{point}:4"}, stderr=logs[0]
    )
    feeder = start_feeder(total, keys, "0.01", env, logs[1])
    worker = None
    try:
        assert crashing.wait(60) == -signal.SIGKILL
        worker = subprocess.Popen(cmd, env=env, stderr=logs[2])
        assert feeder.wait(120) == 0
        expected = {f"k{i}": total // keys for i in range(keys)}
        settle_and_stop(worker, sink, expected, 60, tmp_path / "2.log")
    finally:
        kill_all((crashing, feeder, worker), logs)
        sink.close()
    logs_text = "\n".join(
        f"--- {p.name}\n" + p.read_text()[-2000:] for p in sorted(tmp_path.glob("*.log"))
    )
    assert final_counts(sink.lines()) == expected, logs_text
    text = (tmp_path / "0.log").read_text()
    assert f"killing this worker at {point} of checkpoint attempt 4" in text
    assert "recovering from checkpoint" in (tmp_path / "2.log").read_text()
