"""Memory with many distinct keys, and the cost of checkpointing them (in-process).

The W2 application is fed one-word lines, every word new, so each line creates one key's state
(a ``WordTotal`` with a count). The sink's list is emptied after every batch so that only the
state stays. RSS is sampled at every quarter to show how it grows with the keys.

Then the state is checkpointed with the worker's own :class:`Checkpointer` (no sources or
sinks): the snapshot (serialising every key group: the worker's event loop is blocked for this
part), the whole checkpoint (snapshot, write, fsync), and a recovery into a fresh engine.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import proc, workloads
from bench.apps import word_count
from bench.inprocess import ARGS, BATCH, CheckError
from wallaroo.resilience.state_codec import group_blobs
from wallaroo.serialization import serialize
from wallaroo.testing import Harness

STATE = "count word"


def measure_keys(size: int) -> dict[str, Any]:
    gc.collect()
    h = Harness(word_count, ARGS)
    start = proc.rss()
    proc.reset_peak()
    samples = [(0, start)]
    marks = {size * q // 4 for q in (1, 2, 3, 4)}
    lines = workloads.distinct_key_lines(size)
    done = outputs = 0
    others = proc.Others()
    c0 = time.process_time()
    while batch := list(itertools.islice(lines, BATCH)):
        h.push(word_count.SOURCE, batch, batch_size=BATCH)
        outputs += len(h.sinks[0].payloads)
        h.sinks[0].payloads.clear()
        before, done = done, done + len(batch)
        if any(before < m <= done for m in marks):
            samples.append((done, proc.rss()))
    cpu = time.process_time() - c0
    others_share = others.share(cpu)
    peak = proc.peak_rss()
    keys = h.engine.states[STATE].statistics().keys
    if keys != size or outputs != size:
        raise CheckError(f"{keys} keys and {outputs} outputs for {size} distinct words")
    end = samples[-1][1]
    result: dict[str, Any] = {
        "units": "keys",
        "n": size,
        "rate_cpu": size / cpu,
        "peak_rss": peak,
        "start_rss": start,
        "bytes_per_key": (end - start) / size,
        "samples": samples,
        "others": others_share,
        "load": os.getloadavg()[0],
    }
    result.update(_checkpoint(h, size))
    return result


def _checkpoint(h: Harness, size: int) -> dict[str, Any]:
    store = h.engine.states[STATE]
    t0 = time.perf_counter()
    nbytes = sum(len(blob) for _, blob in group_blobs(store, serialize))
    snapshot_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="wallaroo-bench-") as tmp:
        checkpointer = h.checkpointer(Path(tmp))
        if not asyncio.run(checkpointer.checkpoint()):
            raise CheckError("the checkpoint was not committed")
        stats = checkpointer.statistics()
        fresh = Harness(word_count, ARGS)
        t0 = time.perf_counter()
        restored_id = fresh.restore(Path(tmp))
        recover_s = time.perf_counter() - t0
    states = fresh.engine.states[STATE].states
    if restored_id != stats.last_committed or len(states) != size:
        raise CheckError(f"recovery restored {len(states)} keys of {size}")
    if any(
        states[w.decode()].count != 1
        for w in itertools.islice(workloads.distinct_key_lines(size), 0, size, max(1, size // 1000))
    ):
        raise CheckError("a recovered count is wrong")
    return {
        "snapshot_s": snapshot_s,
        "checkpoint_s": stats.last_duration_s,
        "checkpoint_bytes": stats.last_bytes,
        "recover_s": recover_s,
        "serialized_bytes": nbytes,
    }
