"""The testing harness's Ray mode: ``Harness(app, backend="ray", workers=2)``.

The application's keyed segments run in real worker actors (:class:`WorkerActor`, the
backend's own, wired by the one wiring), so a behaviour that differs between the backends shows
in the same test. What differs from a deployment: the source segments run in this process
(the harness pushes into them, as a source actor's ingress does), and each sink is a
:class:`CollectorActor` that keeps what it receives. The actors are made once per process and
set up again for each harness (Ray's slower start is paid once); they reserve no CPU, so a
Ray run beside them is scheduled as without them.

:meth:`RayEngine.settle` makes a push synchronous: it flushes this process's channels, then lets
every worker send what it holds and wait for its calls, until no message is buffered, queued
or in flight anywhere; only then are the collectors' payloads read.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from types import ModuleType
from typing import Any

from wallaroo.decorators import by_value_reduction
from wallaroo.engine.deadletter import DeadLetter, DeadLetterLog
from wallaroo.engine.local import EngineStatistics, LocalEngine
from wallaroo.engine.segment import SegmentRunner
from wallaroo.engine.wiring import Placement
from wallaroo.plan.physical import PhysicalPlan
from wallaroo.ray_backend._ray import RayTransport, import_ray, init_ray, submitter
from wallaroo.ray_backend.channels import Channel, Data, Items, KeyedRoute, SinkChannelPort
from wallaroo.ray_backend.deploy import _remote
from wallaroo.ray_backend.slots import SlotMap
from wallaroo.ray_backend.statistics import merge_engines
from wallaroo.ray_backend.topology import AppSpec
from wallaroo.ray_backend.worker_actor import WorkerActor

__all__ = ["CollectorActor", "RayEngine"]

log = logging.getLogger("wallaroo.testing")

SETTLE_TIMEOUT = 60.0
"""Seconds a push waits for the workers to hand on what it caused, at most."""

_pool: dict[str, list[Any]] = {"workers": [], "collectors": []}


class CollectorActor:
    """A sink that keeps every payload it receives (the harness's ``ListSink`` on Ray)."""

    def __init__(self) -> None:
        self.payloads: list[Any] = []

    def reset(self) -> None:
        """Forget what was received (a new harness)."""
        self.payloads = []

    def write(self, _sender: str, items: Items) -> None:
        """Keep the payloads of ``items`` (barriers are not used by the harness)."""
        for item in items:
            if isinstance(item, Data):
                self.payloads.extend(item.values)

    def take(self) -> list[Any]:
        """The payloads received since the last call."""
        taken, self.payloads = self.payloads, []
        return taken


def _actors(kind: str, cls: type, n: int) -> list[Any]:
    """``n`` pooled actors of ``cls`` (made on first use, kept while this process stays
    connected to the same Ray cluster: after a ``ray.shutdown()`` the pool starts again)."""
    context = import_ray().get_runtime_context()
    job = f"{context.gcs_address} {context.get_node_id()}"  # a new cluster: a new node id
    if _pool.get("job") != [job]:
        _pool.update(job=[job], workers=[], collectors=[])
    pool = _pool[kind]
    while len(pool) < n:
        pool.append(_remote(cls, num_cpus=0).remote())
    return pool[:n]


class RayEngine:
    """Runs ``plan`` with its keyed segments on ``workers`` Ray worker actors.

    Offers what the harness uses of :class:`~wallaroo.engine.local.LocalEngine`
    (``source_runner``, ``process``, ``tick``, ``end_of_input``, ``statistics``), plus
    :meth:`settle`, :meth:`outputs` and :meth:`contents`.

    Args:
        app: what the harness was given (a module name, a module, a function or a built
            application); it is pickled for the actors.
        argv: what ``application_setup(args)`` receives.
        plan: the harness's compiled plan.
        workers: the number of worker actors.
        dead_letters: the harness's dead-letter log (this process's source segments').
        dead_letter_path: the actors' dead-letter file too, or None for memory only.

    Raises:
        ConfigurationError: Ray is missing or cannot start.
        ValueError: more workers than key groups.
    """

    def __init__(
        self,
        app: Any,
        argv: Sequence[str],
        plan: PhysicalPlan,
        *,
        workers: int,
        dead_letters: DeadLetterLog,
        dead_letter_path: str | None = None,
    ) -> None:
        if not 1 <= workers <= plan.key_groups:
            raise ValueError(f"workers must be 1..{plan.key_groups}, got {workers}")
        ray = import_ray()
        init_ray(None)
        self.plan = plan
        self.dead_letters = dead_letters
        self.slots = slots = SlotMap.even(plan.key_groups, workers)
        spec = _spec(app, argv, plan.key_groups)
        self.workers = _actors("workers", WorkerActor, workers)
        self.collectors = _actors("collectors", CollectorActor, len(plan.sinks))
        path = os.path.abspath(dead_letter_path) if dead_letter_path else None
        ray.get(
            [w.setup.remote(spec, j, slots, path) for j, w in enumerate(self.workers)]
            + [c.reset.remote() for c in self.collectors]
        )
        ray.get([w.wire.remote(self.workers, self.collectors) for w in self.workers])
        transport = RayTransport()
        worker_channels = [
            Channel(f"harness->w{j}", submitter(w.deliver, "harness"), transport, blocking=True)
            for j, w in enumerate(self.workers)
        ]
        sink_channels = [
            Channel(f"harness->sink {j}", submitter(c.write, "harness"), transport, blocking=True)
            for j, c in enumerate(self.collectors)
        ]
        self.channels = [*worker_channels, *sink_channels]
        self.local = LocalEngine(
            plan,
            [SinkChannelPort(c) for c in sink_channels],
            placement=Placement(
                segments=[s.segment for s in plan.sources],
                key_groups=(),
                route=lambda target: KeyedRoute(target, slots, worker_channels, None),
            ),
            dead_letters=dead_letters,
        )

    def source_runner(self, source: int) -> SegmentRunner:
        """The runner of a source's first segment (in this process)."""
        return self.local.source_runner(source)

    def process(self, source: int, values: list[Any], *args: Any, **kwargs: Any) -> None:
        """Push one batch from source number ``source`` into its first segment (the arguments
        of :meth:`LocalEngine.process`)."""
        self.local.process(source, values, *args, **kwargs)

    def tick(self) -> None:
        """Every worker fires its idle windows; then :meth:`settle`."""
        import_ray().get([w.tick.remote() for w in self.workers])
        self.settle()

    def end_of_input(self) -> None:
        """Every worker fires every window holding data; then :meth:`settle`."""
        import_ray().get([w.end_of_input.remote() for w in self.workers])
        self.settle()

    def settle(self) -> None:
        """Return once everything pushed so far has reached the collectors.

        Raises:
            TimeoutError: the workers still hold messages after :data:`SETTLE_TIMEOUT` s.
        """
        ray = import_ray()
        for channel in self.channels:
            channel.flush()
        for channel in self.channels:
            channel.drain(SETTLE_TIMEOUT)
        for _ in range(1000):
            pending = ray.get([w.settle.remote(SETTLE_TIMEOUT) for w in self.workers])
            if not any(pending):
                return
        raise TimeoutError(f"the Ray workers still hold {sum(pending)} messages")

    def outputs(self) -> list[list[Any]]:
        """Per sink, the payloads received since the last call."""
        return list(import_ray().get([c.take.remote() for c in self.collectors]))

    def contents(self) -> tuple[dict[str, dict[str, Any]], tuple[DeadLetter, ...]]:
        """State objects (by state name, then key) and dead letters, over every worker; the
        dead letters of this process's source segments first."""
        parts = import_ray().get([w.contents.remote() for w in self.workers])
        states: dict[str, dict[str, Any]] = {s.name: {} for s in self.plan.states}
        letters = list(self.dead_letters.records)
        for part in parts:
            for name, objects in part["states"].items():
                states.setdefault(name, {}).update(objects)
            letters += part["dead_letters"]
        return states, tuple(letters)

    def statistics(self) -> EngineStatistics:
        """The counters of this process's segments and of every worker's, merged."""
        parts = import_ray().get([w.statistics.remote() for w in self.workers])
        return merge_engines(self.plan, [self.local.statistics(), *(p["engine"] for p in parts)])


def _spec(app: Any, argv: Sequence[str], key_groups: int) -> AppSpec:
    """A spec that ships ``app`` itself (a module travels by name)."""
    if isinstance(app, str) and app in sys.modules:
        app = sys.modules[app]
    if isinstance(app, ModuleType) and getattr(app, "__file__", None) is None:
        app = app.application_setup  # a module made in memory: its function travels
    module = app if isinstance(app, str) else app.__name__ if isinstance(app, ModuleType) else ""
    spec = AppSpec.here(
        module,
        list(argv),
        list(argv),
        name="testing",
        resilience_dir=None,
        resilient=False,
        key_groups=key_groups,
    )
    return spec if module else replace(spec, application=_pickled(app))


def _pickled(app: Any) -> bytes:
    """``app`` pickled with Ray's cloudpickle, decorated objects of ``__main__`` by value
    (their by-name reduction could not be resolved in an actor)."""
    import ray.cloudpickle

    class Pickler(ray.cloudpickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            reduced = by_value_reduction(obj)
            return reduced or super().reducer_override(obj)  # type: ignore[no-untyped-call]

    out = io.BytesIO()
    Pickler(out).dump(app)  # type: ignore[no-untyped-call]
    return out.getvalue()
