"""Crash recovery with real processes: SIGKILL the worker mid-stream, restart it with the same
command; the connector replays and the keyed state ends exact (exactly-once state)."""

import signal
import subprocess
import sys
import time

import pytest
from endpoint import Endpoint
from recovery_helpers import HERE, counting_worker, final_counts, settle_and_stop


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
        feeder = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "feeder.py"),
                str(total),
                str(keys),
                "0.02",
                "--application-module",
                "counting_app",
                "--connector",
                "keys",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file("feeder.log"),
        )
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
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in files:
            f.close()
        sink.close()
    logs = "".join(p.read_text() for p in sorted(tmp_path.glob("w*.log")))
    assert final_counts(sink.lines()) == expected, logs[-3000:]
    assert logs.count("recovering from checkpoint") >= 3


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
    feeder = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "feeder.py"),
            str(total),
            str(keys),
            "0.01",
            "--application-module",
            "counting_app",
            "--connector",
            "keys",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=logs[1],
    )
    worker = None
    try:
        assert crashing.wait(60) == -signal.SIGKILL
        worker = subprocess.Popen(cmd, env=env, stderr=logs[2])
        assert feeder.wait(120) == 0
        expected = {f"k{i}": total // keys for i in range(keys)}
        settle_and_stop(worker, sink, expected, 60, tmp_path / "2.log")
    finally:
        for p in (crashing, feeder, worker):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
        sink.close()
    logs_text = "\n".join(
        f"--- {p.name}\n" + p.read_text()[-2000:] for p in sorted(tmp_path.glob("*.log"))
    )
    assert final_counts(sink.lines()) == expected, logs_text
    text = (tmp_path / "0.log").read_text()
    assert f"killing this worker at {point} of checkpoint attempt 4" in text
    assert "recovering from checkpoint" in (tmp_path / "2.log").read_text()
