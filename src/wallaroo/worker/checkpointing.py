"""Checkpoints in the worker: take them, commit them with the sinks, recover from them.

A checkpoint is taken between two batches, in the event loop, so it sees one consistent moment:
every state object, every connector stream's last processed point of reference, every
generator's next value and every connector sink's output offset (the *barrier*). The round is
:class:`~wallaroo.resilience.round.CheckpointRound`, which the Ray backend drives too; the
:class:`Checkpointer` is its I/O: it captures, asks the sinks for their PHASE1 votes, writes
the checkpoint to the store (fsync, rename: the commit point), sends PHASE2 commit (sinks
release their held output) and acknowledges the checkpointed positions to the sources (so a
connector only forgets what a durable checkpoint holds).

A vote to abort, a sink that cannot vote, or a failed write aborts the checkpoint: sinks get
PHASE2 abort and the worker rolls back to the last committed checkpoint (state, sink offsets,
generators) and sends RESTART to its connectors, which replay after the checkpointed positions.
On start, :meth:`Checkpointer.recover` does the same from the newest checkpoint on disk.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from wallaroo.engine.local import LocalEngine
from wallaroo.errors import CheckpointError
from wallaroo.plan.physical import SourcePlan
from wallaroo.resilience import round as rnd
from wallaroo.resilience.manifest import GeneratorPosition, Manifest, SinkPosition, blob_name
from wallaroo.resilience.state_codec import decode_group, group_blobs
from wallaroo.resilience.store import Checkpoint, CheckpointStore
from wallaroo.worker import fork_snapshot
from wallaroo.worker.connector_sink import ConnectorSinkOutput
from wallaroo.worker.generator import GeneratorSource

__all__ = ["CheckpointStatistics", "Checkpointer", "ReplayableSource"]

VOTE_TIMEOUT = 10.0
CRASH_POINTS = ("before-phase1", "after-phase1", "during-write", "after-write")


def crash_point_from_env() -> tuple[str, int] | None:
    """``WALLAROO_CRASH_POINT=<point>:<n>``: for fault tests only, the worker kills itself
    (SIGKILL) at ``point`` of its ``n``-th checkpoint. Points: before-phase1 (state captured,
    no vote asked yet), after-phase1 (every sink voted, nothing written: between PHASE1 and
    PHASE2), during-write (the checkpoint file half written), after-write (the checkpoint is
    durable, PHASE2 not sent)."""
    value = os.environ.get("WALLAROO_CRASH_POINT", "")
    point, _, count = value.partition(":")
    if point not in CRASH_POINTS or not count.isdigit():
        return None
    return point, int(count)


@runtime_checkable
class ReplayableSource(Protocol):
    """A source whose position a checkpoint records (connector listeners, built-in Kafka).

    Positions map an int (a connector stream id, a Kafka partition) to an int (the last
    processed point of reference, the next offset to read).
    """

    plan: SourcePlan

    def positions(self) -> dict[int, int]:
        """Where every stream stands now (called at the barrier)."""
        ...

    def committed(self, positions: dict[int, int]) -> None:
        """A checkpoint holding ``positions`` is durable."""
        ...

    def restore(self, positions: dict[int, int]) -> None:
        """Start from a checkpoint (before the source runs)."""
        ...

    def rollback(self, positions: dict[int, int]) -> None:
        """Go back to a checkpoint while running: replay after ``positions``."""
        ...


@dataclass(frozen=True, slots=True)
class CheckpointStatistics:
    """A snapshot of a :class:`Checkpointer`'s counters.

    Attributes:
        last_committed: id of the last committed checkpoint (taken, or recovered from on
            start); 0 when there is none.
        taken: checkpoints committed by this process.
        aborted: checkpoints that failed: a state that could not be serialised, a sink that
            voted abort or could not vote, or a failed write.
        rollbacks: aborts that rolled the worker back to the last committed checkpoint (all
            but those that failed while capturing the state, which roll nothing back).
        last_duration_s: seconds the last committed checkpoint took, from capturing the state
            until its PHASE2 and acknowledgements were sent (pruning old files excluded); 0.0
            before the first.
        last_bytes: total size in bytes of the state blobs of the last committed checkpoint
            (the manifest excluded).
    """

    last_committed: int
    taken: int
    aborted: int
    rollbacks: int
    last_duration_s: float
    last_bytes: int


class Checkpointer:
    """Takes, commits, aborts and restores checkpoints for one worker.

    Args:
        app_name: the application (recorded, and checked on recovery).
        worker_name: the worker (recorded, and checked on recovery).
        engine: whose state stores are checkpointed.
        store: where checkpoints go.
        sources: replayable sources (positions, acks, RESTART or seek).
        generators: generator sources (positions).
        sinks: connector sinks (offsets, two-phase commit).
        serialize, deserialize: the application's state serialisation.
        interval_s: seconds between checkpoints.
        log: where to report.
        fork_snapshots: serialise the state in a forked child, so that processing pauses only
            for the fork (:mod:`wallaroo.worker.fork_snapshot`); else on the event loop.
    """

    def __init__(
        self,
        *,
        app_name: str,
        worker_name: str,
        engine: LocalEngine,
        store: CheckpointStore,
        sources: list[ReplayableSource],
        generators: list[GeneratorSource],
        sinks: list[ConnectorSinkOutput],
        serialize: Callable[[Any], bytes],
        deserialize: Callable[[bytes], Any],
        interval_s: float,
        log: logging.Logger,
        fork_snapshots: bool = False,
    ) -> None:
        self.app_name = app_name
        self.worker_name = worker_name
        self.engine = engine
        self.store = store
        self.sources = sources
        self.generators = generators
        self.sinks = sinks
        self.serialize = serialize
        self.deserialize = deserialize
        self.interval_s = interval_s
        self.log = log
        self.last_committed = 0
        self._next_id = 1
        self._taken = self._aborted = self._rollbacks = 0
        self._last_duration = 0.0
        self._last_bytes = 0
        self._lock = asyncio.Lock()
        self._crash = crash_point_from_env()
        self._attempts = 0
        self.fork_snapshots = fork_snapshots

    # -- recovery -----------------------------------------------------------------------------
    def recover(self, *, fall_back: bool = False) -> int | None:
        """Restore the newest checkpoint on disk, if any; return its id.

        Raises:
            CheckpointError: the newest checkpoint is damaged (and ``fall_back`` is False), or it
                belongs to another application or worker.
        """
        checkpoint, notes = self.store.latest(fall_back=fall_back)
        for note in notes:
            self.log.warning("skipping a damaged checkpoint: %s", note)
        if notes and checkpoint is not None:
            self.log.warning(
                "recovering from an older checkpoint (%d): messages between it and "
                "the damaged one may be replayed, and any output they made again",
                checkpoint.id,
            )
        if checkpoint is None:
            return None
        manifest = self._check(checkpoint)
        self.log.info("recovering from checkpoint %d (%s)", checkpoint.id, checkpoint.path.name)
        self._restore(checkpoint, manifest, live=False)
        self.last_committed = checkpoint.id
        self._next_id = checkpoint.id + 1
        return checkpoint.id

    def _check(self, checkpoint: Checkpoint) -> Manifest:
        """The checkpoint's manifest, checked to be this application's and worker's.

        Raises:
            CheckpointError: an unreadable manifest, or another application, worker name,
                number of key groups or hash function.
        """
        manifest = Manifest.of(checkpoint)
        manifest.check(
            app=self.app_name,
            worker=self.worker_name,
            key_groups=self.engine.plan.key_groups,
            where=f"checkpoint {checkpoint.path}",
            reader="this worker",
        )
        return manifest

    def _restore(
        self, checkpoint: Checkpoint | None, manifest: Manifest | None, *, live: bool
    ) -> None:
        """Put the worker back in the state ``checkpoint`` recorded (None: the beginning)."""
        m = manifest or Manifest(0, self.app_name, self.worker_name, self.engine.plan.key_groups)
        self._restore_states(checkpoint, m)
        for listener in self.sources:
            positions = dict(m.sources.get(listener.plan.name, {}))
            if live:
                listener.rollback(positions)
            else:
                listener.restore(positions)
        for gen in self.generators:
            entry = m.generators.get(gen.plan.name)
            if entry is None:
                gen.restore(False, None)
            else:
                value = entry.next
                gen.restore(
                    entry.started,
                    None if value is None else self.deserialize(base64.b64decode(value)),
                )
        for sink in self.sinks:
            position = m.sinks.get(sink.name, SinkPosition(0, None))
            sink.restore(position.offset, position.txn)

    def _restore_states(self, checkpoint: Checkpoint | None, manifest: Manifest) -> None:
        for store in self.engine.states.values():
            for group in range(store.key_groups):
                store.drop_group(group)
        groups = {k: list(v) for k, v in manifest.states.items()}
        if checkpoint is not None:
            for name, store in self.engine.states.items():
                for group in groups.pop(name, []):
                    blob = checkpoint.blob(blob_name(name, group))
                    store.restore_group(group, decode_group(blob, self.deserialize))
        self.engine.restored()
        for name in groups:
            self.log.warning(
                "the checkpoint holds state %r, which the application no longer has; it is ignored",
                name,
            )

    # -- taking checkpoints -------------------------------------------------------------------
    async def run(self) -> None:
        """Take a checkpoint every ``interval_s`` seconds, forever."""
        while True:
            await asyncio.sleep(self.interval_s)
            # Shielded: cancelling this loop (at shutdown) never cuts a checkpoint in half; a
            # later checkpoint() waits for it on the lock.
            await asyncio.shield(self.checkpoint())

    async def checkpoint(self) -> bool:
        """Take one checkpoint; return True if it was committed."""
        async with self._lock:
            return await self._checkpoint()

    def _maybe_crash(self, point: str) -> None:
        if self._crash == (point, self._attempts):
            self.log.warning(
                "WALLAROO_CRASH_POINT: killing this worker at %s of checkpoint attempt %d",
                point,
                self._attempts,
            )
            for handler in logging.getLogger().handlers + self.log.handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def _write(self, write: rnd.WriteCheckpoint) -> None:
        if self._crash == ("during-write", self._attempts):
            self.store.before_rename = lambda: self._maybe_crash("during-write")
        self.store.write(write.manifest.to_json(), write.blobs)

    async def _checkpoint(self) -> bool:
        """One :class:`~wallaroo.resilience.round.CheckpointRound`: feed it what happens and
        carry out its actions, in order, until it is done."""
        attempt = _Attempt(
            time.perf_counter(),
            rnd.CheckpointRound(
                app=self.app_name,
                worker=self.worker_name,
                key_groups=self.engine.plan.key_groups,
                sinks=[sink.name for sink in self.sinks],
            ),
        )
        checkpoint_id = self._next_id
        self._next_id += 1
        self._attempts += 1
        actions = attempt.round.start(checkpoint_id, time_ns=time.time_ns())
        while not isinstance(action := actions.pop(0), rnd.Done):
            actions += await self._execute(action, attempt)
        return self._done(action, attempt)

    async def _execute(self, action: rnd.Action, attempt: _Attempt) -> list[rnd.Action]:
        """Carry out one action of the round; return what the round says next."""
        cround = attempt.round
        match action:
            case rnd.Capture():
                return cround.captured(await self._capture(action.checkpoint_id))
            case rnd.RequestVotes():
                self._maybe_crash("before-phase1")
                votes = await asyncio.gather(
                    *(sink.prepare(action.checkpoint_id, VOTE_TIMEOUT) for sink in self.sinks)
                )
                return [
                    a
                    for s, ok in zip(self.sinks, votes, strict=True)
                    for a in cround.vote(s.name, ok)
                ]
            case rnd.WriteCheckpoint():
                return await self._write_durably(action, attempt)
            case rnd.SendPhase2():
                for sink in self.sinks:
                    txn = action.txns.get(sink.name)
                    if txn is not None:
                        (sink.commit if action.commit else sink.abort)(txn)
            case rnd.Acknowledge():
                for listener in self.sources:
                    listener.committed(dict(action.positions[listener.plan.name]))
            case rnd.Prune():
                self._committed(action.checkpoint_id, attempt)
                await asyncio.get_running_loop().run_in_executor(None, self.store.prune)
            case rnd.Rollback():
                attempt.rolled_back = True
                self._rollback(action)
        return []

    async def _capture(self, checkpoint_id: int) -> rnd.Snapshot:
        return await fork_snapshot.capture(
            lambda with_blobs: self._snapshot(checkpoint_id, with_blobs=with_blobs),
            list(self.engine.states.values()),
            self.serialize,
            self.store.directory if self.fork_snapshots else None,
            self.log.warning,
        )

    async def _write_durably(
        self, write: rnd.WriteCheckpoint, attempt: _Attempt
    ) -> list[rnd.Action]:
        attempt.write = write
        self._maybe_crash("after-phase1")
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._write, write)
        except CheckpointError as exc:
            checkpoint_id = write.manifest.checkpoint_id
            self.log.error("checkpoint %d could not be written: %s", checkpoint_id, exc)
            return attempt.round.write_failed(str(exc))
        self._maybe_crash("after-write")
        return attempt.round.written()

    def _snapshot(self, checkpoint_id: int, *, with_blobs: bool = True) -> rnd.Snapshot:
        """Everything a checkpoint records, at this moment (no await: one consistent cut);
        the state blobs too unless ``with_blobs`` is False (a forked child makes them).

        Raises:
            CheckpointError: a state or a generator's next value cannot be serialised.
        """
        blobs: list[tuple[str, bytes]] = []
        for store in self.engine.states.values() if with_blobs else ():
            blobs.extend(group_blobs(store, self.serialize))
        generators = {}
        for gen in self.generators:
            started, value = gen.position()
            try:
                encoded = (
                    None
                    if value is None
                    else base64.b64encode(self.serialize(value)).decode("ascii")
                )
            except Exception as exc:
                raise CheckpointError(
                    f"serialize() failed for the next value of generator source "
                    f"'{gen.plan.name}': {type(exc).__name__}: {exc}"
                ) from exc
            generators[gen.plan.name] = GeneratorPosition(started, encoded)
        sources = {lst.plan.name: dict(lst.positions()) for lst in self.sources}
        sinks = {}
        for sink in self.sinks:
            entry = sink.barrier(checkpoint_id)
            sinks[sink.name] = SinkPosition(int(entry["offset"]), entry["txn"])
        return rnd.Snapshot(0, tuple(blobs), sources, generators, sinks)

    def _committed(self, checkpoint_id: int, attempt: _Attempt) -> None:
        """The round committed (PHASE2 and acknowledgements sent): count it."""
        self.last_committed = checkpoint_id
        self._taken += 1
        self._last_duration = time.perf_counter() - attempt.started
        blobs = attempt.write.blobs if attempt.write is not None else ()
        self._last_bytes = sum(len(b) for _, b in blobs)

    def _rollback(self, action: rnd.Rollback) -> None:
        self._aborted += 1
        self._rollbacks += 1
        reason = action.reason
        why = "it could not be written" if reason.kind is rnd.AbortKind.WRITE else str(reason)
        self.log.warning(
            "checkpoint %d aborted (%s); rolling back to checkpoint %d and replaying",
            action.checkpoint_id,
            why,
            self.last_committed,
        )
        previous = self.store.read(self.last_committed) if self.last_committed else None
        self._restore(previous, Manifest.of(previous) if previous else None, live=True)

    def _done(self, done: rnd.Done, attempt: _Attempt) -> bool:
        if done.committed:
            self.log.debug(
                "checkpoint %d committed in %.3f s", done.checkpoint_id, self._last_duration
            )
            return True
        if not attempt.rolled_back:  # it failed while capturing: there was nothing to undo
            self._aborted += 1
            self.log.error(
                "checkpoint %d failed: %s; nothing is acknowledged until a checkpoint succeeds",
                done.checkpoint_id,
                done.reason.detail if done.reason is not None else "",
            )
        return False

    def statistics(self) -> CheckpointStatistics:
        """A snapshot of the checkpoint counters."""
        return CheckpointStatistics(
            self.last_committed,
            self._taken,
            self._aborted,
            self._rollbacks,
            self._last_duration,
            self._last_bytes,
        )


@dataclass(slots=True)
class _Attempt:
    """One call of :meth:`Checkpointer._checkpoint`: its round and what the adapter keeps."""

    started: float
    round: rnd.CheckpointRound
    write: rnd.WriteCheckpoint | None = None
    rolled_back: bool = False
