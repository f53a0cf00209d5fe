"""A worker's metrics: the collector, the HTTP endpoint and the hub sender, as one service.

The worker starts it when ``--metrics-http`` or ``--metrics`` is given. Everything runs on the
worker's event loop: the collector samples once per interval, requests are answered from the
kept samples (``/metrics`` takes a fresh one), and the hub sender writes once per period; none
of them blocks, so processing never waits for a slow browser or hub.

Endpoints: ``/`` (the dashboard), ``/static/*`` (its files, shipped in the package),
``/metrics`` (Prometheus), ``/api/stats`` (JSON), ``/api/history`` (chart points of the kept
samples), ``/healthz``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from wallaroo.args import parse_address
from wallaroo.engine.clock import Clock
from wallaroo.errors import ConfigurationError, WallarooParameterError
from wallaroo.metrics import prometheus, report
from wallaroo.metrics.collector import DEFAULT_INTERVAL_S, DEFAULT_KEEP, MetricsCollector
from wallaroo.metrics.http import HttpServer, Request, Response, check_framework
from wallaroo.metrics.hub import DEFAULT_PERIOD_NS, HubReporter, HubSender
from wallaroo.metrics.topology import Topology
from wallaroo.plan.physical import PhysicalPlan

if TYPE_CHECKING:
    from wallaroo.worker.runtime import Worker, WorkerStatistics

__all__ = ["STATIC_FILES", "MetricsService", "split_address"]

#: file -> content type of the dashboard's files (``wallaroo/metrics/static``).
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"


def split_address(value: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` (or a bare ``PORT``, meaning 127.0.0.1) as ``(host, port)``.

    Raises:
        ConfigurationError: not an address.
    """
    text = value.strip()
    if text.isdigit():
        text = f"127.0.0.1:{text}"
    try:
        host, port = parse_address(text, flag)
    except WallarooParameterError as exc:
        raise ConfigurationError(f"{flag} expects HOST:PORT or PORT, got {value!r}") from exc
    return host, int(port)


def _json(data: Any) -> Response:
    body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, "application/json", headers=(("Cache-Control", "no-store"),))


class MetricsService:
    """Collects a worker's statistics and publishes them.

    Args:
        plan: the worker's physical plan.
        worker: the worker's name.
        statistics: the worker's ``statistics`` method.
        clock: the engine's clock (sample times, hub periods).
        log: the worker's logger.
        http: ``HOST:PORT`` for the HTTP endpoint, or None.
        hub: ``HOST:PORT`` of a metrics hub, or None.
        interval_s: seconds between samples.
        hub_period_ns: the hub's reporting period.

    Raises:
        ConfigurationError: an address is malformed.
    """

    def __init__(
        self,
        plan: PhysicalPlan,
        worker: str,
        statistics: Callable[[], WorkerStatistics],
        clock: Clock,
        log: logging.Logger,
        *,
        http: str | None = None,
        hub: str | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        hub_period_ns: int = DEFAULT_PERIOD_NS,
    ) -> None:
        self.topology = Topology.of(plan)
        self.collector = MetricsCollector(statistics, clock, interval_s=interval_s)
        self._points: deque[dict[str, Any]] = deque(maxlen=DEFAULT_KEEP)
        self.log = log
        self._http_at = split_address(http, "--metrics-http") if http else None
        if self._http_at is not None:
            check_framework()  # a missing extra is an error before any source listens
        self.http: HttpServer | None = None
        self.hub: HubSender | None = None
        if hub:
            host, port = split_address(hub, "--metrics")
            reporter = HubReporter(self.topology, worker, hub_period_ns)
            self.hub = HubSender(host, port, reporter, statistics, clock, log)
        self._static = {
            name: (resources.files("wallaroo.metrics") / "static" / name).read_bytes()
            for name in STATIC_FILES
        }

    @classmethod
    def for_worker(cls, worker: Worker) -> MetricsService:
        """The service its options ask ``worker`` for (``metrics_http``, ``metrics_hub``)."""
        options = worker.options
        return cls(
            worker.plan,
            options.name,
            worker.statistics,
            worker.engine.clock,
            worker.log,
            http=options.metrics_http,
            hub=options.metrics_hub,
            interval_s=options.metrics_interval_s,
            hub_period_ns=options.metrics_hub_period_ns,
        )

    @property
    def http_address(self) -> tuple[str, int] | None:
        """Where the HTTP endpoint listens (the real port when 0 was asked), once started."""
        return self.http.address if self.http is not None else None

    async def start(self) -> None:
        """Take the first sample and bind the HTTP endpoint.

        Raises:
            ConfigurationError: the HTTP address cannot be bound.
        """
        self.tick()
        if self._http_at is None:
            return
        host, port = self._http_at
        server = HttpServer(self._routes(), self.log)
        try:
            bound = await server.start(host, port)
        except OSError as exc:
            raise ConfigurationError(
                f"--metrics-http cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        self.http = server
        self.log.info("metrics on http://%s:%d/ (Prometheus: /metrics)", *bound)
        if host not in ("127.0.0.1", "localhost", "::1"):
            self.log.warning("the metrics endpoint has no authentication and listens on %s", host)

    def tick(self) -> None:
        """Take a sample and its chart point (each point is computed once, for the history)."""
        kept = self.collector.samples
        sample = self.collector.tick()
        self._points.append(report.point(self.topology, kept[-1] if kept else None, sample))

    async def run(self) -> None:
        """Sample every interval (and report to the hub) until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._sample(), name="metrics collector")
            if self.hub is not None:
                tasks.create_task(self.hub.run(), name="metrics hub")

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(self.collector.interval_s)
            self.tick()

    async def stop(self) -> None:
        """Close the HTTP endpoint."""
        if self.http is not None:
            await self.http.stop()

    # -- endpoints -------------------------------------------------------------------------------
    def _routes(self) -> dict[str, Callable[[Request], Response]]:
        routes: dict[str, Callable[[Request], Response]] = {
            "/": self._page,
            "/index.html": self._page,
            "/metrics": self._metrics,
            "/api/stats": self._stats,
            "/api/history": self._history,
            "/healthz": lambda _: Response(b"ok\n"),
        }
        for name in STATIC_FILES:
            routes[f"/static/{name}"] = self._file(name)
        return routes

    def _file(self, name: str) -> Callable[[Request], Response]:
        body, kind = self._static[name], STATIC_FILES[name]
        return lambda _: Response(body, kind, headers=(("Cache-Control", "no-cache"),))

    def _page(self, _: Request) -> Response:
        return Response(
            self._static["index.html"],
            STATIC_FILES["index.html"],
            headers=(("Content-Security-Policy", _CSP), ("Cache-Control", "no-cache")),
        )

    def _metrics(self, _: Request) -> Response:
        text = prometheus.exposition(self.topology, self.collector.read())
        return Response(text.encode(), prometheus.CONTENT_TYPE)

    def _stats(self, _: Request) -> Response:
        if not self.collector.samples:
            self.tick()
        samples = self.collector.samples
        return _json(report.document(self.topology, samples, self.collector.interval_s))

    def _history(self, _: Request) -> Response:
        return _json(list(self._points))
