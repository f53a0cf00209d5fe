"""One checkpoint across the actors, and finding the checkpoint to recover.

The checkpoint's file is the embedded worker's (:mod:`wallaroo.resilience.store`): key-group
blobs ``state/<state>/<group>`` and a manifest with the application, the worker name
(``--name``), the key groups and hash function, every source's positions, every generator's
next value and every connector sink's offset and transaction; plus ``"backend": "ray"`` and the
number of workers. So a checkpoint taken by either backend can be restored by the other, into
any number of workers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from wallaroo.engine.keys import HASH_FUNCTION
from wallaroo.errors import CheckpointError
from wallaroo.plan.physical import PhysicalPlan
from wallaroo.ray_backend._ray import import_ray, is_actor_death
from wallaroo.ray_backend.deploy import Deployment
from wallaroo.ray_backend.topology import AppSpec
from wallaroo.resilience.store import Checkpoint, CheckpointStore

__all__ = ["CALL_TIMEOUT", "CHECKPOINT_TIMEOUT", "ActorDied", "call", "recover", "take_checkpoint"]

CHECKPOINT_TIMEOUT = 30.0
CALL_TIMEOUT = 60.0
log = logging.getLogger("wallaroo.ray")
Votes = dict[int, tuple[bool, dict[str, Any] | None]]


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
    m = checkpoint.manifest
    if m.get("app") != plan.app_name or m.get("worker") != worker:
        raise CheckpointError(
            f"checkpoint {checkpoint.path} belongs to application {m.get('app')!r}, worker "
            f"{m.get('worker')!r}, not {plan.app_name!r}/{worker!r}; use another "
            "--resilience-dir or the same --name"
        )
    if m.get("key_groups") != plan.key_groups or m.get("hash") != HASH_FUNCTION:
        raise CheckpointError(
            f"checkpoint {checkpoint.path} uses {m.get('key_groups')} key groups hashed with "
            f"{m.get('hash')}; this application uses {plan.key_groups} and {HASH_FUNCTION}"
        )
    return checkpoint


def take_checkpoint(
    n: int, d: Deployment, plan: PhysicalPlan, spec: AppSpec, store: CheckpointStore
) -> str | None:
    """Take and commit checkpoint ``n``; None when committed, else why it was aborted (the
    sinks were then told to abort their transactions).

    Raises:
        ActorDied: an actor died during the checkpoint.
    """
    names = [name for name, _ in d.actors()]
    entries = call([s.barrier.remote(n) for s in d.sources], names[: len(d.sources)])
    parts: dict[int, dict[str, Any]] = {}
    votes: Votes = {}
    deadline = time.monotonic() + CHECKPOINT_TIMEOUT
    while len(parts) < len(d.workers) or len(votes) < len(d.sinks):
        if time.monotonic() > deadline:
            return _abort(d, votes, f"not complete within {CHECKPOINT_TIMEOUT:g} s")
        _poll(n, d, names, parts, votes)
        time.sleep(0.002)
    errors = [p["error"] for p in parts.values() if p["error"]]
    refused = [plan.sinks[i].name for i, (ok, _) in votes.items() if not ok]
    if errors or refused:
        why = f"snapshot failed: {errors[0]}" if errors else f"sinks {refused} voted abort"
        return _abort(d, votes, why)
    manifest, blobs = _manifest(n, d, plan, spec, entries, parts, votes)
    try:
        store.write(manifest, blobs)  # the commit point
    except CheckpointError as exc:
        return _abort(d, votes, f"it could not be written: {exc}")
    for i, (_, entry) in votes.items():
        if entry is not None:
            d.sinks[i].commit.remote(entry["txn"])
    for source, entry in zip(d.sources, entries, strict=True):
        source.committed.remote(entry)
    store.prune()
    return None


def _poll(
    n: int, d: Deployment, names: list[str], parts: dict[int, dict[str, Any]], votes: Votes
) -> None:
    """Ask the workers that have not handed their part, and the sinks that have not voted."""
    workers = [j for j in range(len(d.workers)) if j not in parts]
    sinks = [i for i in range(len(d.sinks)) if i not in votes]
    refs = [d.workers[j].collect.remote(n) for j in workers]
    refs += [d.sinks[i].vote.remote(n) for i in sinks]
    offset = len(d.sources)
    who = [names[offset + j] for j in workers] + [f"sink actor {i}" for i in sinks]
    got = call(refs, who)
    parts.update({j: p for j, p in zip(workers, got[: len(workers)], strict=True) if p})
    votes.update({i: v for i, v in zip(sinks, got[len(workers) :], strict=True) if v is not None})


def _abort(d: Deployment, votes: Votes, why: str) -> str:
    for i, (_, entry) in votes.items():
        if entry is not None:
            d.sinks[i].abort.remote(entry["txn"])
    return why


def _manifest(
    n: int,
    d: Deployment,
    plan: PhysicalPlan,
    spec: AppSpec,
    entries: list[dict[str, Any]],
    parts: Mapping[int, dict[str, Any]],
    votes: Votes,
) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    blobs: list[tuple[str, bytes]] = [b for j in sorted(parts) for b in parts[j]["blobs"]]
    states: dict[str, list[int]] = {}
    for name, _ in blobs:
        _, state, group = name.rsplit("/", 2)
        states.setdefault(state, []).append(int(group))
    sources = {p.name: e["positions"] for p, e in zip(plan.sources, entries, strict=True)
               if "positions" in e}  # fmt: skip
    generators = {p.name: e["generator"] for p, e in zip(plan.sources, entries, strict=True)
                  if "generator" in e}  # fmt: skip
    manifest = {
        "id": n,
        "app": plan.app_name,
        "worker": spec.name,
        "key_groups": plan.key_groups,
        "hash": HASH_FUNCTION,
        "time_ns": time.time_ns(),
        "states": {k: sorted(v) for k, v in states.items()},
        "sources": sources,
        "generators": generators,
        "sinks": {
            plan.sinks[i].name: entry
            for i, (_, entry) in sorted(votes.items())
            if entry is not None
        },
        "backend": "ray",
        "workers": d.slots.workers,
    }
    return manifest, blobs
