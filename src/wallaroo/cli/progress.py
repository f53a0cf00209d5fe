"""A one-line progress bar for long-running commands (``wallaroo send``), for terminals only.

The line is redrawn in place (carriage return) at most every ``min_interval_s``; without a known
total it shows the count and rate only. :meth:`Progress.close` erases it, so that the command's
final summary line is what stays on the screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class Progress:
    """Draws ``[#####-----]  45%  45,000/100,000 msg  123,456 msg/s  ETA 0:01``.

    Args:
        stream: where to draw (a terminal).
        total: the expected count, or None when unknown.
        unit: what is counted.
        width: the bar's width in characters.
        min_interval_s: the shortest time between two redraws.
        clock: seconds, monotonic (injectable for tests).
    """

    def __init__(
        self,
        stream: TextIO,
        total: int | None,
        *,
        unit: str = "msg",
        width: int = 30,
        min_interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.total = total
        self.unit = unit
        self.width = width
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._start = clock()
        self._drawn_at: float | None = None
        self._length = 0

    def line(self, done: int) -> str:
        """The text of the bar for ``done`` items."""
        elapsed = self._clock() - self._start
        rate = done / elapsed if elapsed > 0 else 0.0
        counts = f"{done:,} {self.unit}"
        if not self.total:
            return f"{counts}  {rate:,.0f} {self.unit}/s  {_duration(elapsed)}"
        share = min(done / self.total, 1.0)
        filled = int(share * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        left = (self.total - done) / rate if rate > 0 else 0.0
        return (
            f"[{bar}] {share:4.0%}  {done:,}/{self.total:,} {self.unit}  "
            f"{rate:,.0f} {self.unit}/s  ETA {_duration(left)}"
        )

    def update(self, done: int) -> None:
        """Redraw for ``done`` items if the last redraw is old enough."""
        now = self._clock()
        if self._drawn_at is not None and now - self._drawn_at < self.min_interval_s:
            return
        self._drawn_at = now
        text = self.line(done)
        self.stream.write("\r" + text.ljust(self._length))
        self.stream.flush()
        self._length = len(text)

    def close(self) -> None:
        """Erase the bar (the cursor goes back to the start of the line)."""
        if self._length:
            self.stream.write("\r" + " " * self._length + "\r")
            self.stream.flush()
            self._length = 0
