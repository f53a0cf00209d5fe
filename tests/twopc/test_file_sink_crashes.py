"""Random crashes of both sides: the file sink's committed output stays exactly what the worker
committed. The seed is random and printed (reproduce with TWOPC_SEED=<seed>)."""

from __future__ import annotations

import os
import random

import pytest
from twopc_driver import FileSinkRun, wait_until

pytestmark = pytest.mark.timeout(60)

STEPS = 45
ACTIONS = {
    "send": 6,
    "checkpoint": 4,
    "abort elsewhere": 1,  # another part of the checkpoint failed: PHASE2 abort
    "lose output": 1,  # output produced while the connection was down
    "drop connection": 1,
    "worker crash": 1,
    "sink kill": 1,
    "sink kill during phase 1": 1,
    "sink kill before phase 2": 1,
}


def test_random_crashes_keep_the_committed_output_exact(app, tmp_path, programs, driver):
    seed = int(os.environ.get("TWOPC_SEED") or random.randrange(2**32))
    print(f"TWOPC_SEED={seed}")
    rng = random.Random(seed)
    run = FileSinkRun(tmp_path, programs)
    d = driver(run.port)
    counter = 0
    kills = 0
    done: list[str] = []

    def restart_sink() -> None:
        nonlocal kills
        run.program.kill()
        kills += 1
        run.restart()

    for _ in range(STEPS):
        action = rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
        done.append(action)
        if action in ("send", "lose output"):
            batch = [f"<{counter + i}:{'x' * rng.randrange(30)}>".encode() for i in
                     range(rng.randint(1, 30))]  # fmt: skip
            counter += len(batch)
            (d.send if action == "send" else d.lose)(*batch)
        elif action == "checkpoint":
            d.checkpoint()
        elif action == "abort elsewhere":
            txn_id, _ = d.phase1()
            d.phase2(txn_id, False)
        elif action == "drop connection":
            d.drop()
        elif action == "worker crash":
            d.crash()
        elif action == "sink kill":
            restart_sink()
        elif action == "sink kill during phase 1":
            d.checkpoint(after_send=run.program.kill)
            kills += 1
            run.restart()
        elif action == "sink kill before phase 2":
            txn_id, vote = d.phase1()
            run.program.kill()
            kills += 1
            if vote and rng.random() < 0.5:  # the checkpoint completes; PHASE2 is lost
                d.last_checkpoint = (txn_id, d.session.offset)
                d.phase2(txn_id, True)
            else:  # the worker dies as well, before its checkpoint completes
                d.crash()
            run.restart()
        if not d.connected:
            d.connect()
    for _ in range(3):  # the last checkpoint may vote abort once (missing output, lost sink)
        if not d.connected:
            d.connect()
        d.send(b"<end>")
        if d.checkpoint():
            break
    print(f"{kills} sink kills; actions: {', '.join(done)}")
    assert d.last_checkpoint is not None
    expected = d.committed_output()
    wait_until(lambda: run.committed() == expected)
    assert run.committed() == expected
    assert expected.endswith(b"<end>")
