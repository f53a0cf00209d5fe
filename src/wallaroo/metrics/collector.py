"""The metrics collector: samples a worker's ``statistics()`` and keeps the recent samples.

It only reads snapshots (frozen records); rates and per-interval latency percentiles are
differences of two consecutive samples (:mod:`wallaroo.metrics.report`). The metrics service
calls :meth:`MetricsCollector.tick` once per interval on the worker's event loop: a sample costs
one ``statistics()`` call, microseconds per stage, and never blocks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wallaroo.engine.clock import Clock

if TYPE_CHECKING:
    from wallaroo.worker.runtime import WorkerStatistics

__all__ = ["DEFAULT_INTERVAL_S", "DEFAULT_KEEP", "MetricsCollector", "Sample"]

DEFAULT_INTERVAL_S = 1.0
DEFAULT_KEEP = 300  # five minutes at the default interval, as the original's UI kept


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of the worker's statistics.

    Attributes:
        monotonic_ns: the clock's monotonic reading (for rates).
        wall_ns: the clock's wall time (for chart axes), nanoseconds since the epoch.
        stats: the worker's statistics at that moment.
    """

    monotonic_ns: int
    wall_ns: int
    stats: WorkerStatistics


class MetricsCollector:
    """Keeps the last ``keep`` samples of ``statistics``, taken every ``interval_s`` seconds.

    Args:
        statistics: returns the worker's current statistics (``Worker.statistics``).
        clock: where sample times come from (the engine's clock).
        interval_s: seconds between samples.
        keep: how many samples to keep (the history the dashboard starts from).

    Raises:
        ValueError: ``interval_s`` is not positive or ``keep`` is below 2.
    """

    def __init__(
        self,
        statistics: Callable[[], WorkerStatistics],
        clock: Clock,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"the sampling interval must be positive, got {interval_s}")
        if keep < 2:
            raise ValueError(f"the collector must keep at least 2 samples, got {keep}")
        self._statistics = statistics
        self._clock = clock
        self.interval_s = interval_s
        self._samples: deque[Sample] = deque(maxlen=keep)

    def read(self) -> Sample:
        """A sample of this moment, not kept (``/metrics`` answers with fresh counters)."""
        return Sample(self._clock.monotonic_ns(), self._clock.now_ns(), self._statistics())

    def tick(self) -> Sample:
        """Take a sample and keep it."""
        sample = self.read()
        self._samples.append(sample)
        return sample

    @property
    def samples(self) -> tuple[Sample, ...]:
        """The kept samples, oldest first."""
        return tuple(self._samples)
