"""Time for the engine, injectable so tests never sleep.

Engine code asks a :class:`Clock` for the time instead of calling :mod:`time` directly; tests pass
a :class:`MockClock` and move it by hand.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "MockClock", "SystemClock"]


class Clock(Protocol):
    """Where the engine reads the time from."""

    def now_ns(self) -> int:
        """Wall-clock time in nanoseconds since the Unix epoch (event and ingest time)."""
        ...

    def monotonic_ns(self) -> int:
        """A monotonic reading in nanoseconds (durations, timeouts)."""
        ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def now_ns(self) -> int:
        """``time.time_ns()``: wall-clock nanoseconds since the Unix epoch."""
        return time.time_ns()

    def monotonic_ns(self) -> int:
        """``time.monotonic_ns()``: a monotonic reading in nanoseconds."""
        return time.monotonic_ns()


class MockClock:
    """A clock that only moves when told to.

    Both readings start at ``start_ns`` and advance together with :meth:`advance`. With
    ``auto_advance_ns``, every :meth:`now_ns` reading also moves the clock on by that much
    afterwards, so messages read one at a time get evenly spaced ingest times.
    """

    __slots__ = ("_now", "_step")

    def __init__(
        self, start_ns: int = 1_700_000_000_000_000_000, *, auto_advance_ns: int = 0
    ) -> None:
        if auto_advance_ns < 0:
            raise ValueError(f"auto_advance_ns must be >= 0, got {auto_advance_ns}")
        self._now = start_ns
        self._step = auto_advance_ns

    def now_ns(self) -> int:
        """The current time in nanoseconds; the clock then moves on by ``auto_advance_ns``."""
        now = self._now
        self._now += self._step
        return now

    def monotonic_ns(self) -> int:
        """The current time in nanoseconds, without moving the clock."""
        return self._now

    def advance(self, ns: int) -> None:
        """Move time forward by ``ns`` nanoseconds."""
        if ns < 0:
            raise ValueError(f"a clock cannot move backwards (advance by {ns} ns)")
        self._now += ns

    def set(self, now_ns: int) -> None:
        """Jump to ``now_ns`` (not earlier than the current reading)."""
        self.advance(now_ns - self._now)
