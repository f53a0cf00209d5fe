"""Creating and removing one incarnation of the application's actors.

:func:`deploy` places the actors for a slot map of ``workers`` workers, restores them from a
checkpoint (or starts them empty), wires their channels and starts the sinks' connections and
the sources' listeners. :meth:`Deployment.teardown` kills them all and waits until they are gone
(so a new incarnation can listen on the same ports).

Placement: source and sink actors are pinned to the driver's node (connectors are configured
with its addresses; they use no CPU reservation); worker actors are spread over the cluster's
nodes, each reserving ``min(1, CPUs / workers)`` CPUs so that any number of workers fits.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from wallaroo.plan.physical import PhysicalPlan
from wallaroo.ray_backend._ray import import_ray, is_actor_death
from wallaroo.ray_backend.records import SourceStart
from wallaroo.ray_backend.sink_actor import SinkActor
from wallaroo.ray_backend.slots import SlotMap
from wallaroo.ray_backend.source_actor import SourceActor
from wallaroo.ray_backend.topology import AppSpec, PlanGraph
from wallaroo.ray_backend.worker_actor import WorkerActor
from wallaroo.resilience.manifest import Manifest, blob_name
from wallaroo.resilience.store import Checkpoint

__all__ = ["DEPLOY_TIMEOUT", "LISTEN_RETRY", "Deployment", "deploy"]

DEPLOY_TIMEOUT = 120.0
LISTEN_RETRY = 30.0
log = logging.getLogger("wallaroo.ray")
_classes: dict[str, Any] = {}


def _remote(cls: type, **options: Any) -> Any:
    """``ray.remote(cls)`` with retries off, made once per class."""
    ray = import_ray()
    remote = _classes.get(cls.__name__)
    if remote is None:
        remote = _classes[cls.__name__] = ray.remote(max_restarts=0, max_task_retries=0)(cls)
    return remote.options(**options)


@dataclass
class Deployment:
    """The live actors of one incarnation, and the slot map they use."""

    slots: SlotMap
    sources: list[Any]
    workers: list[Any]
    sinks: list[Any]
    addresses: list[str] = field(default_factory=list)

    def actors(self) -> list[tuple[str, Any]]:
        """Every actor with a name for log lines (``source 0``, ``worker 1``, ``sink 0``)."""
        return [
            *((f"source actor s{i}", a) for i, a in enumerate(self.sources)),
            *((f"worker actor w{i}", a) for i, a in enumerate(self.workers)),
            *((f"sink actor {i}", a) for i, a in enumerate(self.sinks)),
        ]

    def teardown(self, timeout: float = 30.0) -> None:
        """Kill every actor and wait (up to ``timeout``) until each is gone."""
        ray = import_ray()
        actors = [a for _, a in self.actors()]
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception as exc:  # already gone
                log.debug("kill: %s", exc)
        deadline = time.monotonic() + timeout
        alive = actors
        while alive and time.monotonic() < deadline:
            still = []
            for actor in alive:
                try:
                    ray.get(actor.ping.remote(), timeout=1.0)
                except Exception as exc:
                    if not is_actor_death(exc):
                        still.append(actor)
                else:
                    still.append(actor)
            alive = still
            if alive:
                time.sleep(0.05)
        self.sources, self.workers, self.sinks = [], [], []


def worker_cpus(workers: int) -> float:
    """CPUs each worker actor reserves: a whole one when there are enough, else a share."""
    ray = import_ray()
    alive = [n for n in ray.nodes() if n.get("Alive")]
    total = sum(float(n.get("Resources", {}).get("CPU", 0.0)) for n in alive) or 1.0
    return max(0.01, min(1.0, math.floor(total / workers * 100) / 100))


def _blobs_for(
    checkpoint: Checkpoint, manifest: Manifest, slots: SlotMap, worker: int
) -> dict[str, dict[int, bytes]]:
    """State name -> key group -> blob, for the key groups ``worker`` owns."""
    owned = set(slots.groups_of(worker))
    found: dict[str, dict[int, bytes]] = {}
    for name, groups in manifest.states.items():
        for group in groups:
            if group in owned:
                found.setdefault(name, {})[group] = checkpoint.blob(blob_name(name, group))
    return found


def _source_start(manifest: Manifest, name: str) -> SourceStart:
    return SourceStart(manifest.sources.get(name), manifest.generators.get(name))


def deploy(
    spec: AppSpec,
    plan: PhysicalPlan,
    workers: int,
    checkpoint: Checkpoint | None,
    *,
    listen_retry: float = LISTEN_RETRY,
) -> Deployment:
    """Create, restore, wire and start every actor (see the module docstring).

    ``listen_retry``: seconds a source keeps trying an address that is taken (after a
    rollback, the previous incarnation may hold it for a moment).

    Raises:
        ConfigurationError: a source cannot listen, a source or sink kind is not supported.
        RayActorError: an actor died while starting (the caller retries or gives up).
    """
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    graph = PlanGraph(plan)
    slots = SlotMap.even(plan.key_groups, workers)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    pinned = {"num_cpus": 0, "scheduling_strategy": here}
    manifest = Manifest.of(checkpoint) if checkpoint is not None else None
    sinks = [
        _remote(SinkActor, **pinned).remote(
            spec,
            p.index,
            graph.sink_inputs(p.index, workers),
            manifest.sinks.get(p.name) if manifest is not None else None,
        )
        for p in plan.sinks
    ]
    cpus = worker_cpus(workers)
    worker_actors = [
        _remote(WorkerActor, num_cpus=cpus, scheduling_strategy="SPREAD").remote(spec, j, slots)
        for j in range(workers)
    ]
    sources = [
        _remote(SourceActor, **pinned).remote(
            spec, s.index, slots, _source_start(manifest, s.name) if manifest else None
        )
        for s in plan.sources
    ]
    deployment = Deployment(slots, sources, worker_actors, sinks)
    try:
        if checkpoint is not None and manifest is not None:
            restored = ray.get(
                [
                    w.restore.remote(_blobs_for(checkpoint, manifest, slots, j))
                    for j, w in enumerate(worker_actors)
                ],
                timeout=DEPLOY_TIMEOUT,
            )
            log.debug("restored %d keys over %d workers", sum(restored), workers)
        wiring = [a.wire.remote(worker_actors, sinks) for a in [*worker_actors, *sources]]
        ray.get(wiring, timeout=DEPLOY_TIMEOUT)
        ray.get([k.start.remote() for k in sinks], timeout=DEPLOY_TIMEOUT)
        deployment.addresses = ray.get(
            [s.start.remote(listen_retry) for s in sources], timeout=DEPLOY_TIMEOUT
        )
    except BaseException:
        deployment.teardown()
        raise
    return deployment
