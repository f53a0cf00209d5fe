"""Windows and aggregations: ``range_windows(...).over(Agg)``, ``count_windows(n).over(Agg)``.

A window step aggregates, per key, the messages whose event time falls in a half-open interval
``[start, start + range)``. Starts are multiples of the slide (default: the range, i.e.
tumbling windows), so with a slide smaller than the range a message belongs to every window
that overlaps it. A window fires once the watermark (the largest event time seen, moved on by
the clock while input is idle) passes ``end + delay``; its output is
``aggregation.output(key, accumulator)`` (``None`` emits nothing). A message for a window that
already fired is *late* and handled by the late-data policy.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Literal

from wallaroo.errors import WallarooParameterError

__all__ = [
    "LATE_DATA_POLICIES",
    "Aggregation",
    "CountWindows",
    "CountWindowsBuilder",
    "RangeWindows",
    "RangeWindowsBuilder",
    "count_windows",
    "hours",
    "microseconds",
    "milliseconds",
    "minutes",
    "nanoseconds",
    "range_windows",
    "seconds",
]

LatePolicy = Literal["drop", "fire-per-message", "place-in-oldest-window"]
LATE_DATA_POLICIES: tuple[str, ...] = ("drop", "fire-per-message", "place-in-oldest-window")


class Aggregation:
    """Base class of aggregations. Subclass it and define:

    * ``initial_accumulator()``: a fresh, empty accumulator (the identity of ``combine``);
    * ``update(data, acc)``: add one message to ``acc`` (mutate it, or return the new one);
    * ``combine(acc1, acc2)``: a new accumulator holding both (must not mutate its arguments,
      must be associative);
    * ``output(key, acc)``: what the window emits for ``key`` (``None``: nothing);
    * optionally ``name()`` (default: the class name).
    """

    def name(self) -> str:
        """The aggregation's name in metrics and logs (default: the class name)."""
        return type(self).__name__


_REQUIRED = {"initial_accumulator": 0, "update": 2, "combine": 2, "output": 2}


def _aggregation(agg: Any, method: str) -> Aggregation:
    """Instantiate and check an aggregation class (or accept an instance)."""
    instance = agg() if isinstance(agg, type) else agg
    missing = [m for m in _REQUIRED if not callable(getattr(instance, m, None))]
    if missing:
        raise WallarooParameterError(
            f"{method}() needs a wallaroo.Aggregation subclass defining initial_accumulator(), "
            f"update(data, acc), combine(acc1, acc2) and output(key, acc); "
            f"{getattr(agg, '__name__', agg)!r} lacks {', '.join(m + '()' for m in missing)}"
        )
    for m, arity in _REQUIRED.items():
        try:
            params = [
                p
                for p in inspect.signature(getattr(instance, m)).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
            ]
        except (TypeError, ValueError):
            continue
        if len(params) != arity:
            raise WallarooParameterError(
                f"aggregation {type(instance).__name__}.{m}() must take {arity} argument(s) "
                f"besides self, it takes {len(params)}"
            )
    result: Aggregation = instance
    return result


