"""The one wiring: a physical plan plus a :class:`Placement` becomes runners.

Every engine is built here: the embedded :class:`~wallaroo.engine.local.LocalEngine` (every
segment, every key group, routes that call the next runner directly), a Ray worker (its keyed
segments, the key groups the slot map gives it, routes that send each message to the owner of
its key's group) and a Ray source actor (its source's first segment only, routed to the
workers). The backends differ only in the placement they pass and the transport behind their
routes and sink ports; runners, state stores, windows, sink owners and metrics are built the
same way for all of them.

>>> wired = wire(plan, ports, Placement(), dead_letters=DeadLetterLog())  # doctest: +SKIP
>>> wired.source_runner(0).run([b"payload"])                               # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from wallaroo.engine.clock import Clock, SystemClock
from wallaroo.engine.deadletter import DeadLetterLog
from wallaroo.engine.histogram import LatencyHistogram
from wallaroo.engine.segment import (
    Route,
    SegmentRunner,
    SinkPort,
    SinkRunner,
    TimedSegmentRunner,
)
from wallaroo.engine.state import StateStore
from wallaroo.engine.windows import CountWindowRunner, RangeWindowRunner, WindowState
from wallaroo.plan.physical import Exchange, PhysicalPlan, ToSinks, ToWindow
from wallaroo.windows import RangeWindows

__all__ = ["Placement", "RouteTo", "WindowRunner", "Wired", "build_states", "wire"]

WindowRunner = RangeWindowRunner | CountWindowRunner
RouteTo = Callable[[int], Route]
"""Gives the route by which messages reach segment ``n`` (an exchange's or a window's output)."""


@dataclass(frozen=True, slots=True)
class Placement:
    """What of a plan runs in this process, and how its routes reach the rest.

    Attributes:
        segments: ids of the segments built here; None builds every segment of the plan. A
            window is built here when a segment placed here feeds it (every window, when
            ``segments`` is None).
        key_groups: the key groups whose state is held here; None holds all of them.
        route: how an exchange (or a window's output) reaches segment ``n``, for segments that
            may run elsewhere or whose messages must go to the owner of their key; None calls
            the runner of segment ``n``, built here, directly.
    """

    segments: Collection[int] | None = None
    key_groups: Collection[int] | None = None
    route: RouteTo | None = None


def build_states(
    plan: PhysicalPlan, key_groups: Collection[int] | None = None
) -> dict[str, StateStore]:
    """The state stores of ``plan`` (its states, then one per window), holding only
    ``key_groups`` (all of them when None)."""
    states = {
        s.name: StateStore(s.name, s.factory, plan.key_groups, s.initial_keys) for s in plan.states
    }
    for window in plan.windows:
        states[window.state] = StateStore(window.state, WindowState, plan.key_groups)
    if key_groups is not None:
        held = set(key_groups)
        for store in states.values():
            for group in range(plan.key_groups):
                if group not in held:
                    store.drop_group(group)
    return states


class _DirectRoute:
    """A route that calls the next segment's runner (both run here)."""

    __slots__ = ("run",)

    def __init__(self, runner: SegmentRunner) -> None:
        self.run = runner.run

    def send(self, values: list[object], keys: list[str], times: list[int] | None = None) -> None:
        self.run(values, keys, times=times)


@dataclass(slots=True)
class Wired:
    """The runners :func:`wire` built.

    Attributes:
        plan: the plan.
        states: state stores by name (windows' included).
        sinks: one sink runner per sink of the plan, in plan order.
        segments: the segment runners built here, by segment id.
        windows: the window runners built here.
        dead_letters: where failing messages go.
        clock: the engine's clock.
    """

    plan: PhysicalPlan
    states: dict[str, StateStore]
    sinks: list[SinkRunner]
    segments: dict[int, SegmentRunner]
    windows: list[WindowRunner]
    dead_letters: DeadLetterLog
    clock: Clock

    def source_runner(self, source: int) -> SegmentRunner:
        """The runner of source ``source``'s first segment (call its ``run`` to push a batch).

        Raises:
            KeyError: that segment is not placed here.
        """
        return self.segments[self.plan.sources[source].segment]


def sink_owners(plan: PhysicalPlan) -> dict[int, str]:
    """The pipeline named as the owner of each sink's dead letters: the first that writes to it."""
    owner: dict[int, str] = {}
    for seg in plan.segments:
        if isinstance(seg.target, ToSinks):
            for i in seg.target.sinks:
                owner.setdefault(i, seg.pipeline)
    return owner


def wire(
    plan: PhysicalPlan,
    ports: Sequence[SinkPort],
    placement: Placement | None = None,
    *,
    dead_letters: DeadLetterLog,
    clock: Clock | None = None,
    metrics: bool = False,
    states: Mapping[str, StateStore] | None = None,
) -> Wired:
    """Build the runners of ``plan`` that ``placement`` puts here.

    Args:
        plan: the compiled plan.
        ports: one port per sink of the plan, in plan order.
        placement: what runs here (everything, routed by direct calls, when None).
        dead_letters: where failing messages go.
        clock: the engine's clock (the system's when None).
        metrics: build :class:`~wallaroo.engine.segment.TimedSegmentRunner` objects that record
            latency histograms (per segment; source to sink on a source's first segment).
        states: the state stores to use (built with :func:`build_states` for the placement's key
            groups when None).

    Raises:
        ValueError: ``ports`` does not give one port per sink.
    """
    if len(ports) != len(plan.sinks):
        raise ValueError(f"the plan has {len(plan.sinks)} sinks, got {len(ports)} ports")
    where = placement or Placement()
    stores = dict(states) if states is not None else build_states(plan, where.key_groups)
    clock = clock or SystemClock()
    owner = sink_owners(plan)
    sinks = [
        SinkRunner(p, port, dead_letters, owner.get(p.index, plan.app_name))
        for p, port in zip(plan.sinks, ports, strict=True)
    ]
    wired = Wired(plan, stores, sinks, {}, [], dead_letters, clock)
    _Builder(wired, where, metrics).build()
    return wired


class _Builder:
    def __init__(self, wired: Wired, placement: Placement, metrics: bool) -> None:
        self.wired = wired
        self.placement = placement
        self.metrics = metrics
        self.by_id = {s.id: s for s in wired.plan.segments}
        self.window_of: dict[int, WindowRunner] = {}

    def build(self) -> None:
        plan, placement = self.wired.plan, self.placement
        if placement.segments is None:
            for seg in sorted(plan.segments, key=lambda s: s.id, reverse=True):
                self.segment(seg.id)
            for window in plan.windows:
                self.window(window.id)
        else:
            for seg_id in placement.segments:
                self.segment(seg_id)

    def route_to(self, seg_id: int) -> Route:
        if self.placement.route is not None:
            return self.placement.route(seg_id)
        return _DirectRoute(self.segment(seg_id))

    def window(self, window_id: int) -> WindowRunner:
        runner = self.window_of.get(window_id)
        if runner is not None:
            return runner
        w = self.wired
        plan = w.plan.windows[window_id]
        emit = self.route_to(plan.next_segment).send
        kind = RangeWindowRunner if isinstance(plan.spec, RangeWindows) else CountWindowRunner
        runner = kind(plan, w.states[plan.state], emit, w.clock, w.dead_letters)
        self.window_of[window_id] = runner
        w.windows.append(runner)
        return runner

    def segment(self, seg_id: int) -> SegmentRunner:
        w = self.wired
        built = w.segments.get(seg_id)
        if built is not None:
            return built
        seg = self.by_id[seg_id]
        route: Route | None = None
        if isinstance(seg.target, Exchange):
            route = self.route_to(seg.target.segment)
        elif isinstance(seg.target, ToWindow):
            route = self.window(seg.target.window)
        args = (seg, w.plan, w.states, w.sinks, route, w.dead_letters, w.clock)
        if self.metrics:
            e2e = LatencyHistogram() if seg.source is not None else None
            runner: SegmentRunner = TimedSegmentRunner(
                *args, latency=LatencyHistogram(), end_to_end=e2e
            )
        else:
            runner = SegmentRunner(*args)
        w.segments[seg_id] = runner
        return runner
