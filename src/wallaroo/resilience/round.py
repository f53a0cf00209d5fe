"""One checkpoint round as a sans-IO state machine: inputs in, actions out.

Like h11's connection, a :class:`CheckpointRound` does no I/O of its own: no files, no
sockets, no asyncio, no Ray, no clock. Its adapter (the embedded worker's
:class:`~wallaroo.worker.checkpointing.Checkpointer`, the Ray backend's
:func:`~wallaroo.ray_backend.checkpoints.take_checkpoint`) feeds it what happened and carries
out the actions it returns, in their order. Both backends so commit in one order:

1. **capture**: :class:`Capture`. At the barrier the adapter records every state's key groups
   (blobs), every replayable source's positions, every generator's next value and every
   connector sink's offset and transaction, and feeds them in: :meth:`CheckpointRound.captured`,
   one :class:`Snapshot` per part (the embedded worker: one; Ray: the sources, then each
   worker).
2. **PHASE1**: every sink votes, :meth:`CheckpointRound.vote`. The embedded worker asks once
   the capture is complete (:class:`RequestVotes`); on Ray the barrier asks each sink actor
   (``votes_on_barrier``), so votes and parts arrive in any order.
3. **the commit point**: once every part is in and every sink voted commit,
   :class:`WriteCheckpoint`: the manifest and blobs, written durably. The adapter reports
   :meth:`CheckpointRound.written` or :meth:`CheckpointRound.write_failed`.
4. **PHASE2 commit**: :class:`SendPhase2` (``commit=True``) to every sink with a transaction.
5. **acknowledge and prune**: :class:`Acknowledge` the checkpointed positions to the sources,
   :class:`Prune` old checkpoints, then :class:`Done` (committed).

Anything else before the write is durable aborts the round: a part that could not be captured,
a sink that voted abort or could not vote, :meth:`CheckpointRound.timeout` (the adapter keeps
the clock), a failed write. Then :class:`SendPhase2` (``commit=False``) to every sink whose
transaction the round knows, :class:`Rollback` to the last committed checkpoint, and
:class:`Done` with its :class:`AbortReason`. A capture that fails before PHASE1 began (the
embedded worker asks no vote after a failed capture) has nothing to abort or roll back: only
:class:`Done`. When the parts and the votes are all in, a failed capture takes precedence over
refusals (the first error is the reason).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from wallaroo.engine.keys import HASH_FUNCTION
from wallaroo.errors import CheckpointError
from wallaroo.resilience.manifest import (
    GeneratorPosition,
    Manifest,
    SinkPosition,
    parse_blob_name,
)

__all__ = [
    "AbortKind",
    "AbortReason",
    "Acknowledge",
    "Action",
    "Capture",
    "CheckpointRound",
    "Done",
    "Phase",
    "Prune",
    "RequestVotes",
    "Rollback",
    "RoundError",
    "SendPhase2",
    "Snapshot",
    "WriteCheckpoint",
]


class RoundError(CheckpointError):
    """An input the round cannot take now (a bug in its adapter, never a failed checkpoint)."""


class Phase(enum.Enum):
    """Where a :class:`CheckpointRound` is."""

    IDLE = "idle"
    """Not started."""
    COLLECTING = "collecting"
    """Started: waiting for the parts of the capture and for the votes."""
    WRITING = "writing"
    """Every part in and every vote commit: the checkpoint is being written."""
    DONE = "done"
    """Committed or aborted (:attr:`CheckpointRound.outcome`)."""


class AbortKind(enum.Enum):
    """Why a round aborted."""

    CAPTURE = "capture"
    """A part could not be captured (e.g. a state that cannot be serialised)."""
    REFUSED = "refused"
    """A sink voted abort, or could not vote."""
    TIMEOUT = "timeout"
    """The round was not complete in time."""
    WRITE = "write"
    """The checkpoint could not be written."""


@dataclass(frozen=True, slots=True)
class AbortReason:
    """Why a round aborted.

    Attributes:
        kind: what went wrong.
        refused: the sinks that voted abort or could not vote, in the order they voted.
        detail: the error of a failed capture or write.
    """

    kind: AbortKind
    refused: tuple[str, ...] = ()
    detail: str = ""

    def __str__(self) -> str:
        if self.kind is AbortKind.REFUSED:
            return f"sinks {', '.join(self.refused)} voted abort or could not vote"
        if self.kind is AbortKind.TIMEOUT:
            return "not complete in time"
        what = "could not be captured" if self.kind is AbortKind.CAPTURE else "not written"
        return f"{what}: {self.detail}"


# -- inputs ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Snapshot:
    """One part of a checkpoint's capture, taken at the barrier.

    Attributes:
        part: which part it is (each part once; blobs are written in part order).
        blobs: state blobs, ``(blob_name(state, group), bytes)``.
        sources: replayable source name -> stream -> position.
        generators: generator source name -> its position.
        sinks: sink name -> its offset and transaction, for sinks whose barrier is captured
            here (otherwise the vote brings it).
        error: why this part could not be captured (its other fields are then ignored).
    """

    part: int = 0
    blobs: tuple[tuple[str, bytes], ...] = ()
    sources: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    generators: Mapping[str, GeneratorPosition] = field(default_factory=dict)
    sinks: Mapping[str, SinkPosition] = field(default_factory=dict)
    error: str | None = None


# -- actions -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Capture:
    """Capture the checkpoint at a barrier; feed its parts to :meth:`CheckpointRound.captured`."""

    checkpoint_id: int


@dataclass(frozen=True, slots=True)
class RequestVotes:
    """Send PHASE1 to ``sinks`` and feed their votes to :meth:`CheckpointRound.vote`."""

    checkpoint_id: int
    sinks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WriteCheckpoint:
    """Write the checkpoint durably (the commit point); then report
    :meth:`CheckpointRound.written` or :meth:`CheckpointRound.write_failed`."""

    manifest: Manifest
    blobs: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class SendPhase2:
    """Send PHASE2 (``commit`` or abort) for ``txns`` (sink name -> transaction id)."""

    checkpoint_id: int
    commit: bool
    txns: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """The checkpoint is durable: acknowledge ``positions`` (source -> stream -> position)."""

    checkpoint_id: int
    positions: Mapping[str, Mapping[int, int]]


@dataclass(frozen=True, slots=True)
class Prune:
    """Delete old checkpoints (the store keeps the newest few)."""

    checkpoint_id: int


@dataclass(frozen=True, slots=True)
class Rollback:
    """Go back to the last committed checkpoint (or the beginning): the round aborted."""

    checkpoint_id: int
    reason: AbortReason


@dataclass(frozen=True, slots=True)
class Done:
    """The round is over: the last action.

    Attributes:
        checkpoint_id: the round's checkpoint.
        committed: whether the checkpoint is durable.
        reason: why it aborted (None when committed).
    """

    checkpoint_id: int
    committed: bool
    reason: AbortReason | None = None


Action = (
    Capture | RequestVotes | WriteCheckpoint | SendPhase2 | Acknowledge | Prune | Rollback | Done
)


class CheckpointRound:
    """One checkpoint round of one backend (see the module docstring for the commit order).

    Every input returns the actions to carry out, in order (often none); an input the round
    cannot take in its phase raises :class:`RoundError`.

    Args:
        app: the application's name (recorded in the manifest).
        worker: the worker's name (``--name``).
        key_groups: the number of key groups.
        sinks: the sinks that vote, by name (each votes once).
        parts: how many :class:`Snapshot` parts make the capture.
        votes_on_barrier: the barrier asks the sinks to vote (Ray), so PHASE1 begins with the
            round; otherwise the round asks with :class:`RequestVotes` after the capture.
        backend: ``"embedded"`` or ``"ray"`` (recorded).
        workers: the Ray backend's number of workers (recorded).
    """

    def __init__(
        self,
        *,
        app: str,
        worker: str,
        key_groups: int,
        sinks: Iterable[str] = (),
        parts: int = 1,
        votes_on_barrier: bool = False,
        backend: str = "embedded",
        workers: int | None = None,
    ) -> None:
        self.app, self.worker, self.key_groups = app, worker, key_groups
        self.sinks = tuple(sinks)
        self.parts = parts
        self.votes_on_barrier = votes_on_barrier
        self.backend, self.workers = backend, workers
        self.phase = Phase.IDLE
        self.checkpoint_id = 0
        #: the last action, once the round is over
        self.outcome: Done | None = None
        self._time_ns = 0
        self._phase1 = False
        self._snapshots: dict[int, Snapshot] = {}
        self._errors: list[str] = []
        self._votes: dict[str, bool] = {}
        self._positions: dict[str, SinkPosition] = {}
        self._states: dict[str, set[int]] = {}

    # -- inputs --------------------------------------------------------------------------------
    def start(self, checkpoint_id: int, *, time_ns: int) -> list[Action]:
        """Begin checkpoint ``checkpoint_id`` (``time_ns``: the wall clock, for the manifest).

        Raises:
            RoundError: the round already began.
        """
        self._expect(Phase.IDLE, "start")
        self.checkpoint_id, self._time_ns = checkpoint_id, time_ns
        self.phase = Phase.COLLECTING
        self._phase1 = self.votes_on_barrier
        return [Capture(checkpoint_id), *self._advance()]

    def captured(self, snapshot: Snapshot) -> list[Action]:
        """A part of the capture arrived (or failed: ``snapshot.error``; a blob whose name is
        not ``state/<state>/<group>`` fails it too).

        Raises:
            RoundError: not collecting, a part out of range or seen before, or an unknown sink.
        """
        self._expect(Phase.COLLECTING, "a captured part")
        if not 0 <= snapshot.part < self.parts or snapshot.part in self._snapshots:
            raise RoundError(
                f"checkpoint {self.checkpoint_id}: part {snapshot.part} is out of range or came "
                "before"
            )
        self._snapshots[snapshot.part] = snapshot
        error = snapshot.error or self._file_blobs(snapshot.blobs)
        if error is not None:
            self._errors.append(error)
            if not self._phase1:  # no vote was asked: nothing to abort, nothing to roll back
                return self._abort(AbortReason(AbortKind.CAPTURE, detail=error))
            return self._advance()
        for name, position in snapshot.sinks.items():
            self._known_sink(name)
            self._positions[name] = position
        return self._advance()

    def vote(self, sink: str, commit: bool, position: SinkPosition | None = None) -> list[Action]:
        """Sink ``sink`` voted (False also when it could not vote); ``position``: its offset
        and transaction when the capture did not bring them (None: it has none).

        Raises:
            RoundError: PHASE1 has not begun, an unknown sink, or a second vote.
        """
        self._expect(Phase.COLLECTING, "a vote")
        self._known_sink(sink)
        if not self._phase1 or sink in self._votes:
            raise RoundError(f"a vote of sink {sink!r} on checkpoint {self.checkpoint_id} now")
        self._votes[sink] = commit
        if position is not None:
            self._positions[sink] = position
        return self._advance()

    def timeout(self) -> list[Action]:
        """The round took too long (the adapter keeps the clock): abort it.

        Raises:
            RoundError: not collecting (a write under way is the commit point: it cannot be
                timed out).
        """
        self._expect(Phase.COLLECTING, "a timeout")
        return self._abort(AbortReason(AbortKind.TIMEOUT))

    def written(self) -> list[Action]:
        """The checkpoint is durable: commit.

        Raises:
            RoundError: no write was asked.
        """
        self._expect(Phase.WRITING, "a finished write")
        done = Done(self.checkpoint_id, committed=True)
        self.phase, self.outcome = Phase.DONE, done
        positions = self._merged_sources()
        return [
            SendPhase2(self.checkpoint_id, True, self._txns()),
            Acknowledge(self.checkpoint_id, positions),
            Prune(self.checkpoint_id),
            done,
        ]

    def write_failed(self, error: str) -> list[Action]:
        """The checkpoint could not be written (``error``: why): abort.

        Raises:
            RoundError: no write was asked.
        """
        self._expect(Phase.WRITING, "a failed write")
        return self._abort(AbortReason(AbortKind.WRITE, detail=error))

    def has_part(self, part: int) -> bool:
        """Whether part ``part`` of the capture arrived."""
        return part in self._snapshots

    def has_voted(self, sink: str) -> bool:
        """Whether sink ``sink`` voted."""
        return sink in self._votes

    # -- internals -----------------------------------------------------------------------------
    def _expect(self, phase: Phase, what: str) -> None:
        if self.phase is not phase:
            raise RoundError(
                f"checkpoint round {self.checkpoint_id}: {what} while {self.phase.value}"
            )

    def _known_sink(self, name: str) -> None:
        if name not in self.sinks:
            raise RoundError(f"checkpoint {self.checkpoint_id}: no sink {name!r} takes part")

    def _file_blobs(self, blobs: Iterable[tuple[str, bytes]]) -> str | None:
        """Note the key groups the blobs hold; the error of a badly named one."""
        try:
            found = [parse_blob_name(name) for name, _ in blobs]
        except CheckpointError as exc:
            return str(exc)
        for state, group in found:
            self._states.setdefault(state, set()).add(group)
        return None

    def _advance(self) -> list[Action]:
        """After an input: ask for votes, abort, or write, once everything needed is in."""
        if len(self._snapshots) < self.parts:
            return []
        actions: list[Action] = []
        if not self._phase1:
            self._phase1 = True
            actions.append(RequestVotes(self.checkpoint_id, self.sinks))
        if len(self._votes) < len(self.sinks):
            return actions
        refused = tuple(name for name, ok in self._votes.items() if not ok)
        if self._errors:
            return actions + self._abort(AbortReason(AbortKind.CAPTURE, detail=self._errors[0]))
        if refused:
            return actions + self._abort(AbortReason(AbortKind.REFUSED, refused))
        self.phase = Phase.WRITING
        return [*actions, WriteCheckpoint(self._manifest(), self._blobs())]

    def _abort(self, reason: AbortReason) -> list[Action]:
        done = Done(self.checkpoint_id, committed=False, reason=reason)
        self.phase, self.outcome = Phase.DONE, done
        if not self._phase1:
            return [done]
        return [
            SendPhase2(self.checkpoint_id, False, self._txns()),
            Rollback(self.checkpoint_id, reason),
            done,
        ]

    def _txns(self) -> dict[str, str]:
        return {n: p.txn for n, p in self._positions.items() if p.txn is not None}

    def _merged_sources(self) -> dict[str, Mapping[int, int]]:
        return {n: p for s in self._ordered() for n, p in s.sources.items()}

    def _ordered(self) -> list[Snapshot]:
        return [self._snapshots[part] for part in sorted(self._snapshots)]

    def _blobs(self) -> tuple[tuple[str, bytes], ...]:
        return tuple(blob for s in self._ordered() for blob in s.blobs)

    def _manifest(self) -> Manifest:
        return Manifest(
            checkpoint_id=self.checkpoint_id,
            app=self.app,
            worker=self.worker,
            key_groups=self.key_groups,
            hash_function=HASH_FUNCTION,
            time_ns=self._time_ns,
            states={name: tuple(sorted(groups)) for name, groups in self._states.items()},
            sources=self._merged_sources(),
            generators={n: g for s in self._ordered() for n, g in s.generators.items()},
            sinks=dict(self._positions),
            backend=self.backend,
            workers=self.workers,
        )