def _duration(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise WallarooParameterError(
            f"{what} must be a positive number of nanoseconds (use wallaroo.seconds(9) etc.), "
            f"got {value!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class RangeWindows:
    """A built range-window step (what ``.over()`` returns); give it to ``Pipeline.to``."""

    range_ns: int
    slide_ns: int
    delay_ns: int
    late_policy: str
    aggregation: Aggregation

    def as_step(self) -> Any:
        """This window as a pipeline step (a ``WindowStep``)."""
        from wallaroo.plan.logical import WindowStep

        return WindowStep(self)


@dataclass(frozen=True, slots=True)
class CountWindows:
    """A built count-window step: emit every ``count`` messages per key."""

    count: int
    aggregation: Aggregation

    def as_step(self) -> Any:
        """This window as a pipeline step (a ``WindowStep``)."""
        from wallaroo.plan.logical import WindowStep

        return WindowStep(self)


class RangeWindowsBuilder:
    """``range_windows(range)``, then at most one each of ``with_slide``, ``with_delay``,
    ``with_late_data_policy``, then ``over(AggregationClass)``."""

    def __init__(self, range_ns: int) -> None:
        self._range = _duration(range_ns, "range_windows(range)")
        self._slide: int | None = None
        self._delay: int | None = None
        self._policy: str | None = None

    def _once(self, current: Any, method: str) -> None:
        if current is not None:
            raise WallarooParameterError(
                f"{method}() may be called only once on a window; remove the second call"
            )

    def with_slide(self, slide: int) -> RangeWindowsBuilder:
        """Windows start every ``slide`` nanoseconds (at most the range)."""
        self._once(self._slide, "with_slide")
        slide = _duration(slide, "with_slide(slide)")
        if slide > self._range:
            raise WallarooParameterError(
                f"with_slide({slide}) is larger than the range ({self._range}): windows would "
                "leave gaps; use a slide at most equal to the range"
            )
        self._slide = slide
        return self

    def with_delay(self, delay: int) -> RangeWindowsBuilder:
        """Wait ``delay`` nanoseconds of watermark past a window's end before firing it."""
        self._once(self._delay, "with_delay")
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise WallarooParameterError(f"with_delay() needs nanoseconds >= 0, got {delay!r}")
        self._delay = delay
        return self

    def with_late_data_policy(self, policy: str) -> RangeWindowsBuilder:
        """``"drop"`` (default), ``"fire-per-message"`` or ``"place-in-oldest-window"``."""
        self._once(self._policy, "with_late_data_policy")
        if policy not in LATE_DATA_POLICIES:
            raise WallarooParameterError(
                f"unknown late data policy {policy!r}; use one of "
                + ", ".join(repr(p) for p in LATE_DATA_POLICIES)
            )
        self._policy = policy
        return self

    def over(self, aggregation: Any) -> RangeWindows:
        """The window step, aggregating with ``aggregation`` (a class, instantiated here)."""
        return RangeWindows(
            self._range,
            self._slide or self._range,
            self._delay or 0,
            self._policy or "drop",
            _aggregation(aggregation, "over"),
        )


class CountWindowsBuilder:
    """``count_windows(n).over(AggregationClass)``."""

    def __init__(self, count: int) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise WallarooParameterError(f"count_windows() needs a count >= 1, got {count!r}")
        self._count = count

    def over(self, aggregation: Any) -> CountWindows:
        """The window step, aggregating with ``aggregation`` (a class, instantiated here).

        Raises:
            WallarooParameterError: it lacks a method of :class:`Aggregation`, or one takes the
                wrong number of arguments.
        """
        return CountWindows(self._count, _aggregation(aggregation, "over"))


def range_windows(range_ns: int) -> RangeWindowsBuilder:
    """Windows of ``range_ns`` nanoseconds of event time (see the module doc)."""
    return RangeWindowsBuilder(range_ns)


def count_windows(count: int) -> CountWindowsBuilder:
    """Windows of ``count`` messages per key."""
    return CountWindowsBuilder(count)


def nanoseconds(x: float) -> int:
    """``x`` nanoseconds, as an int of nanoseconds (truncated)."""
    return int(x)


def microseconds(x: float) -> int:
    """``x`` microseconds in nanoseconds (truncated to an int)."""
    return int(x * 1_000)


def milliseconds(x: float) -> int:
    """``x`` milliseconds in nanoseconds (truncated to an int)."""
    return int(x * 1_000_000)


def seconds(x: float) -> int:
    """``x`` seconds in nanoseconds (truncated to an int)."""
    return int(x * 1_000_000_000)


def minutes(x: float) -> int:
    """``x`` minutes in nanoseconds (truncated to an int)."""
    return int(x * 60_000_000_000)


def hours(x: float) -> int:
    """``x`` hours in nanoseconds (truncated to an int)."""
    return int(x * 3_600_000_000_000)
