"""Window runners: per-key window state in key groups, fired as the watermark moves.

Range windows keep, per key, *panes* of ``gcd(range, slide)`` nanoseconds: a message updates the
one accumulator of its pane, and a window ``[start, start + range)`` fires as the ``combine`` of
its panes. Per key the runner remembers the first window start not yet fired, so windows fire in
order of their end; a heap of (due time, key) finds the keys with windows due when the watermark
moves. The state of a key (a :class:`WindowState`) lives in a :class:`StateStore`, so
checkpoints save it and scale-out moves it with the key's group; the heap and the watermark are
rebuilt from it after a restore.

The watermark is the largest event time seen. While no input arrives for ``range + delay``
nanoseconds of the engine's clock, :meth:`RangeWindowRunner.tick` moves it on by the idle time,
so the last windows fire when input stops.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wallaroo.engine.clock import Clock
from wallaroo.engine.deadletter import DeadLetterLog
from wallaroo.engine.state import StateStore
from wallaroo.plan.physical import WindowPlan
from wallaroo.windows import CountWindows, RangeWindows

__all__ = ["CountWindowRunner", "RangeWindowRunner", "WindowState", "WindowStatistics"]

Emit = Callable[[list[Any], list[str], list[int]], None]


class WindowState:
    """One key's windows: pane start -> accumulator, and where firing stands."""

    __slots__ = ("count", "fired_until", "max_time", "next_start", "panes")

    def __init__(self) -> None:
        self.panes: dict[int, Any] = {}
        self.next_start: int | None = None  # first window start not fired yet
        self.max_time = 0  # the largest event time this key has seen
        self.fired_until = 0  # windows whose end + delay <= this have fired
        self.count = 0  # count windows: messages in the open window

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)


@dataclass(frozen=True, slots=True)
class WindowStatistics:
    """A snapshot of one window step's runner.

    Attributes:
        name: the window step's name (its aggregation's).
        keys: keys that have window state.
        open_windows: for range windows, panes holding data across all keys; for count
            windows, keys with a partial window.
        watermark: range windows: the largest event time seen (or reached while idle), in
            nanoseconds since the epoch; always 0 for count windows.
        fired: windows fired (an output that was None still counts).
        late: range windows: messages that arrived after every window holding them had fired
            (handled by the late data policy); always 0 for count windows.
        dead_letters: aggregation calls that raised (``update``, ``combine``, ``output``).
    """

    name: str
    keys: int
    open_windows: int
    watermark: int
    fired: int
    late: int
    dead_letters: int


class _Runner:
    def __init__(
        self, plan: WindowPlan, store: StateStore, emit: Emit, clock: Clock, dead: DeadLetterLog
    ) -> None:
        self.plan = plan
        self.store = store
        self.agg = plan.spec.aggregation
        self._emit = emit
        self._clock = clock
        self._dead = dead
        self.fired = 0
        self.late = 0
        self.dead_letters = 0

    def _fail(self, exc: Exception, what: str, key: str, value: Any) -> None:
        self.dead_letters += 1
        self._dead.record(
            pipeline=self.plan.pipeline,
            stage=self.plan.name,
            exc=exc,
            value=value,
            key=key,
            message=f"{what}: {type(exc).__name__}: {exc}",
            now_ns=self._clock.now_ns(),
        )

    def _update(self, acc: Any, value: Any, key: str) -> Any:
        """``aggregation.update``; its result replaces ``acc`` unless it returns None."""
        try:
            result = self.agg.update(value, acc)
        except Exception as exc:
            self._fail(exc, f"aggregation {self.plan.name} update() raised", key, value)
            return acc
        return acc if result is None else result

    def _output(
        self, key: str, acc: Any, out: tuple[list[Any], list[str], list[int]], time: int
    ) -> None:
        try:
            result = self.agg.output(key, acc)
        except Exception as exc:
            self._fail(exc, f"aggregation {self.plan.name} output() raised", key, acc)
            return
        if result is not None:
            out[0].append(result)
            out[1].append(key)
            out[2].append(time)


