"""Log lines that stay readable when the same thing happens ten thousand times.

:class:`LogSummary` logs the first event of each *cause* (a stage that makes dead letters, a
peer that keeps sending garbage, a connector whose decoder rejects payloads) in full, then at
most one summary line per cause per ``interval`` seconds while more arrive, and, on
:meth:`LogSummary.close`, one total line per cause that had more than its first event::

    summary = LogSummary(log, interval=10.0)
    for bad in payloads:
        summary.event("decoder decode_feed", "dead letter at %s: %s", stage, error)
    summary.flush()   # from a periodic task: a summary for causes quiet since their last line
    summary.close()   # at shutdown: the totals

:func:`clip` makes text that came from a peer safe for a log line: control characters (newlines,
ESC sequences) escaped ``repr``-style and the result clipped, so that no peer can start a log
record of its own or fill the log with one line.

Both are thread-safe. The module imports nothing of wallaroo: every layer (the engine, the
worker, the connector client library, the connector programs) may use it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CLIP", "LogSummary", "clip"]

CLIP = 200
"""How many characters of peer-supplied text :func:`clip` keeps by default."""

_ESCAPES = {i: f"\\x{i:02x}" for i in range(0x20)} | {0x7F: "\\x7f"}
_ESCAPES |= {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord("\\"): "\\\\"}
# C1 controls and the Unicode line and paragraph separators start lines in some viewers too.
_ESCAPES |= {i: f"\\x{i:02x}" for i in range(0x80, 0xA0)}
_ESCAPES |= {0x2028: "\\u2028", 0x2029: "\\u2029"}


def clip(text: object, limit: int = CLIP) -> str:
    """``text`` (``str()`` of it; bytes decoded as UTF-8 with replacement) with every control
    character escaped as ``\\n``, ``\\x1b``, ... and clipped to ``limit`` characters, ``...``
    and the full length appended when it was longer. Never raises."""
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode("utf-8", "replace")
    try:
        value = text if isinstance(text, str) else str(text)
    except Exception:  # a peer's object whose __str__ raises is still loggable
        value = f"<unprintable {type(text).__name__}>"
    escaped = value.translate(_ESCAPES)
    if len(escaped) <= limit:
        return escaped
    return f"{escaped[:limit]}... ({len(value):,} characters)"


@dataclass(slots=True)
class _Cause:
    total: int = 0
    unreported: int = 0
    last_line: float = 0.0


class LogSummary:
    """Rate-limited log lines for a repeated event, grouped by cause.

    Args:
        log: where the lines go.
        interval: the shortest time, in seconds, between two lines of one cause.
        level: the level of every line.
        what: the plural noun of the summaries (``"dead letters"``).
        clock: seconds, monotonic (``time.monotonic``); tests pass a fake one.

    The first :meth:`event` of a cause logs its message as given. Later events of that cause
    are counted; the first one at least ``interval`` seconds after the cause's last line logs
    ``<cause>: N more <what> in the last S s (T in all)``, and so does :meth:`flush` for a
    cause with events not yet reported once its interval has passed. :meth:`close` logs
    ``<cause>: T <what> in all`` for each cause with more than one event, so a run that made
    10,000 of them in a burst logs three lines: the first, one summary, the total.
    """

    def __init__(
        self,
        log: logging.Logger,
        *,
        interval: float = 10.0,
        level: int = logging.WARNING,
        what: str = "events",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.interval = interval
        self.level = level
        self.what = what
        self._clock = clock
        self._causes: dict[str, _Cause] = {}
        self._lock = threading.Lock()

    def event(self, cause: str, msg: str, *args: object) -> bool:
        """Count one event of ``cause``; log ``msg % args`` if it is the cause's first, or a
        summary if the cause's interval has passed. Returns True when a line was logged."""
        now = self._clock()
        with self._lock:
            state = self._causes.get(cause)
            if state is None:
                self._causes[cause] = _Cause(total=1, last_line=now)
                first = True
            else:
                state.total += 1
                state.unreported += 1
                if now - state.last_line < self.interval:
                    return False
                first = False
                line = self._summary_line(cause, state, now)
        if first:
            self.log.log(self.level, msg, *args)
        else:
            self.log.log(self.level, "%s", line)
        return True

    def flush(self) -> int:
        """Log a summary for every cause with unreported events whose interval has passed;
        returns how many lines were logged. Call it from a periodic task so that the last
        events of a burst are reported without waiting for the next one."""
        now = self._clock()
        with self._lock:
            lines = [
                self._summary_line(cause, state, now)
                for cause, state in self._causes.items()
                if state.unreported and now - state.last_line >= self.interval
            ]
        for line in lines:
            self.log.log(self.level, "%s", line)
        return len(lines)

    def close(self, *, totals: bool = True) -> None:
        """Log the total of each cause that had more than one event (unless ``totals`` is
        False: the caller writes its own), then forget them all."""
        with self._lock:
            found = [(c, s.total) for c, s in self._causes.items() if s.total > 1]
            self._causes.clear()
        if not totals:
            return
        for cause, total in found:
            self.log.log(self.level, "%s: %d %s in all", cause, total, self.what)

    def total(self, cause: str | None = None) -> int:
        """How many events were counted: of ``cause``, or of every cause."""
        with self._lock:
            if cause is not None:
                state = self._causes.get(cause)
                return state.total if state is not None else 0
            return sum(s.total for s in self._causes.values())

    def _summary_line(self, cause: str, state: _Cause, now: float) -> str:
        line = (
            f"{cause}: {state.unreported:,} more {self.what} in the last "
            f"{now - state.last_line:.0f} s ({state.total:,} in all)"
        )
        state.unreported = 0
        state.last_line = now
        return line
