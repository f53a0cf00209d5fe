"""The original's metrics hub protocol (``--metrics HOST:PORT``), byte for byte.

Frames (all integers big-endian; every length counts bytes):

* CONNECT: ``u32 1``, ``u8 1``.
* JOIN: ``u32 size``, ``u8 2``, ``u32+topic`` (``"metrics:" + application``), ``u32+worker``;
  ``size = 1 + 4 + len(topic) + 4 + len(worker)``.
* PAYLOAD: ``u32 size``, ``u8 3``, ``u32+event`` (``"metrics"``), ``u32+topic``, ``u32+data``;
  ``size = 1 + 12 + len(event) + len(topic) + len(data)``. One PAYLOAD per metrics record.
* A record: ``u32 size``, ``u32+name``, ``u32+category``, ``u32+worker``, ``u32+pipeline``,
  ``u16 id``, 65 x ``u64`` bin counts, ``u64 min``, ``u64 max``, ``u64 period_ns``,
  ``u64 period_end_ns``. ``size`` is what the original computes,
  ``18 + the four lengths + 704``, not the bytes that follow: receivers use PAYLOAD's length.

CONNECT and JOIN go out after every (re)connection. Every period (2 s by default, ending on a
multiple of the period in wall-clock nanoseconds) one record goes out per stage
(``"computation"``, id = segment id), and per pipeline one ``"start-to-end"`` record (name =
pipeline) and one ``"node-ingress-egress"`` record (name = worker), each with the histogram of
that period; an empty one has min ``2**64 - 1`` and max 0, as the original's. A histogram is
reported from its first value on. Nothing is queued while the hub is away.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wallaroo.engine.clock import Clock
from wallaroo.engine.histogram import BINS, HistogramSnapshot
from wallaroo.metrics.topology import Topology

if TYPE_CHECKING:
    from wallaroo.worker.runtime import WorkerStatistics

__all__ = [
    "COMPUTATION",
    "DEFAULT_PERIOD_NS",
    "NODE_INGRESS_EGRESS",
    "START_TO_END",
    "HubMetric",
    "HubReporter",
    "HubSender",
    "connect_frame",
    "join_frame",
    "metrics_record",
    "payload_frame",
]

CONNECT, JOIN, PAYLOAD = 1, 2, 3
COMPUTATION = "computation"
START_TO_END = "start-to-end"
NODE_INGRESS_EGRESS = "node-ingress-egress"
EVENT = "metrics"
DEFAULT_PERIOD_NS = 2_000_000_000
MAX_BUFFERED = 1 << 20  # a hub this far behind is dropped and reconnected

_U32 = struct.Struct(">I")
_TAIL = struct.Struct(f">H{BINS}QQQQQ")


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return _U32.pack(len(data)) + data


def connect_frame() -> bytes:
    """CONNECT."""
    return _U32.pack(1) + bytes([CONNECT])


def join_frame(topic: str, worker: str) -> bytes:
    """JOIN ``topic`` as ``worker``."""
    body = bytes([JOIN]) + _text(topic) + _text(worker)
    return _U32.pack(len(body)) + body


def payload_frame(event: str, topic: str, data: bytes) -> bytes:
    """PAYLOAD carrying ``data`` for ``event`` on ``topic``."""
    body = bytes([PAYLOAD]) + _text(event) + _text(topic) + _U32.pack(len(data)) + data
    return _U32.pack(len(body)) + body


def metrics_record(
    name: str,
    category: str,
    worker: str,
    pipeline: str,
    metric_id: int,
    histogram: HistogramSnapshot,
    period_ns: int,
    period_end_ns: int,
) -> bytes:
    """One metrics record (the data of a PAYLOAD)."""
    texts = [_text(v) for v in (name, category, worker, pipeline)]
    size = 18 + sum(len(t) - 4 for t in texts) + 704  # the original's value, see above
    tail = _TAIL.pack(
        metric_id & 0xFFFF,
        *histogram.bins,
        histogram.min_ns,
        histogram.max_ns,
        period_ns,
        period_end_ns,
    )
    return _U32.pack(size) + b"".join(texts) + tail


@dataclass(frozen=True, slots=True)
class HubMetric:
    """One record of a period: what is measured and its histogram over the period."""

    name: str
    category: str
    pipeline: str
    metric_id: int
    histogram: HistogramSnapshot


class HubReporter:
    """Turns worker statistics into the frames of each period (no I/O).

    Args:
        topology: the plan's shape (pipelines and their source stages).
        worker: the worker's name.
        period_ns: the reporting period.
    """

    def __init__(self, topology: Topology, worker: str, period_ns: int = DEFAULT_PERIOD_NS) -> None:
        if period_ns <= 0:
            raise ValueError(f"the metrics period must be positive, got {period_ns} ns")
        self.topology = topology
        self.worker = worker
        self.topic = "metrics:" + topology.app_name
        self.period_ns = period_ns
        self._last: dict[tuple[str, str], HistogramSnapshot] = {}

    def hello(self) -> bytes:
        """CONNECT and JOIN, sent after every connection."""
        return connect_frame() + join_frame(self.topic, self.worker)

    def period_end(self, now_ns: int) -> int:
        """The end of the period ``now_ns`` falls in (the next multiple of the period)."""
        return now_ns + (self.period_ns - now_ns % self.period_ns)

    def _delta(self, key: tuple[str, str], cumulative: HistogramSnapshot) -> HistogramSnapshot:
        before = self._last.get(key)
        self._last[key] = cumulative
        return cumulative.since(before) if before is not None else cumulative

    def metrics(self, stats: WorkerStatistics) -> list[HubMetric]:
        """This period's records; the next call reports what was recorded after this one."""
        out: list[HubMetric] = []
        segments = {s.id: s for s in stats.engine.segments}
        for seg in stats.engine.segments:
            if seg.latency is not None and seg.latency.count:
                hist = self._delta((COMPUTATION, seg.name), seg.latency)
                out.append(HubMetric(seg.name, COMPUTATION, seg.pipeline, seg.id, hist))
        pipelines: list[tuple[str, HistogramSnapshot]] = []
        for name in self.topology.pipelines:
            found = [segments[i].end_to_end for i in self.topology.source_segments[name]]
            e2e = [h for h in found if h is not None]
            if e2e and any(h.count for h in e2e):
                merged = HistogramSnapshot.merge(e2e)
                pipelines.append((name, self._delta((START_TO_END, name), merged)))
        out += [HubMetric(name, START_TO_END, name, 0, h) for name, h in pipelines]
        out += [HubMetric(self.worker, NODE_INGRESS_EGRESS, name, 0, h) for name, h in pipelines]
        return out

    def frames(self, stats: WorkerStatistics, period_end_ns: int) -> bytes:
        """The PAYLOAD frames of the period ending at ``period_end_ns``."""
        return b"".join(
            payload_frame(
                EVENT,
                self.topic,
                metrics_record(
                    m.name,
                    m.category,
                    self.worker,
                    m.pipeline,
                    m.metric_id,
                    m.histogram,
                    self.period_ns,
                    period_end_ns,
                ),
            )
            for m in self.metrics(stats)
        )