class CountWindowRunner(_Runner):
    """Emits every ``count`` messages per key; a partial window is kept until it fills."""

    def send(self, values: list[Any], keys: list[str], times: list[int] | None = None) -> None:
        """Add a keyed batch to each key's open window; emit the windows that reach ``count``.

        ``times`` is ignored; an emitted output carries the engine clock's ``now_ns`` as its
        time.
        """
        del times  # count windows do not depend on time
        spec: CountWindows = self.plan.spec
        states = self.store.states
        out: tuple[list[Any], list[str], list[int]] = ([], [], [])
        now = self._clock.now_ns()
        for key, value in zip(keys, values, strict=True):
            ws = states.get(key) or self.store.create(key)
            acc = ws.panes.get(0)
            if acc is None:
                acc = self.agg.initial_accumulator()
            ws.panes[0] = self._update(acc, value, key)
            ws.count += 1
            if ws.count == spec.count:
                self._output(key, ws.panes.pop(0), out, now)
                ws.count = 0
                self.fired += 1
        if out[0]:
            self._emit(*out)

    def tick(self) -> None:
        """Count windows do not depend on time."""

    def flush(self) -> None:
        """End of input: a partial count window never fills, so it never fires."""

    def rebuild(self) -> None:
        """Nothing to rebuild: the state is complete."""

    def statistics(self) -> WindowStatistics:
        """A snapshot of the runner's counters."""
        open_windows = sum(1 for ws in self.store.states.values() if ws.panes)
        return WindowStatistics(
            self.plan.name,
            len(self.store.states),
            open_windows,
            0,
            self.fired,
            self.late,
            self.dead_letters,
        )


