"""The embedded engine: every segment in this process, routed by direct calls.

It is synchronous and single-threaded: :meth:`LocalEngine.process` pushes one batch from a source
through every segment it reaches, down to the sinks, before it returns. Per-key order and per-
stream order follow from that. The worker process calls it from its event loop; the testing
harness calls it directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wallaroo.engine.clock import Clock, SystemClock
from wallaroo.engine.deadletter import DeadLetterLog, DeadLetterStatistics
from wallaroo.engine.segment import (
    SegmentRunner,
    SegmentStatistics,
    SinkPort,
    SinkRunner,
    SinkStatistics,
)
from wallaroo.engine.state import StateStatistics, StateStore
from wallaroo.engine.windows import WindowStatistics
from wallaroo.engine.wiring import Placement, WindowRunner, wire
from wallaroo.plan.physical import PhysicalPlan

__all__ = ["EngineStatistics", "LocalEngine", "engine_statistics"]


@dataclass(frozen=True, slots=True)
class EngineStatistics:
    """An engine's counters: per segment, sink, state store and window, and its dead letters."""

    segments: tuple[SegmentStatistics, ...]
    sinks: tuple[SinkStatistics, ...]
    states: tuple[StateStatistics, ...]
    dead_letters: DeadLetterStatistics
    windows: tuple[WindowStatistics, ...] = ()


def engine_statistics(
    segments: Mapping[int, SegmentRunner],
    sinks: Sequence[SinkRunner],
    states: Mapping[str, StateStore],
    dead_letters: DeadLetterLog,
    windows: Sequence[WindowRunner],
) -> EngineStatistics:
    """The counters of wired runners (segments in id order), wherever they run."""
    return EngineStatistics(
        tuple(segments[i].statistics() for i in sorted(segments)),
        tuple(s.statistics() for s in sinks),
        tuple(s.statistics() for s in states.values()),
        dead_letters.statistics(),
        tuple(w.statistics() for w in windows),
    )


class LocalEngine:
    """Runs a physical plan, or the part of it a placement puts here, in this process.

    Args:
        plan: the compiled plan.
        sinks: one port per sink of the plan, in plan order.
        placement: what runs here (see :func:`~wallaroo.engine.wiring.wire`); everything,
            routed by direct calls, when None. A Ray source actor places its source's first
            segment here and routes it to the workers.
        dead_letters: where failing messages go (in memory only by default).
        clock: the engine's clock.
        metrics: record latency histograms per segment and from source to sink (two clock
            readings per batch and segment, see
            :class:`~wallaroo.engine.segment.TimedSegmentRunner`). Off by default; the engine
            then runs exactly the code it runs without any metrics.

    Raises:
        ValueError: ``sinks`` does not give one port per sink of the plan.
    """

    def __init__(
        self,
        plan: PhysicalPlan,
        sinks: Sequence[SinkPort],
        *,
        placement: Placement | None = None,
        dead_letters: DeadLetterLog | None = None,
        clock: Clock | None = None,
        metrics: bool = False,
    ) -> None:
        self.plan = plan
        self.metrics = metrics
        self.dead_letters = dead_letters or DeadLetterLog()
        wired = wire(
            plan,
            sinks,
            placement,
            dead_letters=self.dead_letters,
            clock=clock or SystemClock(),
            metrics=metrics,
        )
        self.clock: Clock = wired.clock
        self.states: dict[str, StateStore] = wired.states
        self.sinks: list[SinkRunner] = wired.sinks
        self.segments: dict[int, SegmentRunner] = wired.segments
        self.windows: list[WindowRunner] = wired.windows

    def source_runner(self, source: int) -> SegmentRunner:
        """The runner of a source's first segment (call its ``run`` to push a batch)."""
        return self.segments[self.plan.sources[source].segment]

    def process(
        self,
        source: int,
        values: list[Any],
        keys: list[Any] | None = None,
        *,
        stream_id: int | None = None,
        message_ids: Sequence[int] | None = None,
    ) -> None:
        """Push one batch from source number ``source`` all the way through."""
        self.source_runner(source).run(values, keys, stream_id=stream_id, message_ids=message_ids)

    def tick(self) -> None:
        """Let time-driven work happen: windows whose input went idle fire. The worker calls
        it periodically; tests call it after moving a mock clock."""
        for window in self.windows:
            window.tick()

    def end_of_input(self) -> None:
        """No more input will come: fire every window that holds data."""
        for window in self.windows:
            window.flush()

    def restored(self) -> None:
        """State was replaced from a checkpoint: rebuild what derives from it."""
        for window in self.windows:
            window.rebuild()

    def statistics(self) -> EngineStatistics:
        """A snapshot of every segment's, sink's, state store's and window's counters, and of the
        dead-letter log's.
        """
        return engine_statistics(
            self.segments, self.sinks, self.states, self.dead_letters, self.windows
        )
