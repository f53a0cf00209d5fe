"""Checkpoints serialised by a forked child (wallaroo.worker.fork_snapshot): the same blobs as
on the event loop, errors reported, and a worker that keeps answering while it checkpoints."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, tmp_path: Path) -> str:
    """Run ``code`` in a fresh interpreter (never fork the test process: it may run Ray)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_child_writes_the_blobs_the_event_loop_would(tmp_path):
    out = _python(
        """
        import asyncio, pickle, sys
        from pathlib import Path
        from wallaroo.engine.state import StateStore
        from wallaroo.resilience.state_codec import group_blobs
        from wallaroo.worker.fork_snapshot import ForkedBlobs

        class Count:
            def __init__(self):
                self.n = 0

        store = StateStore("count", Count, 16)
        for i in range(5000):
            store.create(f"k{i}").n = i
        directory = Path(sys.argv[1])
        forked = ForkedBlobs([store], pickle.dumps, directory)
        for i in range(5000):  # changes after the cut are not in the checkpoint
            store.get(f"k{i}").n = -1
        got = asyncio.run(forked.blobs())
        for i in range(5000):
            store.get(f"k{i}").n = i
        assert got == list(group_blobs(store, pickle.dumps)), "blobs differ"
        assert len(got) == 16
        assert list(directory.iterdir()) == [], list(directory.iterdir())
        print("ok")
        """,
        tmp_path,
    )
    assert out.strip() == "ok"


def test_a_state_that_cannot_be_serialised_is_a_checkpoint_error(tmp_path):
    out = _python(
        """
        import asyncio, pickle, sys, threading
        from pathlib import Path
        from wallaroo.engine.state import StateStore
        from wallaroo.errors import CheckpointError
        from wallaroo.worker.fork_snapshot import ForkedBlobs

        class Locked:
            def __init__(self):
                self.lock = threading.Lock()

        store = StateStore("locks", Locked, 4)
        store.create("a")
        try:
            asyncio.run(ForkedBlobs([store], pickle.dumps, Path(sys.argv[1])).blobs())
        except CheckpointError as exc:
            print("error:", exc)
        forked = ForkedBlobs([store], pickle.dumps, Path(sys.argv[1]))
        forked.cancel()
        assert list(Path(sys.argv[1]).iterdir()) == []
        """,
        tmp_path,
    )
    assert out.startswith("error:") and "lock" in out, out


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_probes_stay_fast_while_a_large_state_is_checkpointed():
    """200,000 keys checkpointed every second: on the event loop each checkpoint would block
    the worker for about 300 ms; with the forked child, probes come back within milliseconds
    (a generous bound: 100 ms at p99 on a loaded machine)."""
    sys.path.insert(0, str(ROOT))
    from bench.state_probe import run

    figures = run(keys=200_000, rate=200.0, seconds=4.0, resilient=True)
    assert figures["checkpoints"] >= 2, figures
    assert figures["p99"] < 100.0, figures
