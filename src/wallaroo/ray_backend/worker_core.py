"""A worker's engine: every keyed segment, for the key groups the slot map gives it.

:class:`WorkerCore` is transport-neutral: the worker actor hands it the batches other actors
send (:meth:`deliver`) and the remote calls to make (``submit`` functions). It builds the
engine's own :class:`~wallaroo.engine.segment.SegmentRunner`, window runners and
:class:`~wallaroo.engine.state.StateStore` objects, with routes that send each message to the
owner of its key's group (this worker's own messages go to its input queue, like any other
sender's). Barriers are aligned per stage (:mod:`wallaroo.ray_backend.topology`); a stage's
snapshot is the key-group blobs of the checkpoint format (:mod:`wallaroo.resilience.state_codec`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from wallaroo.engine.clock import Clock, SystemClock
from wallaroo.engine.deadletter import DeadLetterLog
from wallaroo.engine.local import EngineStatistics, engine_statistics
from wallaroo.engine.segment import SegmentRunner, SinkRunner
from wallaroo.engine.state import StateStore
from wallaroo.engine.wiring import Placement, WindowRunner, build_states, wire
from wallaroo.loader import LoadedApplication
from wallaroo.plan.physical import PhysicalPlan
from wallaroo.ray_backend.aligner import BarrierAligner
from wallaroo.ray_backend.channels import (
    Barrier,
    Channel,
    Data,
    Item,
    Items,
    KeyedRoute,
    SinkChannelPort,
    Transport,
)
from wallaroo.ray_backend.slots import SlotMap
from wallaroo.ray_backend.topology import Edge, PlanGraph, worker_name
from wallaroo.resilience.manifest import blob_name
from wallaroo.resilience.state_codec import decode_group, encode_group

__all__ = ["WorkerCore"]

log = logging.getLogger("wallaroo.ray")
Submit = Callable[[Items], Any]


class WorkerCore:
    """Worker ``me`` of ``slots.workers``: its keyed segments, states, windows and channels.

    Args:
        loaded: the application (for its serialisation).
        plan: the compiled plan.
        me: this worker's index.
        slots: the slot map.
        dead: the dead-letter log.
        clock: the engine's clock.
        metrics: record the engine's latency histograms (see
            :class:`~wallaroo.engine.segment.TimedSegmentRunner`).
    """

    def __init__(
        self,
        loaded: LoadedApplication,
        plan: PhysicalPlan,
        me: int,
        slots: SlotMap,
        dead: DeadLetterLog,
        clock: Clock | None = None,
        *,
        metrics: bool = False,
    ) -> None:
        self.loaded = loaded
        self.metrics = metrics
        self.plan = plan
        self.me = me
        self.name = worker_name(me)
        self.slots = slots
        self.owned = slots.groups_of(me)
        self.graph = PlanGraph(plan)
        self.dead = dead
        self.clock: Clock = clock or SystemClock()
        self.states: dict[str, StateStore] = build_states(plan, self.owned)
        workers = slots.workers
        self.aligners = [
            BarrierAligner(self.graph.stage_inputs(i, workers, me))
            for i in range(len(self.graph.stages))
        ]
        self._stage_edges = [
            self.graph.stage_edges(i, workers, me) for i in range(len(self.graph.stages))
        ]
        self._work: deque[tuple[str, Item]] = deque()
        self._snapshots: dict[int, list[tuple[str, bytes]]] = {}
        self._stages_done: dict[int, set[int]] = {}
        self._edges_left: dict[int, dict[Edge, set[int]]] = {}
        self._failed: dict[int, str] = {}
        self.runners: dict[int, SegmentRunner] = {}
        self.windows: list[WindowRunner] = []
        self.sinks: list[SinkRunner] = []
        self._internal_logged = False
        self.worker_channels: list[Channel] = []
        self.sink_channels: list[Channel] = []

    # -- wiring -------------------------------------------------------------------------------
    def wire(
        self, workers: Sequence[Submit], sinks: Sequence[Submit], transport: Transport
    ) -> None:
        """Create the channels (one remote call function per worker and per sink) and the
        segment runners that use them."""
        self.worker_channels = [
            Channel(f"{self.name}->w{j}", submit, transport, blocking=False)
            for j, submit in enumerate(workers)
        ]
        self.sink_channels = [
            Channel(f"{self.name}->sink {j}", submit, transport, blocking=True)
            for j, submit in enumerate(sinks)
        ]
        wired = wire(
            self.plan,
            [SinkChannelPort(c) for c in self.sink_channels],
            Placement(
                segments=[seg.id for seg in self.graph.keyed],
                key_groups=self.owned,
                route=self._route,
            ),
            dead_letters=self.dead,
            clock=self.clock,
            metrics=self.metrics,
            states=self.states,
        )
        self.runners = wired.segments
        self.windows = wired.windows
        self.sinks = wired.sinks

    def _lost(self, exc: Exception, segment: int, values: list[Any]) -> None:
        """The engine failed on a whole batch (a bug, not a bad message): each of its messages
        becomes a dead letter, so none is lost silently; the traceback is logged once."""
        if not self._internal_logged:
            self._internal_logged = True
            log.exception(
                "%s: internal error in segment %d; its %d messages are dead letters (later "
                "ones are only summarised)",
                self.name,
                segment,
                len(values),
            )
        seg = self.plan.segments[segment]
        for value in values:
            self.dead.record(
                pipeline=seg.pipeline, stage=f"{seg.name} (internal error)", exc=exc, value=value
            )

    def _route(self, segment: int) -> KeyedRoute:
        return KeyedRoute(segment, self.slots, self.worker_channels, self._local, self.me)

    def _local(self, segment: int, values: list[Any], keys: list[Any], times: Any) -> None:
        self._work.append((self.name, Data(segment, values, keys, times)))

    # -- input --------------------------------------------------------------------------------
    def deliver(self, sender: str, items: Items) -> None:
        """Process a batch from ``sender`` (data and barriers, in order), then send."""
        self._work.extend((sender, item) for item in items)
        self._run()

    def tick(self) -> None:
        """Time passes: idle windows fire; queued batches between workers go out."""
        for window in self.windows:
            window.tick()
        self._run()

    def end_of_input(self) -> None:
        """No more input will come: every window holding data fires (the testing harness)."""
        for window in self.windows:
            window.flush()
        self._run()

    def pending(self) -> int:
        """Messages buffered, queued or in flight on this worker's channels."""
        channels = [*self.worker_channels, *self.sink_channels]
        return sum(c.buffered + c.queued + c.in_flight for c in channels)

    def state_objects(self) -> dict[str, dict[str, Any]]:
        """The state objects of the owned key groups, by state name, then by key."""
        return {name: dict(store.states) for name, store in self.states.items()}

    def engine_statistics(self) -> EngineStatistics:
        """This worker's part of the engine's counters (its keyed segments, sinks, states and
        windows, and its dead letters), as the embedded engine's."""
        return engine_statistics(self.runners, self.sinks, self.states, self.dead, self.windows)

    def _run(self) -> None:
        work = self._work
        runners, stage_of, aligners = self.runners, self.graph.stage_of, self.aligners
        while work:
            sender, item = work.popleft()
            stage = stage_of[item.segment]
            aligner = aligners[stage]
            if aligner.arrived and aligner.blocked(sender):
                aligner.hold(sender, item)
            elif isinstance(item, Data):
                try:
                    runners[item.segment].run(item.values, item.keys, times=item.times)
                except Exception as exc:
                    self._lost(exc, item.segment, item.values)
            elif aligner.barrier(sender, item.checkpoint_id):
                self._complete(stage, item.checkpoint_id)
        for channel in self.sink_channels:
            channel.flush()
        for channel in self.worker_channels:
            channel.flush()
            channel.pump()

    def _complete(self, stage: int, checkpoint_id: int) -> None:
        """Every input of ``stage`` delivered the barrier: snapshot, forward, release."""
        blobs = self._snapshots.setdefault(checkpoint_id, [])
        try:
            serialize = self.loaded.serialize
            for name in self.graph.stage_states[stage]:
                store = self.states[name]
                for group in self.owned:
                    states = store.snapshot_group(group)
                    if states:
                        blobs.append((blob_name(name, group), encode_group(states, serialize)))
        except Exception as exc:
            self._failed[checkpoint_id] = f"{type(exc).__name__}: {exc}"
            log.error("%s: snapshot of checkpoint %d failed: %s", self.name, checkpoint_id, exc)
        self._stages_done.setdefault(checkpoint_id, set()).add(stage)
        left = self._edges_left.setdefault(checkpoint_id, {})
        for edge in self._stage_edges[stage]:
            waiting = left.setdefault(edge, self._feeders(edge))
            waiting.discard(stage)
            if not waiting:
                self._forward(edge, checkpoint_id)
        held = self.aligners[stage].complete()
        self._work.extendleft(reversed(held))

    def _feeders(self, edge: Edge) -> set[int]:
        return {i for i, edges in enumerate(self._stage_edges) if edge in edges}

    def _forward(self, edge: Edge, checkpoint_id: int) -> None:
        kind, dest, segment = edge
        if kind == "k":
            self.sink_channels[dest].barrier(-1, checkpoint_id)
        elif dest == self.me:
            self._work.append((self.name, Barrier(segment, checkpoint_id)))
        else:
            self.worker_channels[dest].barrier(segment, checkpoint_id)

    # -- checkpoints ----------------------------------------------------------------------------
    def collect(self, checkpoint_id: int) -> dict[str, Any] | None:
        """This worker's part of checkpoint ``checkpoint_id``: None while stages still wait
        for barriers, else ``{"blobs": [(name, bytes)], "error": str | None}``."""
        done = self._stages_done.get(checkpoint_id, set())
        for stage, aligner in enumerate(self.aligners):
            if not aligner.inputs and stage not in done:  # nothing feeds it: no barrier comes
                aligner.barrier("", checkpoint_id)
                self._complete(stage, checkpoint_id)
                self._run()
                done = self._stages_done[checkpoint_id]
        if len(done) < len(self.aligners):
            return None
        self._stages_done.pop(checkpoint_id, None)
        self._edges_left.pop(checkpoint_id, None)
        for old in [n for n in self._snapshots if n < checkpoint_id]:
            del self._snapshots[old]
        return {
            "blobs": self._snapshots.pop(checkpoint_id, []),
            "error": self._failed.pop(checkpoint_id, None),
        }

    def restore(self, blobs: dict[str, dict[int, bytes]]) -> int:
        """Replace the state of the owned key groups with checkpoint blobs (state name ->
        group -> blob); return the number of keys restored."""
        owned = set(self.owned)
        restored = 0
        for name, store in self.states.items():
            for group in range(store.key_groups):
                store.drop_group(group)
            for group, blob in blobs.get(name, {}).items():
                if group in owned:
                    states = decode_group(blob, self.loaded.deserialize)
                    store.restore_group(group, states)
                    restored += len(states)
        for window in self.windows:
            window.rebuild()
        return restored

    def drain(self, timeout: float) -> bool:
        """Send everything and wait for the calls to finish (at shutdown)."""
        self._run()
        channels = [*self.worker_channels, *self.sink_channels]
        results = [c.drain(timeout) for c in channels]  # drain them all
        return all(results)

    def statistics(self) -> dict[str, Any]:
        """A snapshot of this worker: its key groups, its part of the engine's counters
        (``engine``: segments, sinks, states, windows, dead letters), and per channel
        ``(name, calls, messages, waits, in_flight, queued, broken)``.
        """
        return {
            "worker": self.name,
            "key_groups": len(self.owned),
            "engine": self.engine_statistics(),
            "dead_letters": self.dead.total,
            "channels": [
                (c.name, c.calls, c.messages, c.waits, c.in_flight, c.queued, c.broken)
                for c in [*self.worker_channels, *self.sink_channels]
            ],
        }
