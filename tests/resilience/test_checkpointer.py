"""The worker's Checkpointer on an in-process engine: a state that cannot be serialised fails
that checkpoint (logged, counted, nothing committed) and the next one succeeds once it can."""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
from pathlib import Path

import pytest

from wallaroo.resilience.store import CheckpointStore
from wallaroo.serialization import deserialize, serialize
from wallaroo.testing import Harness
from wallaroo.worker.checkpointing import Checkpointer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "alphabet"))
import alphabet

ARGS = ["--in", "127.0.0.1:7010", "--out", "127.0.0.1:7002"]


def checkpointer(h: Harness, directory: Path) -> Checkpointer:
    return Checkpointer(
        app_name=h.plan.app_name,
        worker_name="w",
        engine=h.engine,
        store=CheckpointStore(directory),
        sources=[],
        generators=[],
        sinks=[],
        serialize=serialize,
        deserialize=deserialize,
        interval_s=3600.0,
        log=logging.getLogger("test.checkpoint"),
    )


def test_an_unserialisable_state_fails_one_checkpoint_and_the_next_one_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(alphabet, ARGS)
    h.push(0, [struct.pack(">sI", b"a", 3), struct.pack(">sI", b"b", 4)])
    ck = checkpointer(h, tmp_path)
    state = h.engine.states["letter state"].states["b"]
    state.handle = lambda: None  # not picklable
    with caplog.at_level(logging.ERROR, logger="test.checkpoint"):
        assert asyncio.run(ck.checkpoint()) is False
    assert "serialize() failed for key 'b'" in caplog.text
    assert (ck.statistics().last_committed, ck.statistics().aborted) == (0, 1)  # 0: none yet
    assert CheckpointStore(tmp_path).latest() == (None, [])

    del state.handle
    assert asyncio.run(ck.checkpoint()) is True
    fresh = Harness(alphabet, ARGS)
    assert checkpointer(fresh, tmp_path).recover() == ck.statistics().last_committed
    restored = fresh.engine.states["letter state"].states
    assert (restored["a"].votes, restored["b"].votes) == (3, 4)
