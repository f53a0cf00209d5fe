"""The worker's Checkpointer through ``Harness.checkpoint``/``restore``: state round-trips, and
a state that cannot be serialised fails that checkpoint (logged with its key, nothing
committed) while the next one succeeds once it can."""

from __future__ import annotations

import logging
import struct
import sys
from pathlib import Path

import pytest

from wallaroo.errors import CheckpointError
from wallaroo.resilience.store import CheckpointStore
from wallaroo.testing import Harness

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "alphabet"))
import alphabet

ARGS = ["--in", "127.0.0.1:7010", "--out", "127.0.0.1:7002"]


def test_an_unserialisable_state_fails_one_checkpoint_and_the_next_one_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(alphabet, ARGS)
    h.push(0, [struct.pack(">sI", b"a", 3), struct.pack(">sI", b"b", 4)])
    state = h.engine.states["letter state"].states["b"]
    state.handle = lambda: None  # not picklable
    with (
        caplog.at_level(logging.ERROR, logger="wallaroo.testing"),
        pytest.raises(CheckpointError, match="not committed"),
    ):
        h.checkpoint(tmp_path)
    assert "serialize() failed for key 'b'" in caplog.text
    assert h.checkpointer(tmp_path).statistics().aborted == 1
    assert CheckpointStore(tmp_path).latest() == (None, [])

    del state.handle
    assert h.checkpoint(tmp_path) == 2  # ids go on from the failed attempt
    h.push(0, [struct.pack(">sI", b"a", 10)])  # after the checkpoint: not in it
    fresh = Harness(alphabet, ARGS)
    assert fresh.restore(tmp_path) == 2
    restored = fresh.engine.states["letter state"].states
    assert (restored["a"].votes, restored["b"].votes) == (3, 4)
    assert Harness(alphabet, ARGS).restore(tmp_path / "empty") is None