class _Discard(asyncio.Protocol):
    """The hub's side of the connection: whatever it says is ignored."""

    def __init__(self) -> None:
        self.lost = False

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - asyncio's signature
        self.lost = True


class HubSender:
    """Sends each period's records to a metrics hub, reconnecting while it is away.

    Args:
        host, port: the hub's address (``--metrics``).
        reporter: builds the frames.
        statistics: the worker's statistics.
        clock: wall time for the period boundaries.
        log: where connection changes are reported (once per change).
    """

    def __init__(
        self,
        host: str,
        port: int,
        reporter: HubReporter,
        statistics: Callable[[], WorkerStatistics],
        clock: Clock,
        log: logging.Logger,
    ) -> None:
        self.host, self.port = host, port
        self.reporter = reporter
        self._statistics = statistics
        self._clock = clock
        self._log = log
        self._transport: asyncio.Transport | None = None
        self._protocol: _Discard | None = None
        self._warned = False
        self.periods_sent = 0

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(_Discard, self.host, self.port), timeout=2.0
            )
        except (OSError, TimeoutError) as exc:
            if not self._warned:
                self._log.warning(
                    "metrics hub %s:%d is not reachable (%s); retrying every period",
                    self.host,
                    self.port,
                    exc,
                )
                self._warned = True
            return
        self._transport, self._protocol = transport, protocol
        self._warned = False
        self._log.info("connected to the metrics hub at %s:%d", self.host, self.port)
        transport.write(self.reporter.hello())

    def _connected(self) -> bool:
        if self._transport is None or self._protocol is None or self._protocol.lost:
            return False
        if self._transport.get_write_buffer_size() > MAX_BUFFERED:
            self._log.warning("the metrics hub is not reading; reconnecting")
            self._transport.abort()
            return False
        return True

    async def run(self) -> None:
        """Report every period until cancelled; the connection is closed then."""
        try:
            end = self.reporter.period_end(self._clock.now_ns())
            while True:
                if not self._connected():
                    await self._connect()
                await asyncio.sleep(max(end - self._clock.now_ns(), 0) / 1e9)
                frames = self.reporter.frames(self._statistics(), end)
                if self._connected() and self._transport is not None and frames:
                    self._transport.write(frames)
                    self.periods_sent += 1
                end = self.reporter.period_end(max(self._clock.now_ns(), end))
        finally:
            if self._transport is not None:
                self._transport.close()
