"""Runners: the engine-neutral pieces that execute a segment or feed a sink.

A :class:`SegmentRunner` runs one fused segment over a batch and hands what comes out to its
:class:`Route` (the next segment, wherever it runs) or to :class:`SinkRunner` objects. Where the
next segment runs is not its business: the embedded engine routes with a direct call, a
distributed backend with a batched remote call to the worker owning the key group.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import NoneType
from typing import Any, Protocol, cast

from wallaroo.decorators import to_bytes
from wallaroo.engine.clock import Clock
from wallaroo.engine.deadletter import DeadLetterLog
from wallaroo.engine.fuse import FusedSegment, LineInfo, fuse
from wallaroo.engine.histogram import HistogramSnapshot, LatencyHistogram
from wallaroo.engine.state import StateStore
from wallaroo.errors import StreamDecoderError, UserCodeError
from wallaroo.plan.physical import (
    DecodeOp,
    Exchange,
    PhysicalPlan,
    SegmentPlan,
    SinkPlan,
    StateOp,
    ToSinks,
)

__all__ = [
    "Route",
    "SegmentRunner",
    "SegmentStatistics",
    "SinkPort",
    "SinkRunner",
    "SinkStatistics",
    "TimedSegmentRunner",
]


class Route(Protocol):
    """Where a segment sends its keyed output."""

    def send(self, values: list[Any], keys: list[str], times: list[int] | None = None) -> None:
        """Deliver a keyed batch (with its event times when the plan is timed)."""
        ...


class SinkPort(Protocol):
    """Where a sink's encoded outputs go (a socket writer, a list in tests...).

    A port may also have ``write_sized(payloads, nbytes)`` (the worker's outputs do):
    :class:`SinkRunner` then calls it instead of :meth:`write` for a sink of bytes, with
    ``nbytes`` the sum of the payloads' lengths, which it counts anyway: once per batch.
    """

    def write(self, payloads: list[bytes]) -> None:
        """Hand on one batch of a sink's encoded outputs, in the order the sink produced them.

        :class:`SinkRunner` calls it from inside a segment's run, with a non-empty batch. The port
        owns delivery: it may send at once, buffer (the worker's TCP and connector outputs, which
        close the backpressure gate past their high-water mark) or wait for room (the Ray
        backend's sink channels). An exception it raises propagates out of
        :meth:`SegmentRunner.run`; it does not become a dead letter.

        Args:
            payloads: for an ordinary sink, bytes: the runner has already turned ``str`` results
                into UTF-8 and ``bytearray``/``memoryview`` into bytes, and made dead letters of
                anything else. For a sink whose config sets ``payloads_are_bytes = False``
                (:attr:`SinkPlan.bytes_only` is False), the encoder's results as they are, e.g.
                the Kafka sink's ``(value, key, partition)`` tuples.
        """
        ...


@dataclass(frozen=True, slots=True)
class SegmentStatistics:
    """A segment's counters; the histograms are None unless the engine runs with metrics.

    ``latency`` is the time of the segment's own loop per batch (its steps, not what runs
    downstream); ``end_to_end``, on a source segment, the time from the batch entering it to
    every output it caused being handed to the sinks.
    """

    id: int
    name: str
    pipeline: str
    messages_in: int
    messages_out: int
    dead_letters: int
    latency: HistogramSnapshot | None = None
    end_to_end: HistogramSnapshot | None = None


@dataclass(frozen=True, slots=True)
class SinkStatistics:
    """A sink's counters, kept by its :class:`SinkRunner`.

    Attributes:
        index: the sink's index in the plan.
        name: the sink's name.
        messages: outputs handed to the sink's port.
        bytes: total size in bytes of those outputs (counted for sinks that take bytes only;
            0 for a sink whose encoder results go on as they are).
        dead_letters: encoder results that were not bytes, str or None, made dead letters
            instead of being written.
    """

    index: int
    name: str
    messages: int
    bytes: int
    dead_letters: int


def _position(it: Any) -> int | None:
    """Index of the item a list iterator (or a zip ending in one) last returned.

    Read from the iterator's pickling state, so the loop pays nothing for it.
    """
    reduced = it.__reduce__()
    if reduced[0] is zip:
        return _position(reduced[1][-1])
    if len(reduced) > 2 and isinstance(reduced[2], int):
        return int(reduced[2]) - 1
    return None


class SinkRunner:
    """Checks encoder results and passes bytes to a :class:`SinkPort`, counting them."""

    __slots__ = (
        "_dead", "_pipeline", "_sized", "dead_letters", "messages", "nbytes", "plan", "port"
    )  # fmt: skip

    def __init__(self, plan: SinkPlan, port: SinkPort, dead: DeadLetterLog, pipeline: str) -> None:
        self.plan = plan
        self.port = port
        sized = getattr(port, "write_sized", None) if plan.bytes_only else None
        self._sized: Callable[[list[bytes], int], None] | None = sized
        self._dead = dead
        self._pipeline = pipeline
        self.messages = 0
        self.nbytes = 0
        self.dead_letters = 0

    def write(self, items: list[Any]) -> None:
        """Check a batch of encoder results and hand it to the port, counting it.

        For a sink that takes bytes, ``str`` results become UTF-8, ``bytearray`` and
        ``memoryview`` become bytes, and any other type becomes a dead letter; nothing is
        written when no result is left. Otherwise the results go on unchecked.
        """
        if not self.plan.bytes_only:
            self.messages += len(items)
            self.port.write(items)
            return
        types = set(map(type, items))
        if types != {bytes}:
            items = self._normalize(items, types)
            if not items:
                return
        self.messages += len(items)
        nbytes = sum(map(len, items))
        self.nbytes += nbytes
        if self._sized is not None:
            self._sized(items, nbytes)
        else:
            self.port.write(items)

    def _normalize(self, items: list[Any], types: set[type]) -> list[bytes]:
        """``items`` (of ``types``) by :func:`to_bytes`; any other type is a dead letter."""
        if NoneType not in types:
            with contextlib.suppress(TypeError):  # else sort them one by one
                return cast(list[bytes], list(map(to_bytes, items)))
        good: list[bytes] = []
        for item in items:
            try:
                data = to_bytes(item)
            except TypeError:
                data = None
            if data is None:
                self._dead_letter(item)
            else:
                good.append(data)
        return good

    def _dead_letter(self, item: Any) -> None:
        self.dead_letters += 1
        exc = UserCodeError(
            f"the encoder of sink '{self.plan.name}' must return bytes, str or None, "
            f"got {type(item).__name__}"
        )
        self._dead.record(
            pipeline=self._pipeline,
            stage=f"encoder of sink {self.plan.name}",
            exc=exc,
            value=item,
        )

    def statistics(self) -> SinkStatistics:
        """A snapshot of this sink's counters."""
        return SinkStatistics(
            self.plan.index, self.plan.name, self.messages, self.nbytes, self.dead_letters
        )


class SegmentRunner:
    """Runs one segment over batches and dispatches its outputs.

    Args:
        plan: the segment.
        physical: the whole plan (for sink names).
        states: the state stores this segment's state steps use.
        sinks: sink runners by sink index (for a ``ToSinks`` target).
        route: where an ``Exchange`` target sends (keys, values).
        dead: the dead-letter log.
        clock: for dead-letter timestamps.
    """

    def __init__(
        self,
        plan: SegmentPlan,
        physical: PhysicalPlan,
        states: Mapping[str, StateStore],
        sinks: Sequence[SinkRunner],
        route: Route | None,
        dead: DeadLetterLog,
        clock: Clock,
    ) -> None:
        self.plan = plan
        self._physical = physical
        self._dead = dead
        self._clock = clock
        self._route = route
        self._origin: tuple[int | None, Sequence[int] | None] = (None, None)
        target = plan.target
        self._sinks = [sinks[i] for i in target.sinks] if isinstance(target, ToSinks) else []
        encoders = (
            [physical.sinks[i].encode for i in target.sinks] if isinstance(target, ToSinks) else []
        )
        self._const_key = target.const_key if isinstance(target, Exchange) else None
        self._timed = physical.timed
        self._fused: FusedSegment = fuse(
            plan.ops,
            target,
            keyed=plan.keyed,
            timed=self._timed,
            states=states,
            encoders=encoders,
            fail=self._fail,
            filename=f"<segment {plan.id}: {plan.name}>",
        )
        self._fn: Callable[..., None] = self._fused.fn
        self._needs_keys = plan.keyed or (
            isinstance(target, Exchange) and target.source_key is not None
        )
        self.messages_in = 0
        self.messages_out = 0
        self.dead_letters = 0

    @property
    def needs_keys(self) -> bool:
        """True when :meth:`run` uses the ``keys`` it is given (else they may be omitted)."""
        return self._needs_keys

    @property
    def generated_source(self) -> str:
        """The source text of the segment's generated batch function (for debugging)."""
        return self._fused.source

    def run(
        self,
        values: list[Any],
        keys: list[Any] | None = None,
        *,
        times: list[int] | None = None,
        stream_id: int | None = None,
        message_ids: Sequence[int] | None = None,
    ) -> None:
        """Process one batch. ``keys`` are required for keyed segments.

        ``times`` are the messages' event times in nanoseconds (used when the plan has
        windows; the engine's clock gives the ingest time when they are missing).
        ``stream_id`` and ``message_ids`` (parallel to ``values``) only label dead letters.
        """
        if self._needs_keys and keys is None:
            keys = [None] * len(values)
        if self._timed and times is None:
            times = [self._clock.now_ns()] * len(values)
        self._origin = (stream_id, message_ids)
        outs: list[list[Any]] = [[] for _ in range(self._fused.outputs)]
        self._fn(values, keys, times, *outs)
        self.messages_in += len(values)
        self._dispatch(outs)

    def _dispatch(self, outs: list[list[Any]]) -> None:
        if self._sinks:
            for sink, out in zip(self._sinks, outs, strict=True):
                if out:
                    self.messages_out += len(out)
                    sink.write(out)
        elif self._route is not None:
            times = outs.pop() if self._timed else None
            if self._const_key is not None:
                values = outs[0]
                keys = [self._const_key] * len(values)
            else:
                keys, values = outs
            if values:
                self.messages_out += len(values)
                self._route.send(values, keys, times)

    def _fail(self, exc: BaseException, loc: dict[str, Any]) -> None:
        tb = exc.__traceback__
        info = self._fused.lines.get(tb.tb_lineno) if tb is not None else None
        self.dead_letters += 1
        stream_id, ids = self._origin
        message_id = None
        if ids is not None and "it" in loc:
            index = _position(loc["it"])
            if index is not None and 0 <= index < len(ids):
                message_id = ids[index]
        stage, message, value = self._describe(exc, info, loc)
        key = loc.get("k") if self.plan.keyed else None
        self._dead.record(
            pipeline=self.plan.pipeline,
            stage=stage,
            exc=exc,
            value=value,
            stream_id=stream_id,
            message_id=message_id,
            key=key if isinstance(key, str) else None,
            message=message,
            now_ns=self._clock.now_ns(),
        )

    def _describe(
        self, exc: BaseException, info: LineInfo | None, loc: dict[str, Any]
    ) -> tuple[str, str, Any]:
        """(stage, message, failing input) for a dead letter."""
        if info is None:
            return (f"segment {self.plan.name}", f"{type(exc).__name__}: {exc}", loc.get("x0"))
        value = loc.get(f"x{info.depth}")
        ops = self.plan.ops
        if info.op < len(ops):
            op = ops[info.op]
            stage = op.name
            if info.kind == "persist":
                got = type(loc.get("r")).__name__
                return (
                    stage,
                    f"state computation '{op.name}' must return a tuple "
                    f"(output, persist), got {got}",
                    value,
                )
            if info.kind == "state" and isinstance(op, StateOp):
                return (
                    stage,
                    f"creating the state '{op.state}' of key {loc.get('k')!r} "
                    f"failed: {type(exc).__name__}: {exc}",
                    value,
                )
            if isinstance(op, DecodeOp):
                err = StreamDecoderError(
                    f"{op.name} rejected the payload: {type(exc).__name__}: {exc}"
                )
                return (stage, str(err), value)
            if isinstance(exc, UserCodeError):
                return (stage, f"'{op.name}': {exc}", value)
            return (stage, f"{type(exc).__name__}: {exc}", value)
        target = self.plan.target
        if info.kind == "encode" and isinstance(target, ToSinks):
            name = self._physical.sinks[target.sinks[info.sink]].name
            return (f"encoder of sink {name}", f"{type(exc).__name__}: {exc}", value)
        label = target.label if isinstance(target, Exchange) else "key"
        return (label, f"{type(exc).__name__}: {exc}", value)

    def statistics(self) -> SegmentStatistics:
        """A snapshot of the segment's counters, without latency histograms."""
        return SegmentStatistics(
            self.plan.id,
            self.plan.name,
            self.plan.pipeline,
            self.messages_in,
            self.messages_out,
            self.dead_letters,
        )


class TimedSegmentRunner(SegmentRunner):
    """A :class:`SegmentRunner` that also records latency histograms (engine metrics on).

    Each batch costs two readings of the clock's ``monotonic_ns`` (four on a source segment);
    an engine without metrics builds plain :class:`SegmentRunner` objects and pays nothing.

    Args:
        latency: records the segment's own loop time per batch, weighted by its inputs.
        end_to_end: on a source segment, records the time until the batch's outputs reached
            the sinks (downstream segments run inside :meth:`run`), weighted likewise.
        *args: as :class:`SegmentRunner`.
    """

    def __init__(
        self,
        *args: Any,
        latency: LatencyHistogram,
        end_to_end: LatencyHistogram | None = None,
    ) -> None:
        super().__init__(*args)
        self.latency = latency
        self.end_to_end = end_to_end
        mono = self._clock.monotonic_ns
        self._mono = mono
        fused = self._fn
        record = latency.record

        def timed(values: list[Any], *rest: Any) -> None:
            start = mono()
            fused(values, *rest)
            record(mono() - start, len(values))

        self._fn = timed

    def run(
        self,
        values: list[Any],
        keys: list[Any] | None = None,
        *,
        times: list[int] | None = None,
        stream_id: int | None = None,
        message_ids: Sequence[int] | None = None,
    ) -> None:
        """As :meth:`SegmentRunner.run`, timed from start to end on a source segment."""
        if self.end_to_end is None:
            super().run(values, keys, times=times, stream_id=stream_id, message_ids=message_ids)
            return
        start = self._mono()
        super().run(values, keys, times=times, stream_id=stream_id, message_ids=message_ids)
        self.end_to_end.record(self._mono() - start, len(values))

    def statistics(self) -> SegmentStatistics:
        """The segment's counters with snapshots of its latency histograms."""
        e2e = self.end_to_end.snapshot() if self.end_to_end is not None else None
        return replace(super().statistics(), latency=self.latency.snapshot(), end_to_end=e2e)
