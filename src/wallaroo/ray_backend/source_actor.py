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

import asyncio
import base64
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wallaroo.configs import GenSourceConfig, SourceConnectorConfig, TCPSourceConfig
from wallaroo.engine.deadletter import DEFAULT_FILENAME, DeadLetterLog
from wallaroo.engine.local import LocalEngine
from wallaroo.engine.segment import SegmentRunner
from wallaroo.errors import ConfigurationError
from wallaroo.kafka import CustomKafkaSourceCLIParser, DefaultKafkaSourceCLIParser
from wallaroo.plan.physical import Exchange
from wallaroo.ray_backend._ray import RayTransport, actor_info, submitter
from wallaroo.ray_backend.channels import Channel, KeyedRoute, SinkChannelPort
from wallaroo.ray_backend.loop import LoopThread
from wallaroo.ray_backend.slots import SlotMap
from wallaroo.ray_backend.topology import AppSpec, PlanGraph, source_name
from wallaroo.worker.flow import Gate
from wallaroo.worker.generator import GeneratorSource
from wallaroo.worker.ingress import ConnectorSourceListener, TCPSourceListener
from wallaroo.worker.kafka import KafkaSource
from wallaroo.worker.runtime import MAX_FRAME_SIZE

__all__ = ["LINGER", "SourceActor", "deadletter_path"]

LINGER = 0.002
"""Seconds a partial batch waits for more messages before it is sent."""

log = logging.getLogger("wallaroo.ray")


def deadletter_path(spec: AppSpec) -> Path:
    base = spec.resilience_dir or os.path.join(spec.cwd, "wallaroo-deadletter")
    return Path(base) / DEFAULT_FILENAME


class _FlushingRunner(SegmentRunner):
    """The source segment's runner: after each batch, make sure its output leaves soon."""

    actor: SourceActor

    def run(
        self,
        values: list[Any],
        keys: list[Any] | None = None,
        *,
        times: list[int] | None = None,
        stream_id: int | None = None,
        message_ids: Sequence[int] | None = None,
    ) -> None:
        super().run(values, keys, times=times, stream_id=stream_id, message_ids=message_ids)
        self.actor.output_waiting()


