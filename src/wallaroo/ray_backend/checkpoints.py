"""One checkpoint across the actors, and finding the checkpoint to recover.

The checkpoint's file is the embedded worker's (:mod:`wallaroo.resilience.store`): key-group
blobs ``state/<state>/<group>`` and a :class:`~wallaroo.resilience.manifest.Manifest` with the
application, the worker name (``--name``), the key groups and hash function, every source's
positions, every generator's next value and every connector sink's offset and transaction;
with ``"backend": "ray"`` and the number of workers. So a checkpoint taken by either backend
can be restored by the other, into any number of workers. The round is the embedded worker's
too (:class:`~wallaroo.resilience.round.CheckpointRound`): :func:`take_checkpoint` is its I/O
through the actors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from wallaroo.errors import CheckpointError
from wallaroo.plan.physical import PhysicalPlan
from wallaroo.ray_backend._ray import import_ray, is_actor_death
from wallaroo.ray_backend.deploy import Deployment
from wallaroo.ray_backend.topology import AppSpec
from wallaroo.resilience import round as rnd
from wallaroo.resilience.manifest import GeneratorPosition, Manifest, SinkPosition
from wallaroo.resilience.store import Checkpoint, CheckpointStore

__all__ = ["CALL_TIMEOUT", "CHECKPOINT_TIMEOUT", "ActorDied", "call", "recover", "take_checkpoint"]

CHECKPOINT_TIMEOUT = 30.0
CALL_TIMEOUT = 60.0
log = logging.getLogger("wallaroo.ray")


class ActorDied(Exception):  # noqa: N818 - an event, not an error of ours
    """An actor of the deployment is gone (``who`` names it)."""

    def __init__(self, who: str, why: str) -> None:
        super().__init__(f"{who} died ({why})")
        self.who = who
        self.why = why


def call(refs: list[Any], who: list[str], timeout: float = CALL_TIMEOUT) -> list[Any]:
    """``ray.get(refs)``, turning an actor's death into :class:`ActorDied` naming it.

    Raises:
        ActorDied: an actor of ``refs`` (named by ``who``, in the same order) is gone.
        Exception: whatever else a call raised (e.g. ``GetTimeoutError``).
    """
    ray = import_ray()
    try:
        return list(ray.get(refs, timeout=timeout))
    except Exception as exc:
        if not is_actor_death(exc):
            raise
        for ref, name in zip(refs, who, strict=True):
            try:
                ray.get(ref, timeout=0)
            except Exception as inner:
                if is_actor_death(inner):
                    raise ActorDied(name, type(inner).__name__) from exc
        raise ActorDied("an actor", type(exc).__name__) from exc


def recover(
    store: CheckpointStore, plan: PhysicalPlan, worker: str, fall_back: bool
) -> Checkpoint | None:
    """The newest checkpoint, checked to be this application's; None if there is none.

    Raises:
        CheckpointError: the newest checkpoint is damaged (and not ``fall_back``), or it
            belongs to another application, worker name, number of key groups or hash.
    """
    checkpoint, notes = store.latest(fall_back=fall_back)
    for note in notes:
        log.warning("skipping a damaged checkpoint: %s", note)
    if checkpoint is None:
        return None
    if notes:
        log.warning(
            "recovering from an older checkpoint (%d): messages between it and the damaged "
            "one may be replayed, and any output they made again",
            checkpoint.id,
        )
    Manifest.of(checkpoint).check(
        app=plan.app_name,
        worker=worker,
        key_groups=plan.key_groups,
        where=f"checkpoint {checkpoint.path}",
        reader="this application",
    )
    return checkpoint


def take_checkpoint(
    n: int, d: Deployment, plan: PhysicalPlan, spec: AppSpec, store: CheckpointStore
) -> str | None:
    """Take and commit checkpoint ``n``; None when committed, else why it was aborted (the
    sinks were then told to abort their transactions, and the caller rolls back).

    One :class:`~wallaroo.resilience.round.CheckpointRound` (its parts: the sources' positions,
    then each worker's key groups; the barrier asks the sinks to vote), driven through the
    actors.

    Raises:
        ActorDied: an actor died during the checkpoint.
    """
    names = [name for name, _ in d.actors()]
    cround = rnd.CheckpointRound(
        app=plan.app_name,
        worker=spec.name,
        key_groups=plan.key_groups,
        sinks=[p.name for p in plan.sinks],
        parts=1 + len(d.workers),
        votes_on_barrier=True,
        backend="ray",
        workers=d.slots.workers,
    )
    sinks = {p.name: d.sinks[i] for i, p in enumerate(plan.sinks)}
    actions = cround.start(n, time_ns=time.time_ns())
    while not isinstance(action := actions.pop(0), rnd.Done):
        match action:
            case rnd.Capture():
                entries = call([s.barrier.remote(n) for s in d.sources], names[: len(d.sources)])
                actions += cround.captured(_sources_part(plan, entries))
                actions += _collect(n, d, plan, names, cround)
            case rnd.WriteCheckpoint():
                try:
                    store.write(action.manifest.to_json(), action.blobs)  # the commit point
                except CheckpointError as exc:
                    actions += cround.write_failed(str(exc))
                else:
                    actions += cround.written()
            case rnd.SendPhase2():
                for name, txn in action.txns.items():
                    sink = sinks[name]
                    (sink.commit if action.commit else sink.abort).remote(txn)
            case rnd.Acknowledge():
                for source, p in zip(d.sources, plan.sources, strict=True):
                    source.committed.remote(_source_entry(action.positions.get(p.name)))
            case rnd.Prune():
                store.prune()
            case rnd.Rollback():
                pass  # the coordinator redeploys from the last committed checkpoint
    return None if action.reason is None else _why(action.reason)


def _sources_part(plan: PhysicalPlan, entries: list[dict[str, Any]]) -> rnd.Snapshot:
    """The sources' barrier entries (``positions``, ``generator``) as the round's part 0."""
    positions, generators = {}, {}
    for p, entry in zip(plan.sources, entries, strict=True):
        if "positions" in entry:
            positions[p.name] = {int(k): int(v) for k, v in entry["positions"].items()}
        if "generator" in entry:
            gen = entry["generator"]
            generators[p.name] = GeneratorPosition(gen["started"], gen["next"])
    return rnd.Snapshot(0, sources=positions, generators=generators)


def _source_entry(positions: Mapping[int, int] | None) -> dict[str, Any]:
    """What :meth:`SourceActor.committed` takes."""
    return {} if positions is None else {"positions": {str(k): v for k, v in positions.items()}}


def _collect(
    n: int, d: Deployment, plan: PhysicalPlan, names: list[str], cround: rnd.CheckpointRound
) -> list[rnd.Action]:
    """Poll the workers for their parts and the sinks for their votes until the round has
    them all, or :data:`CHECKPOINT_TIMEOUT` passed."""
    deadline = time.monotonic() + CHECKPOINT_TIMEOUT
    while cround.phase is rnd.Phase.COLLECTING:
        if time.monotonic() > deadline:
            return cround.timeout()
        actions = _poll(n, d, plan, names, cround)
        if actions:
            return actions
        time.sleep(0.002)
    return []


def _poll(
    n: int, d: Deployment, plan: PhysicalPlan, names: list[str], cround: rnd.CheckpointRound
) -> list[rnd.Action]:
    """Ask the workers that have not handed their part, and the sinks that have not voted."""
    workers = [j for j in range(len(d.workers)) if not cround.has_part(j + 1)]
    sinks = [i for i in range(len(d.sinks)) if not cround.has_voted(plan.sinks[i].name)]
    refs = [d.workers[j].collect.remote(n) for j in workers]
    refs += [d.sinks[i].vote.remote(n) for i in sinks]
    offset = len(d.sources)
    who = [names[offset + j] for j in workers] + [f"sink actor {i}" for i in sinks]
    got = call(refs, who)
    actions: list[rnd.Action] = []
    for j, part in zip(workers, got[: len(workers)], strict=True):
        if part:
            snapshot = rnd.Snapshot(j + 1, blobs=tuple(part["blobs"]), error=part["error"])
            actions += cround.captured(snapshot)
    for i, vote in zip(sinks, got[len(workers) :], strict=True):
        if vote is not None:
            ok, entry = vote
            position = None if entry is None else SinkPosition(entry["offset"], entry["txn"])
            actions += cround.vote(plan.sinks[i].name, ok, position)
    return actions


def _why(reason: rnd.AbortReason) -> str:
    """The reason the coordinator logs (``checkpoint <n> aborted (<why>)``)."""
    if reason.kind is rnd.AbortKind.CAPTURE:
        return f"snapshot failed: {reason.detail}"
    if reason.kind is rnd.AbortKind.REFUSED:
        return f"sinks {list(reason.refused)} voted abort"
    if reason.kind is rnd.AbortKind.TIMEOUT:
        return f"not complete within {CHECKPOINT_TIMEOUT:g} s"
    return f"it could not be written: {reason.detail}"
