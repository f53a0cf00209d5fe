"""The embedded engine: every segment in this process, routed by direct calls.

It is synchronous and single-threaded: :meth:`LocalEngine.process` pushes one batch from a source
through every segment it reaches, down to the sinks, before it returns. Per-key order and per-
stream order follow from that. The worker process calls it from its event loop; the testing
harness calls it directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wallaroo.engine.clock import Clock, SystemClock
from wallaroo.engine.deadletter import DeadLetterLog, DeadLetterStatistics
from wallaroo.engine.segment import (
    Route,
    SegmentRunner,
    SegmentStatistics,
    SinkPort,
    SinkRunner,
    SinkStatistics,
    TimedSegmentRunner,
)
from wallaroo.engine.state import StateStatistics, StateStore
from wallaroo.engine.windows import (
    CountWindowRunner,
    RangeWindowRunner,
    WindowState,
    WindowStatistics,
)
from wallaroo.metrics.histogram import LatencyHistogram
from wallaroo.plan.physical import Exchange, PhysicalPlan, ToSinks, ToWindow
from wallaroo.windows import RangeWindows

__all__ = ["EngineStatistics", "LocalEngine"]


@dataclass(frozen=True, slots=True)
class EngineStatistics:
    segments: tuple[SegmentStatistics, ...]
    sinks: tuple[SinkStatistics, ...]
    states: tuple[StateStatistics, ...]
    dead_letters: DeadLetterStatistics
    windows: tuple[WindowStatistics, ...] = ()


class _DirectRoute:
    __slots__ = ("run",)

    def __init__(self, runner: SegmentRunner) -> None:
        self.run = runner.run

    def send(self, values: list[Any], keys: list[str], times: list[int] | None = None) -> None:
        self.run(values, keys, times=times)


class LocalEngine:
    """Runs a physical plan in this process.

    Args:
        plan: the compiled plan.
        sinks: one port per sink of the plan, in plan order.
        dead_letters: where failing messages go (in memory only by default).
        clock: the engine's clock.
        metrics: record latency histograms per segment and from source to sink (two clock
            readings per batch and segment, see :class:`TimedSegmentRunner`). Off by default;
            the engine then runs exactly the code it runs without any metrics.
    """

    def __init__(
        self,
        plan: PhysicalPlan,
        sinks: Sequence[SinkPort],
        *,
        dead_letters: DeadLetterLog | None = None,
        clock: Clock | None = None,
        metrics: bool = False,
    ) -> None:
        if len(sinks) != len(plan.sinks):
            raise ValueError(f"the plan has {len(plan.sinks)} sinks, got {len(sinks)} ports")
        self.plan = plan
        self.metrics = metrics
        self.clock: Clock = clock or SystemClock()
        self.dead_letters = dead_letters or DeadLetterLog()
        self.states: dict[str, StateStore] = {
            s.name: StateStore(s.name, s.factory, plan.key_groups, s.initial_keys)
            for s in plan.states
        }
        owner: dict[int, str] = {}
        for seg in plan.segments:
            if isinstance(seg.target, ToSinks):
                for i in seg.target.sinks:
                    owner.setdefault(i, seg.pipeline)
        self.sinks = [
            SinkRunner(p, port, self.dead_letters, owner.get(p.index, plan.app_name))
            for p, port in zip(plan.sinks, sinks, strict=True)
        ]
        self.segments: dict[int, SegmentRunner] = {}
        self.windows: list[RangeWindowRunner | CountWindowRunner] = []
        for window in plan.windows:
            self.states[window.state] = StateStore(window.state, WindowState, plan.key_groups)
        for seg in sorted(plan.segments, key=lambda s: s.id, reverse=True):
            self._build(seg.id)
        self.windows = [self._window(w.id) for w in plan.windows]

    def _window(self, window_id: int) -> RangeWindowRunner | CountWindowRunner:
        for runner in self.windows:
            if runner.plan.id == window_id:
                return runner
        plan = self.plan.windows[window_id]
        emit = _DirectRoute(self._build(plan.next_segment)).send
        kind = RangeWindowRunner if isinstance(plan.spec, RangeWindows) else CountWindowRunner
        runner = kind(plan, self.states[plan.state], emit, self.clock, self.dead_letters)
        self.windows.append(runner)
        return runner

    def _build(self, seg_id: int) -> SegmentRunner:
        built = self.segments.get(seg_id)
        if built is not None:
            return built
        seg = next(s for s in self.plan.segments if s.id == seg_id)
        route: Route | None = None
        if isinstance(seg.target, Exchange):
            route = _DirectRoute(self._build(seg.target.segment))
        elif isinstance(seg.target, ToWindow):
            route = self._window(seg.target.window)
        args = (seg, self.plan, self.states, self.sinks, route, self.dead_letters, self.clock)
        if self.metrics:
            e2e = LatencyHistogram() if seg.source is not None else None
            runner: SegmentRunner = TimedSegmentRunner(
                *args, latency=LatencyHistogram(), end_to_end=e2e
            )
        else:
            runner = SegmentRunner(*args)
        self.segments[seg_id] = runner
        return runner

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
        return EngineStatistics(
            tuple(self.segments[i].statistics() for i in sorted(self.segments)),
            tuple(s.statistics() for s in self.sinks),
            tuple(s.statistics() for s in self.states.values()),
            self.dead_letters.statistics(),
            tuple(w.statistics() for w in self.windows),
        )
