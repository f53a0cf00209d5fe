"""The Ray application's statistics as one worker's: what ``--metrics-http`` serves on Ray.

Every actor keeps its own counters (``statistics()``): a source actor its ingress and the
engine of its source segment, a worker actor the keyed segments, states and windows of its key
groups, a sink actor its output. :class:`StatisticsPoller` asks them all once per interval from
the coordinator's loop without waiting (it checks the answers on its next turns) and merges
the answers into one :class:`~wallaroo.worker.runtime.WorkerStatistics`: counters add up per
segment, sink, state and window; latency histograms merge bin by bin; a window's watermark is
the largest. The metrics service reads the newest merge from its own thread, so neither a slow
actor nor a slow browser ever holds up the coordinator or the application.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from wallaroo.engine.clock import SystemClock
from wallaroo.engine.deadletter import DeadLetterStatistics
from wallaroo.engine.histogram import HistogramSnapshot
from wallaroo.engine.local import EngineStatistics
from wallaroo.engine.segment import SegmentStatistics, SinkStatistics
from wallaroo.engine.state import StateStatistics
from wallaroo.engine.windows import WindowStatistics
from wallaroo.metrics.service import MetricsService
from wallaroo.plan.physical import PhysicalPlan
from wallaroo.ray_backend._ray import import_ray
from wallaroo.ray_backend.loop import LoopThread
from wallaroo.ray_backend.records import reason
from wallaroo.worker.checkpointing import CheckpointStatistics
from wallaroo.worker.egress import SinkOutputStatistics
from wallaroo.worker.flow import GateStatistics
from wallaroo.worker.ingress import IngressStatistics
from wallaroo.worker.runtime import WorkerStatistics

__all__ = ["DriverMetrics", "StatisticsPoller", "merge_engines", "merge_statistics"]

log = logging.getLogger("wallaroo.ray")

#: The gate of the Ray backend: flow control is the channels' (their waits), never closed.
_OPEN_GATE = GateStatistics(True, (), 0, 0)


def _histogram(snaps: Iterable[HistogramSnapshot | None]) -> HistogramSnapshot | None:
    found = [s for s in snaps if s is not None]
    return HistogramSnapshot.merge(found) if found else None


def _segments(plan: PhysicalPlan, parts: Sequence[SegmentStatistics]) -> list[SegmentStatistics]:
    by_id: dict[int, list[SegmentStatistics]] = {}
    for part in parts:
        by_id.setdefault(part.id, []).append(part)
    merged = []
    for seg in plan.segments:
        same = by_id.get(seg.id, [])
        merged.append(
            SegmentStatistics(
                seg.id,
                seg.name,
                seg.pipeline,
                sum(s.messages_in for s in same),
                sum(s.messages_out for s in same),
                sum(s.dead_letters for s in same),
                _histogram(s.latency for s in same),
                _histogram(s.end_to_end for s in same),
            )
        )
    return merged


def _sinks(plan: PhysicalPlan, parts: Sequence[SinkStatistics]) -> list[SinkStatistics]:
    return [
        SinkStatistics(
            sink.index,
            sink.name,
            sum(p.messages for p in parts if p.index == sink.index),
            sum(p.bytes for p in parts if p.index == sink.index),
            sum(p.dead_letters for p in parts if p.index == sink.index),
        )
        for sink in plan.sinks
    ]


def _states(plan: PhysicalPlan, parts: Sequence[StateStatistics]) -> list[StateStatistics]:
    return [
        StateStatistics(
            state.name,
            sum(p.keys for p in parts if p.name == state.name),
            sum(p.key_groups_used for p in parts if p.name == state.name),
        )
        for state in plan.states
    ]


def _windows(parts: Sequence[WindowStatistics]) -> list[WindowStatistics]:
    by_name: dict[str, list[WindowStatistics]] = {}
    for part in parts:
        by_name.setdefault(part.name, []).append(part)
    return [
        WindowStatistics(
            name,
            sum(w.keys for w in same),
            sum(w.open_windows for w in same),
            max(w.watermark for w in same),
            sum(w.fired for w in same),
            sum(w.late for w in same),
            sum(w.dead_letters for w in same),
        )
        for name, same in by_name.items()
    ]


def _dead_letters(parts: Sequence[DeadLetterStatistics]) -> DeadLetterStatistics:
    stages: dict[str, int] = {}
    for part in parts:
        for stage, n in part.by_stage:
            stages[stage] = stages.get(stage, 0) + n
    path = next((p.path for p in parts if p.path is not None), None)
    return DeadLetterStatistics(sum(p.total for p in parts), tuple(sorted(stages.items())), path)


def _output(sink: Any, stats: Any) -> SinkOutputStatistics:
    """A sink actor's output counters, or zeros before it has answered."""
    return stats if stats is not None else SinkOutputStatistics(sink.name, "", False, 0, 0, 0)


def _ingress(source: Any, stats: Any) -> IngressStatistics:
    """A source actor's ingress counters, or zeros before it has answered."""
    return stats if stats is not None else IngressStatistics(source.name, "", "", 0, 0, 0, 0)


def merge_engines(plan: PhysicalPlan, parts: Sequence[EngineStatistics]) -> EngineStatistics:
    """The counters of several engines running parts of ``plan`` as one engine's: per
    segment, sink and state of the plan (zeros where no part runs it), per window name."""
    return EngineStatistics(
        tuple(_segments(plan, [seg for e in parts for seg in e.segments])),
        tuple(_sinks(plan, [k for e in parts for k in e.sinks])),
        tuple(_states(plan, [st for e in parts for st in e.states])),
        _dead_letters([e.dead_letters for e in parts]),
        tuple(_windows([w for e in parts for w in e.windows])),
    )


