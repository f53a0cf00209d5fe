"""Latency histograms with the original's 65 power-of-two bins (nanoseconds).

A value ``v`` lands in bin ``v.bit_length()`` (the original's ``64 - clz(v)``): bin 0 holds 0,
bin ``i`` holds ``2**(i-1) .. 2**i - 1``. The engine records one value per batch, weighted by
the batch's message count: every message of a batch leaves a segment when the batch does.

This module imports nothing from the rest of the package, so the engine can use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["BINS", "U64_MAX", "HistogramSnapshot", "LatencyHistogram", "bin_upper_ns"]

BINS = 65
U64_MAX = 2**64 - 1
_EMPTY = (0,) * BINS


def bin_upper_ns(index: int) -> int:
    """The largest value bin ``index`` holds (0 for bin 0, ``2**index - 1`` otherwise)."""
    return (1 << index) - 1


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """A histogram at one moment (cumulative since start), or the difference of two.

    Attributes:
        bins: 65 counts; ``bins[i]`` counts values of ``i`` bits.
        count: the number of values (messages) recorded.
        total_ns: the sum of the values (for a mean and Prometheus' ``_sum``).
        min_ns: the smallest value seen, ``U64_MAX`` when nothing was recorded (as the original).
        max_ns: the largest value seen, 0 when nothing was recorded.
    """

    bins: tuple[int, ...] = _EMPTY
    count: int = 0
    total_ns: int = 0
    min_ns: int = U64_MAX
    max_ns: int = 0

    def percentile(self, q: float) -> int | None:
        """The upper bound (ns) of the bin holding the ``q`` quantile (0 < q <= 1); None when
        empty. Bins are powers of two, so this overstates by less than a factor of two."""
        return self.percentiles((q,))[0]

    def percentiles(self, qs: Sequence[float]) -> list[int | None]:
        """:meth:`percentile` of each of ``qs`` (ascending), in one pass over the bins."""
        if self.count <= 0:
            return [None] * len(qs)
        out: list[int | None] = []
        seen = 0
        wanted = iter(qs)
        q = next(wanted, None)
        for index, n in enumerate(self.bins):
            seen += n
            while q is not None and n and seen >= q * self.count:
                out.append(bin_upper_ns(index))
                q = next(wanted, None)
            if q is None:
                break
        out += [bin_upper_ns(BINS - 1)] * (len(qs) - len(out))  # counts add up: not reached
        return out

    def since(self, older: HistogramSnapshot) -> HistogramSnapshot:
        """What was recorded between ``older`` and this snapshot.

        Bins, count and total are exact. Extremes cannot be subtracted: min and max are the
        bounds of the lowest and highest non-empty bins, kept within this snapshot's own
        extremes (``U64_MAX`` and 0 when nothing was recorded in between).
        """
        bins = tuple(a - b for a, b in zip(self.bins, older.bins, strict=True))
        used = [i for i, n in enumerate(bins) if n]
        if not used:
            return HistogramSnapshot(bins, 0, 0)
        low = 0 if used[0] == 0 else 1 << (used[0] - 1)
        high = bin_upper_ns(used[-1])
        return HistogramSnapshot(
            bins,
            self.count - older.count,
            self.total_ns - older.total_ns,
            max(low, self.min_ns),
            min(high, self.max_ns),
        )

    @staticmethod
    def merge(snapshots: Iterable[HistogramSnapshot]) -> HistogramSnapshot:
        """The histogram of all values of ``snapshots`` together."""
        bins = [0] * BINS
        count = total = 0
        low, high = U64_MAX, 0
        for snap in snapshots:
            for i, n in enumerate(snap.bins):
                bins[i] += n
            count += snap.count
            total += snap.total_ns
            low, high = min(low, snap.min_ns), max(high, snap.max_ns)
        return HistogramSnapshot(tuple(bins), count, total, low, high)


class LatencyHistogram:
    """A histogram the engine records into; readers take a :meth:`snapshot`."""

    __slots__ = ("bins", "count", "max_ns", "min_ns", "total_ns")

    def __init__(self) -> None:
        self.bins = [0] * BINS
        self.count = 0
        self.total_ns = 0
        self.min_ns = U64_MAX
        self.max_ns = 0

    def record(self, elapsed_ns: int, count: int = 1) -> None:
        """Count ``count`` values of ``elapsed_ns`` nanoseconds (negative counts as 0, values
        beyond 64 bits in the last bin)."""
        elapsed_ns = max(elapsed_ns, 0)
        self.bins[min(elapsed_ns.bit_length(), BINS - 1)] += count
        self.count += count
        self.total_ns += elapsed_ns * count
        self.min_ns = min(self.min_ns, elapsed_ns)
        self.max_ns = max(self.max_ns, elapsed_ns)

    def snapshot(self) -> HistogramSnapshot:
        """The histogram since it was created."""
        return HistogramSnapshot(
            tuple(self.bins), self.count, self.total_ns, self.min_ns, self.max_ns
        )
