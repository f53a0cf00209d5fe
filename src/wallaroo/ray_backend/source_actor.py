"""The source actor: one per source, owning its listener (or generator, or Kafka consumer).

It reuses the embedded worker's ingress classes unchanged: they run in an event loop in a
thread of the actor (:class:`~wallaroo.ray_backend.loop.LoopThread`) and push batches through
the source's segment. That segment is the engine's own
:class:`~wallaroo.engine.segment.SegmentRunner`, whose route is a
:class:`~wallaroo.ray_backend.channels.KeyedRoute` to the workers owning the keys (or the sink
actors, for a segment that ends in sinks). Batches leave when full or 2 ms after the first
message waiting; a full channel blocks the loop, so connectors run out of credits and TCP
senders are pushed back, as with a slow embedded worker.

The coordinator calls :meth:`SourceActor.barrier` to inject a checkpoint barrier between two
batches: it records the source's positions (connector streams' points of reference, a
generator's next value, Kafka offsets) and sends the barrier on every channel after the data
before it.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

from wallaroo.engine.deadletter import DEFAULT_FILENAME, DeadLetterLog
from wallaroo.engine.directories import deadletter_directory
from wallaroo.engine.local import LocalEngine
from wallaroo.engine.wiring import Placement
from wallaroo.ray_backend._ray import RayTransport, actor_info, submitter
from wallaroo.ray_backend.channels import Channel, KeyedRoute, SinkChannelPort
from wallaroo.ray_backend.loop import LoopThread
from wallaroo.ray_backend.records import SourceStart
from wallaroo.ray_backend.slots import SlotMap
from wallaroo.ray_backend.topology import AppSpec, PlanGraph, source_name
from wallaroo.worker.checkpointing import ReplayableSource
from wallaroo.worker.flow import Gate
from wallaroo.worker.generator import GeneratorSource
from wallaroo.worker.kinds import Host, Ingress, source_kind

__all__ = ["LINGER", "SourceActor", "deadletter_path"]

LINGER = 0.002
"""Seconds a partial batch waits for more messages before it is sent."""

log = logging.getLogger("wallaroo.ray")


def deadletter_path(spec: AppSpec) -> Path:
    """The dead-letter file every actor of ``spec`` appends to: in its resilience directory,
    else ``wallaroo-deadletter`` in the driver's working directory.
    """
    return deadletter_directory(spec.resilience_dir, spec.cwd) / DEFAULT_FILENAME


class SourceActor:
    """Source ``index`` of the plan (see the module docstring).

    Args:
        spec: how to load the application.
        index: the source's index in the plan.
        slots: the slot map.
        restore: where the checkpoint restored puts this source, or None to start from the
            beginning.

    Raises:
        ConfigurationError: a source kind the Ray backend cannot run.
    """

    def __init__(
        self, spec: AppSpec, index: int, slots: SlotMap, restore: SourceStart | None
    ) -> None:
        self.spec = spec
        self.loaded, self.plan = spec.load()
        self.graph = PlanGraph(self.plan)
        self.source = self.plan.sources[index]
        self.name = source_name(index)
        self.slots = slots
        self.start_at = restore or SourceStart()
        self.loop = LoopThread(f"source {self.source.name}")
        self.dead = DeadLetterLog(deadletter_path(spec), worker=f"{spec.name}.{self.name}", log=log)
        self.dead.serialize = self.loaded.serialize
        self.channels: list[Channel] = []
        self.ingress: Ingress | None = None
        self._flush_scheduled = False

    # -- set-up ---------------------------------------------------------------------------------
    def wire(self, workers: list[Any], sinks: list[Any]) -> None:
        """Create the channels to the worker and sink actors, the runner and the ingress."""
        self.loop.call(self._wire, workers, sinks)

    def _wire(self, workers: list[Any], sinks: list[Any]) -> None:
        transport = RayTransport()
        me = self.name
        worker_channels = [
            Channel(f"{me}->w{j}", submitter(w.deliver, me), transport, blocking=True)
            for j, w in enumerate(workers)
        ]
        sink_channels = [
            Channel(f"{me}->sink {j}", submitter(s.write, me), transport, blocking=True)
            for j, s in enumerate(sinks)
        ]
        self.channels = worker_channels + sink_channels
        for channel in self.channels:
            channel.on_buffered = self.output_waiting
        seg = self.graph.segment[self.source.segment]
        self.engine = LocalEngine(
            self.plan,
            [SinkChannelPort(c) for c in sink_channels],
            placement=Placement(
                segments=[seg.id],
                key_groups=(),
                route=lambda target: KeyedRoute(target, self.slots, worker_channels, None),
            ),
            dead_letters=self.dead,
            metrics=self.spec.metrics,
        )
        self.edges: list[tuple[Channel, int]] = []
        for kind, dest, segment in self.graph.segment_edges(seg, self.slots.workers, None):
            channel = worker_channels[dest] if kind == "w" else sink_channels[dest]
            self.edges.append((channel, segment))
        self.gate = Gate()
        self.ingress = self._ingress(self.engine)
        self._restore()

    def _ingress(self, engine: LocalEngine) -> Ingress:
        spec = self.spec
        host = Host(
            app_name=self.plan.app_name,
            worker_name=f"{spec.name}.{self.name}",
            app_args=tuple(spec.app_args),
            gate=self.gate,
            log=log,
            dead_letters=self.dead,
            resilient=spec.resilient,
            drain=lambda timeout: _in_loop(self.drain, timeout),
            backend="the Ray backend",
        )
        return source_kind(self.source, host.backend).ingress(self.source, engine, host)

    def _restore(self) -> None:
        start = self.start_at
        ingress: object = self.ingress
        if isinstance(ingress, GeneratorSource):
            gen = start.generator
            if gen is not None:
                value = gen.next
                decoded = (
                    None if value is None else self.loaded.deserialize(base64.b64decode(value))
                )
                ingress.restore(gen.started, decoded)
        elif start.positions is not None and isinstance(ingress, ReplayableSource):
            ingress.restore(dict(start.positions))

    def start(self, retry: float) -> str:
        """Start listening (or generating); return ``host:port`` or the source's name.

        Args:
            retry: seconds to keep trying an address that is taken (the previous incarnation
                of this source may still hold it for a moment after a rollback).

        Raises:
            ConfigurationError: the address stayed taken for ``retry`` seconds.
        """
        return self.loop.run(_start(self, retry))

    # -- data ---------------------------------------------------------------------------------
    def output_waiting(self) -> None:
        """Called (in the loop) when a channel starts buffering: send partial batches in
        ``LINGER``."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.loop.call_later(LINGER, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        for channel in self.channels:
            channel.flush()

    def drain(self, timeout: float) -> bool:
        """Send everything buffered and wait for the calls (in the loop's thread)."""
        results = [c.drain(timeout) for c in self.channels]  # drain them all
        return all(results)

    # -- checkpoints ----------------------------------------------------------------------------
    def barrier(self, checkpoint_id: int) -> dict[str, Any]:
        """Inject the barrier of ``checkpoint_id``; return this source's positions."""
        return self.loop.call(self._barrier, checkpoint_id)

    def _barrier(self, checkpoint_id: int) -> dict[str, Any]:
        entry: dict[str, Any] = {}
        ingress: object = self.ingress
        if isinstance(ingress, GeneratorSource):
            started, value = ingress.position()
            encoded = (
                None
                if value is None
                else base64.b64encode(self.loaded.serialize(value)).decode("ascii")
            )
            entry["generator"] = {"started": started, "next": encoded}
        elif isinstance(ingress, ReplayableSource):
            entry["positions"] = {str(k): v for k, v in ingress.positions().items()}
        for channel, segment in self.edges:
            channel.barrier(segment, checkpoint_id)
        self._flush()
        return entry

    def committed(self, entry: dict[str, Any]) -> None:
        """The checkpoint holding ``entry`` is durable: acknowledge its positions."""
        ingress: object = self.ingress
        if "positions" in entry and isinstance(ingress, ReplayableSource):
            positions = {int(k): int(v) for k, v in entry["positions"].items()}
            self.loop.call(ingress.committed, positions)

    def pause(self) -> None:
        """Stop reading input (before a scale checkpoint)."""
        self.loop.call(self.gate.block, "scale")

    def stop(self, timeout: float) -> bool:
        """Stop listening and send everything; True if every channel drained."""
        return self.loop.run(_stop(self, timeout))

    def info(self) -> dict[str, Any]:
        """This actor's name, process id and node."""
        return actor_info(self.name)

    def ping(self) -> str:
        """This actor's name (a liveness check)."""
        return self.name

    def statistics(self) -> dict[str, Any]:
        """The source's counters, its engine's (latency histograms included) and its
        channels'."""

        def collect() -> dict[str, Any]:
            return {
                "source": self.source.name,
                "ingress": self.ingress.statistics() if self.ingress is not None else None,
                "engine": self.engine.statistics(),
                "dead_letters": self.dead.total,
                "channels": [
                    (c.name, c.calls, c.messages, c.waits, c.in_flight, c.broken)
                    for c in self.channels
                ],
            }

        return self.loop.call(collect)


# Coroutines of the actor's loop. They are functions, not methods: Ray would take an actor
# class with ``async def`` methods for an asyncio actor, which gives up the call order.


async def _in_loop(fn: Any, *args: Any) -> Any:
    return fn(*args)


async def _start(actor: SourceActor, retry: float) -> str:
    ingress = actor.ingress
    assert ingress is not None, "wire() comes first"
    where = await ingress.open(retry)
    actor.loop.background(ingress.background())
    return where


async def _stop(actor: SourceActor, timeout: float) -> bool:
    await actor.loop.end_background()
    if actor.ingress is not None:
        await actor.ingress.stop()
    drained = actor.drain(timeout)
    if actor.ingress is not None:
        await actor.ingress.finish(commit=drained)
    actor.dead.close()
    return drained