def merge_statistics(
    name: str,
    plan: PhysicalPlan,
    sources: Sequence[dict[str, Any] | None],
    workers: Sequence[dict[str, Any]],
    sinks: Sequence[dict[str, Any] | None],
    checkpoints: CheckpointStatistics | None = None,
) -> WorkerStatistics:
    """The statistics of every actor as one worker's.

    Args:
        name: the application's worker name (``--name``).
        plan: the application's plan.
        sources: one source actor's ``statistics()`` per source, in plan order (None for one
            that has not answered yet: zero counters).
        workers: the worker actors' ``statistics()``.
        sinks: one sink actor's ``statistics()`` per sink, in plan order (None as above).
        checkpoints: the coordinator's checkpoint counters, with resilience.
    """
    engines = [s["engine"] for s in [*sources, *workers] if s is not None]
    return WorkerStatistics(
        name,
        merge_engines(plan, engines),
        tuple(
            _ingress(src, s["ingress"] if s is not None else None)
            for src, s in zip(plan.sources, sources, strict=True)
        ),
        tuple(
            _output(sink, s["output"] if s is not None else None)
            for sink, s in zip(plan.sinks, sinks, strict=True)
        ),
        _OPEN_GATE,
        checkpoints,
    )


class StatisticsPoller:
    """Asks a deployment's actors for their statistics every ``interval_s`` and keeps the
    newest merge (:func:`merge_statistics`).

    :meth:`poll` is the coordinator loop's: it sends the requests, and on later turns takes the
    answers once all have come, never waiting. :meth:`latest` may be called from any thread.

    Args:
        name: the worker name the statistics carry.
        plan: the application's plan.
        interval_s: seconds between two requests.

    Attributes:
        checkpoints: returns the coordinator's checkpoint counters (None without resilience);
            set it once the coordinator exists.
    """

    def __init__(self, name: str, plan: PhysicalPlan, interval_s: float = 1.0) -> None:
        self.name = name
        self.plan = plan
        self.interval_s = interval_s
        self.checkpoints: Callable[[], CheckpointStatistics | None] = lambda: None
        self._asked: list[Any] = []
        self._shape: tuple[int, int, int] = (0, 0, 0)
        self._due = 0.0
        self._latest = merge_statistics(
            name, plan, [None] * len(plan.sources), [], [None] * len(plan.sinks)
        )

    def latest(self) -> WorkerStatistics:
        """The newest merged statistics (zero counters until every actor has answered once)."""
        return self._latest

    def reset(self) -> None:
        """Forget the requests in flight (the deployment they went to is gone)."""
        self._asked = []
        self._due = 0.0

    def poll(self, deployment: Any) -> None:
        """Send the requests when due, or take their answers when all have come."""
        if deployment is None:
            return
        ray = import_ray()
        now = time.monotonic()
        if not self._asked:
            if now < self._due:
                return
            self._due = now + self.interval_s
            actors = [*deployment.sources, *deployment.workers, *deployment.sinks]
            self._shape = (len(deployment.sources), len(deployment.workers), len(deployment.sinks))
            self._asked = [a.statistics.remote() for a in actors]
            return
        ready, _ = ray.wait(self._asked, num_returns=len(self._asked), timeout=0)
        if len(ready) < len(self._asked):
            return
        asked, self._asked = self._asked, []
        try:
            answers = ray.get(asked, timeout=0)
        except Exception as exc:  # an actor died: the supervisor reports it
            log.debug("statistics not taken: %s", reason(exc))
            return
        sources, workers, _ = self._shape
        self._latest = merge_statistics(
            self.name,
            self.plan,
            answers[:sources],
            answers[sources : sources + workers],
            answers[sources + workers :],
            self.checkpoints(),
        )


class DriverMetrics:
    """``--metrics-http`` and ``--metrics`` of the Ray driver: the embedded worker's metrics
    service (same ``/metrics``, ``/api/stats`` and dashboard), on a loop thread of its own,
    serving the poller's newest merge.

    Args:
        plan: the application's plan.
        name: the worker name (``--name``).
        poller: where the statistics come from.
        http: ``HOST:PORT`` of the HTTP endpoint, or None.
        hub: ``HOST:PORT`` of a metrics hub, or None.

    Raises:
        ConfigurationError: an address is malformed, or the HTTP extra is not installed.
    """

    def __init__(
        self,
        plan: PhysicalPlan,
        name: str,
        poller: StatisticsPoller,
        *,
        http: str | None = None,
        hub: str | None = None,
    ) -> None:
        self.service = MetricsService(
            plan,
            name,
            poller.latest,
            SystemClock(),
            log,
            http=http,
            hub=hub,
            interval_s=poller.interval_s,
        )
        self._thread: LoopThread | None = None

    @property
    def http_address(self) -> tuple[str, int] | None:
        """Where the HTTP endpoint listens, once started."""
        return self.service.http_address

    def start(self) -> None:
        """Bind the endpoint and start sampling.

        Raises:
            ConfigurationError: the HTTP address cannot be bound.
        """
        thread = self._thread = LoopThread("wallaroo metrics")
        thread.run(self.service.start(), timeout=30)
        thread.call(thread.background, [("metrics", self.service.run())])

    def close(self) -> None:
        """Stop sampling and close the endpoint."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            thread.run(thread.end_background(), timeout=10)
            thread.run(self.service.stop(), timeout=10)
        except Exception as exc:  # shutting down: say so, go on
            log.warning("the metrics service did not stop cleanly: %s", reason(exc))
        thread.stop()