class SourceActor:
    """Source ``index`` of the plan (see the module docstring).

    Args:
        spec: how to load the application.
        index: the source's index in the plan.
        slots: the slot map.
        restore: the checkpoint's manifest entries for this source (``positions``, and
            ``generator``), or None to start from the beginning.

    Raises:
        ConfigurationError: a source kind the Ray backend cannot run.
    """

    def __init__(
        self, spec: AppSpec, index: int, slots: SlotMap, restore: dict[str, Any] | None
    ) -> None:
        self.spec = spec
        self.loaded, self.plan = spec.load()
        self.graph = PlanGraph(self.plan)
        self.source = self.plan.sources[index]
        self.name = source_name(index)
        self.slots = slots
        self.restore_entry = restore or {}
        self.loop = LoopThread(f"source {self.source.name}")
        self.dead = DeadLetterLog(deadletter_path(spec), worker=f"{spec.name}.{self.name}", log=log)
        self.dead.serialize = self.loaded.serialize
        self.channels: list[Channel] = []
        self.ingress: Any = None
        self._flush_scheduled = False
        self.tasks: list[asyncio.Task[Any]] = []

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
        ports = [SinkChannelPort(c) for c in sink_channels]
        engine = LocalEngine(self.plan, ports, dead_letters=self.dead)
        seg = self.graph.segment[self.source.segment]
        route = (
            KeyedRoute(seg.target.segment, self.slots, worker_channels, None)
            if isinstance(seg.target, Exchange)
            else None
        )
        runner = _FlushingRunner(
            seg, self.plan, engine.states, engine.sinks, route, self.dead, engine.clock
        )
        runner.actor = self
        engine.segments[seg.id] = runner
        self.engine = engine
        self.edges: list[tuple[Channel, int]] = []
        for kind, dest, segment in self.graph.segment_edges(seg, self.slots.workers, None):
            channel = worker_channels[dest] if kind == "w" else sink_channels[dest]
            self.edges.append((channel, segment))
        self.gate = Gate()
        self.ingress = self._ingress(engine)
        self._restore()

    def _ingress(self, engine: LocalEngine) -> Any:
        config, plan, spec = self.source.config, self.source, self.spec
        args = (plan, engine, self.gate, log)
        if isinstance(config, SourceConnectorConfig):
            return ConnectorSourceListener(*args, MAX_FRAME_SIZE, resilient=spec.resilient)
        if isinstance(config, TCPSourceConfig):
            return TCPSourceListener(*args, MAX_FRAME_SIZE)
        if isinstance(config, GenSourceConfig):
            return GeneratorSource(*args)
        if isinstance(config, DefaultKafkaSourceCLIParser | CustomKafkaSourceCLIParser):
            resolved = (
                config.resolve(list(spec.app_args))
                if isinstance(config, DefaultKafkaSourceCLIParser)
                else config
            )
            return KafkaSource(
                plan,
                resolved,
                engine,
                self.gate,
                log,
                group_id=f"wallaroo-{self.plan.app_name}-{plan.name}",
                drain=lambda timeout: _in_loop(self.drain, timeout),
                resilient=spec.resilient,
            )
        raise ConfigurationError(
            f"the Ray backend cannot run source '{plan.name}' ({type(config).__name__})"
        )

    def _restore(self) -> None:
        entry = self.restore_entry
        if isinstance(self.ingress, GeneratorSource):
            gen = entry.get("generator")
            if gen is not None:
                value = gen["next"]
                decoded = (
                    None if value is None else self.loaded.deserialize(base64.b64decode(value))
                )
                self.ingress.restore(bool(gen["started"]), decoded)
        elif "positions" in entry:
            positions = {int(k): int(v) for k, v in entry["positions"].items()}
            self.ingress.restore(positions)

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
        """Called (in the loop) after each batch: send partial batches in ``LINGER``."""
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
        ingress = self.ingress
        if isinstance(ingress, GeneratorSource):
            started, value = ingress.position()
            encoded = (
                None
                if value is None
                else base64.b64encode(self.loaded.serialize(value)).decode("ascii")
            )
            entry["generator"] = {"started": started, "next": encoded}
        elif isinstance(ingress, ConnectorSourceListener | KafkaSource):
            entry["positions"] = {str(k): v for k, v in ingress.positions().items()}
        for channel, segment in self.edges:
            channel.barrier(segment, checkpoint_id)
        self._flush()
        return entry

    def committed(self, entry: dict[str, Any]) -> None:
        """The checkpoint holding ``entry`` is durable: acknowledge its positions."""
        if "positions" in entry and isinstance(self.ingress, ConnectorSourceListener | KafkaSource):
            positions = {int(k): int(v) for k, v in entry["positions"].items()}
            self.loop.call(self.ingress.committed, positions)

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
        return self.name

    def statistics(self) -> dict[str, Any]:
        def collect() -> dict[str, Any]:
            return {
                "source": self.source.name,
                "ingress": self.ingress.statistics() if self.ingress is not None else None,
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
    where = actor.source.name
    if isinstance(ingress, ConnectorSourceListener | TCPSourceListener):
        config = actor.source.config
        host, port = await _listen(actor, ingress, config.host, config.port, retry)
        where = f"{host}:{port}"
        log.info("%s '%s' listening on %s", ingress.kind, actor.source.name, where)
        if isinstance(ingress, ConnectorSourceListener):
            actor.tasks.append(asyncio.create_task(ingress.ack_timer()))
    elif isinstance(ingress, GeneratorSource | KafkaSource):
        actor.tasks.append(asyncio.create_task(ingress.run()))
    return where


async def _listen(
    actor: SourceActor, ingress: Any, host: str, port: int, retry: float
) -> tuple[str, int]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry
    while True:
        try:
            address: tuple[str, int] = await ingress.start(host, port)
        except OSError as exc:
            if loop.time() >= deadline:
                raise ConfigurationError(
                    f"{ingress.kind} '{actor.source.name}' cannot listen on "
                    f"{host}:{port}: {exc.strerror or exc}"
                ) from exc
            await asyncio.sleep(0.1)
            continue
        return address


async def _stop(actor: SourceActor, timeout: float) -> bool:
    for task in actor.tasks:
        task.cancel()
    if isinstance(actor.ingress, ConnectorSourceListener | TCPSourceListener):
        await actor.ingress.stop()
    drained = actor.drain(timeout)
    actor.dead.close()
    return drained
