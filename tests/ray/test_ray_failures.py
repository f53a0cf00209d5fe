"""Failures and rescaling on Ray end with exactly-once output.

The correctness app (every key's values exactly once and in order, or a dead letter) fed by
the file source and written to the durable file sink, 100,000 messages over 100 keys sent at a
bounded rate so that data is always in flight. The committed output must be exactly the input,
per key and in order, with no dead letters (``fault_driver.Pipeline.check_output``).
"""

from __future__ import annotations

import subprocess

import pytest
from fault_driver import BIN
from ray_helpers import RayPipeline

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(240)]


def test_killing_actors_mid_stream_leaves_the_output_exact(ray_address, tmp_path):
    # Two worker actors, the source actor (it owns the connector's listener) and the sink
    # actor (its connector sink was in the middle of two-phase commits), one after the other.
    run = RayPipeline(tmp_path, keys=100, per_key=1000, files=3, rate=6000,
                      workers=2, ray_address=ray_address)  # fmt: skip
    with run.reporting():
        run.start()
        victims = [(0.2, "w1"), (0.4, "s0"), (0.6, "sink0"), (0.75, "w0")]
        for restarts, (fraction, victim) in enumerate(victims):
            run.wait_committed(fraction)
            assert run.source.running, "the source must still be sending"
            run.kill_actor(victim)
            status = run.wait_running(restarts + 1)
            assert status["workers"] == 2
        run.finish(timeout=150)
        run.check_output()
        log = run.worker.log()
        for died in ("worker actor w1 (pid", "source actor s0 (pid", "sink actor 0 (pid",
                     "worker actor w0 (pid"):  # fmt: skip
            assert log.count(died) == 1, (died, log[-3000:])
        assert "rolling the application back to checkpoint" in log
        # The restarted source resumed at the checkpointed offsets, not from the start.
        assert "resuming at offset" in run.source.log()


def test_grow_and_shrink_mid_stream_lose_and_duplicate_nothing(ray_address, tmp_path):
    run = RayPipeline(tmp_path, keys=100, per_key=600, files=3, rate=6000,
                      workers=2, ray_address=ray_address)  # fmt: skip
    with run.reporting():
        run.start()
        for fraction, workers in [(0.3, 3), (0.65, 2)]:
            run.wait_committed(fraction)
            assert run.source.running, "the source must still be sending"
            scale = subprocess.run(
                [str(BIN / "wallaroo"), "scale", "--workers", str(workers),
                 "--resilience-dir", str(run.resilience_dir)],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert scale.returncode == 0, scale.stdout + scale.stderr
            assert f'"workers": {workers}' in scale.stdout
            run.record(f"scale to {workers}", scale.stdout.strip())
            assert run.wait_running()["workers"] == workers
        run.finish(timeout=150)
        run.check_output()
        log = run.worker.log()
        assert "scaled from 2 to 3 workers through checkpoint" in log
        assert "scaled from 3 to 2 workers through checkpoint" in log
        assert "w2: 171-255" in log  # three workers' ranges of key groups
        assert "died" not in log


def test_scale_without_a_running_application_says_so(tmp_path):
    out = subprocess.run(
        [str(BIN / "wallaroo"), "scale", "--workers", "2", "--resilience-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert "no running Ray application found" in out.stderr


def test_a_sink_voting_abort_rolls_back_and_the_output_stays_exact(ray_address, tmp_path):
    rules = [{"local_txn": 6, "vote": "abort"}, {"local_txn": 12, "vote": "abort",
             "close": "after_reply"}]  # fmt: skip
    run = RayPipeline(tmp_path, keys=30, per_key=400, files=2, rate=3000, abort_rules=rules,
                      workers=2, ray_address=ray_address)  # fmt: skip
    with run.reporting():
        run.start()
        run.finish(timeout=150)
        run.check_output()
        log = run.worker.log()
        assert log.count("voted abort") == 2, log[-3000:]
        assert log.count("rolling the application back to checkpoint") == 2
        ops = [r["op"] for r in run.txnlog()]
        assert ops.count("1-rollback") == 2