class RangeWindowRunner(_Runner):
    """Range windows (tumbling or sliding) in event time."""

    def __init__(
        self, plan: WindowPlan, store: StateStore, emit: Emit, clock: Clock, dead: DeadLetterLog
    ) -> None:
        super().__init__(plan, store, emit, clock, dead)
        spec: RangeWindows = plan.spec
        self.range = spec.range_ns
        self.slide = spec.slide_ns
        self.delay = spec.delay_ns
        self.policy = spec.late_policy
        self.pane = math.gcd(self.range, self.slide)
        self.idle_timeout = self.range + self.delay
        self.watermark = 0
        self._heap: list[tuple[int, str]] = []
        self._last_input_wall = clock.monotonic_ns()
        self._watermark_at_input = 0

    # -- input --------------------------------------------------------------------------------
    def send(self, values: list[Any], keys: list[str], times: list[int] | None = None) -> None:
        """Add a keyed batch to its windows, moving the watermark first.

        Each message whose event time passes the watermark moves it there, and the windows due
        fire before the message is added. A message too late for every window holding it is
        counted in ``late`` and handled by the late data policy. What fires is emitted once, at
        the end of the batch. ``times`` defaults to the engine clock's ``now_ns``.
        """
        if times is None:
            times = [self._clock.now_ns()] * len(values)
        out: tuple[list[Any], list[str], list[int]] = ([], [], [])
        states = self.store.states
        heap = self._heap
        for key, value, t in zip(keys, values, times, strict=True):
            if t > self.watermark:  # the watermark moves first: due windows fire
                self.watermark = t
                if heap and heap[0][0] <= t:
                    self._fire_due(out)
            ws = states.get(key) or self.store.create(key)
            ws.max_time = max(ws.max_time, t)
            fired = max(self.watermark, ws.fired_until)
            if self._last_start(t) + self.range + self.delay <= fired:
                self._late(ws, key, value, t, fired, out)
            else:
                self._add(ws, key, value, t, fired)
        self._last_input_wall = self._clock.monotonic_ns()
        self._watermark_at_input = self.watermark
        if out[0]:
            self._emit(*out)

    def _last_start(self, t: int) -> int:
        """The start of the last window containing ``t`` (starts are multiples of the slide)."""
        return (t // self.slide) * self.slide

    def _oldest_start(self, t: int) -> int:
        """The start of the first (oldest) window containing ``t``."""
        return ((t - self.range) // self.slide + 1) * self.slide

    def _unfired_start(self, fired: int) -> int:
        """The first window start whose window has not fired when ``fired`` is the frontier."""
        return ((fired - self.range - self.delay) // self.slide + 1) * self.slide

    def _add(self, ws: WindowState, key: str, value: Any, t: int, fired: int) -> None:
        pane = (t // self.pane) * self.pane
        acc = ws.panes.get(pane)
        if acc is None:
            acc = self.agg.initial_accumulator()
        ws.panes[pane] = self._update(acc, value, key)
        oldest = max(self._oldest_start(t), self._unfired_start(fired))
        if ws.next_start is None or oldest < ws.next_start:
            ws.next_start = oldest
            heapq.heappush(self._heap, (oldest + self.range + self.delay, key))

    def _late(
        self,
        ws: WindowState,
        key: str,
        value: Any,
        t: int,
        fired: int,
        out: tuple[list[Any], list[str], list[int]],
    ) -> None:
        self.late += 1
        if self.policy == "fire-per-message":
            acc = self._update(self.agg.initial_accumulator(), value, key)
            self._output(key, acc, out, t)
        elif self.policy == "place-in-oldest-window":
            self._add(ws, key, value, self._unfired_start(fired), fired)

    # -- firing -------------------------------------------------------------------------------
    def _advance(self, watermark: int) -> None:
        """Move the watermark to ``watermark`` (without input) and emit what fires."""
        out: tuple[list[Any], list[str], list[int]] = ([], [], [])
        self.watermark = max(self.watermark, watermark)
        self._fire_due(out)
        if out[0]:
            self._emit(*out)

    def _fire_due(self, out: tuple[list[Any], list[str], list[int]]) -> None:
        """Fire every window whose end + delay the watermark has reached, in order of due."""
        watermark = self.watermark
        heap = self._heap
        states = self.store.states
        while heap and heap[0][0] <= watermark:
            _, key = heapq.heappop(heap)
            ws = states.get(key)
            due = None if ws is None or ws.next_start is None else ws.next_start
            if ws is not None and due is not None and due + self.range + self.delay <= watermark:
                self._fire_key(ws, key, watermark, out)

    def _fire_key(
        self, ws: WindowState, key: str, watermark: int, out: tuple[list[Any], list[str], list[int]]
    ) -> None:
        start = ws.next_start
        if start is None:
            return
        while ws.panes and start + self.range + self.delay <= watermark:
            end = start + self.range
            panes = [ws.panes[p] for p in range(start, end, self.pane) if p in ws.panes]
            if panes:
                self._fire(key, panes, end, out)
                start += self.slide
            else:  # an empty window: jump to the first window holding data
                start = max(start + self.slide, self._oldest_start(min(ws.panes)))
            for p in [p for p in ws.panes if p < start]:  # no later window holds it
                del ws.panes[p]
        ws.fired_until = max(ws.fired_until, watermark)
        if ws.panes:
            first = min(ws.panes)
            start = max(start, self._oldest_start(first))
            ws.next_start = start
            heapq.heappush(self._heap, (start + self.range + self.delay, key))
        else:
            ws.next_start = None

    def _fire(
        self, key: str, panes: list[Any], end: int, out: tuple[list[Any], list[str], list[int]]
    ) -> None:
        try:
            acc = panes[0]
            for other in panes[1:]:
                acc = self.agg.combine(acc, other)
        except Exception as exc:
            self._fail(exc, f"aggregation {self.plan.name} combine() raised", key, panes)
            return
        self._output(key, acc, out, end)
        self.fired += 1

    def tick(self) -> None:
        """Move the watermark on when input has been idle for ``range + delay``."""
        idle = self._clock.monotonic_ns() - self._last_input_wall
        if idle >= self.idle_timeout:
            candidate = self._watermark_at_input + idle
            if candidate > self.watermark:
                self._advance(candidate)

    def flush(self) -> None:
        """End of input: fire every window that holds data."""
        latest = max((ws.max_time for ws in self.store.states.values()), default=0)
        self._advance(max(self.watermark, latest) + self.range + self.delay + self.slide)

    def rebuild(self) -> None:
        """After a restore: the watermark and the heap, from the keys' states."""
        self._heap = []
        self.watermark = 0
        for key, ws in self.store.states.items():
            self.watermark = max(self.watermark, ws.max_time, ws.fired_until)
            if ws.next_start is not None:
                self._heap.append((ws.next_start + self.range + self.delay, key))
        heapq.heapify(self._heap)
        self._watermark_at_input = self.watermark
        self._last_input_wall = self._clock.monotonic_ns()

    def statistics(self) -> WindowStatistics:
        """A snapshot of the runner's counters."""
        open_windows = sum(len(ws.panes) for ws in self.store.states.values())
        return WindowStatistics(
            self.plan.name,
            len(self.store.states),
            open_windows,
            self.watermark,
            self.fired,
            self.late,
            self.dead_letters,
        )
