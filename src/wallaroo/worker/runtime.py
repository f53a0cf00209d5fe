"""The worker: one process, one asyncio event loop, the embedded engine in the middle.

Every task the worker starts (sink connections, generator and Kafka sources) lives in one
:class:`asyncio.TaskGroup`; listeners are closed and sinks drained on :meth:`Worker.stop`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wallaroo.engine.clock import Clock
from wallaroo.engine.deadletter import DEFAULT_FILENAME, DeadLetterLog
from wallaroo.engine.directories import deadletter_directory, resilience_directory
from wallaroo.engine.local import EngineStatistics, LocalEngine
from wallaroo.errors import ConfigurationError
from wallaroo.loader import LoadedApplication
from wallaroo.metrics.service import MetricsService
from wallaroo.plan.compiler import compile_application
from wallaroo.plan.physical import DEFAULT_KEY_GROUPS
from wallaroo.protocol.frames import MAX_FRAME_SIZE
from wallaroo.protocol.source_session import SourceSession, SourceSessionStatistics
from wallaroo.resilience.store import CheckpointStore
from wallaroo.worker.checkpointing import Checkpointer, CheckpointStatistics, ReplayableSource
from wallaroo.worker.connector_sink import ConnectorSinkOutput
from wallaroo.worker.egress import SinkOutputStatistics
from wallaroo.worker.flow import Gate, GateStatistics
from wallaroo.worker.generator import GeneratorSource
from wallaroo.worker.ingress import ConnectorSourceListener, IngressStatistics
from wallaroo.worker.kinds import Host, Ingress, Output, sink_kind, source_kind
from wallaroo.worker.tcp_source import TCPSourceListener

__all__ = ["ConnectionStatistics", "Worker", "WorkerOptions", "WorkerStatistics"]


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Settings of one worker (the command line's worker options, parsed).

    Attributes:
        name: the worker's name; it must stay the same across restarts.
        resilience_dir: where checkpoints and the dead-letter file go.
        run_with_resilience: take checkpoints (see the resilience guide).
        time_between_checkpoints_ns: checkpoint interval in nanoseconds.
        key_groups: number of key groups of the state.
        max_frame_size: the largest frame a source connection may send.
        drain_timeout: seconds to wait for sinks to flush on shutdown.
        recover_from_previous_checkpoint: when the newest checkpoint is damaged, start from the
            newest intact one instead of refusing to start.
        metrics_http: ``HOST:PORT`` (or ``PORT``, on 127.0.0.1) for the metrics endpoint and
            dashboard (``--metrics-http``); port 0 picks a free one.
        metrics_hub: ``HOST:PORT`` of the original's metrics hub (``--metrics``).
        metrics_interval_s: seconds between two samples of the statistics.
        metrics_hub_period_ns: the hub's reporting period.
        fork_snapshots: serialise checkpoints in a forked child, so that processing pauses
            only for the fork (``machida`` sets it on Linux, see
            :mod:`wallaroo.worker.fork_snapshot`); off for a worker run in-process.
    """

    name: str = "worker"
    resilience_dir: str | None = None
    run_with_resilience: bool = False
    time_between_checkpoints_ns: int = 1_000_000_000
    key_groups: int = DEFAULT_KEY_GROUPS
    max_frame_size: int = MAX_FRAME_SIZE
    drain_timeout: float = 5.0
    recover_from_previous_checkpoint: bool = False
    metrics_http: str | None = None
    metrics_hub: str | None = None
    metrics_interval_s: float = 1.0
    metrics_hub_period_ns: int = 2_000_000_000
    fork_snapshots: bool = False

    @property
    def metrics(self) -> bool:
        """True when an endpoint or a hub asks for metrics (the engine then times batches)."""
        return bool(self.metrics_http or self.metrics_hub)


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    """One connector process's connection to a connector source (credits and counters)."""

    source: str
    peer: str
    session: SourceSessionStatistics


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """A snapshot of a worker's counters: its engine, sources, sinks, gate and checkpoints.

    Attributes:
        name: the worker's name.
        engine: the engine's counters and latency histograms.
        sources: one record per source, in the application's order.
        sinks: one record per sink, in the application's order.
        gate: the backpressure gate.
        checkpoints: the checkpointer's counters (None without resilience).
        connections: one record per connector connected to a connector source.
    """

    name: str
    engine: EngineStatistics
    sources: tuple[IngressStatistics, ...]
    sinks: tuple[SinkOutputStatistics, ...]
    gate: GateStatistics
    checkpoints: CheckpointStatistics | None = None
    connections: tuple[ConnectionStatistics, ...] = ()


class Worker:
    """Runs a loaded application until stopped.

    Args:
        loaded: the application and its module.
        options: worker settings.
        log: the logger to report to (``wallaroo.worker`` by default).
        clock: the engine's clock.
        app_args: the application's arguments (what ``application_setup(args)`` received);
            the ``Default*`` Kafka configs read their ``--kafka_*`` flags from them. None means
            this process's command line (``sys.argv[1:]``), which holds them when the worker was
            started by ``machida`` or ``wallaroo run``.

    Raises:
        ConfigurationError: a source or sink the worker cannot run, or a Kafka one without
            confluent-kafka installed.
        WallarooParameterError: a ``--kafka_*`` flag is missing or has a bad value.
    """

    def __init__(
        self,
        loaded: LoadedApplication,
        options: WorkerOptions | None = None,
        *,
        log: logging.Logger | None = None,
        clock: Clock | None = None,
        app_args: Sequence[str] | None = None,
    ) -> None:
        self.options = options or WorkerOptions()
        self.log = log or logging.getLogger("wallaroo.worker")
        self.loaded = loaded
        self.app_args = list(sys.argv[1:] if app_args is None else app_args)
        self.plan = compile_application(loaded.application, key_groups=self.options.key_groups)
        self._stop: asyncio.Event | None = None
        self._started = False
        self.gate = Gate()
        dead = DeadLetterLog(self._deadletter_path(), worker=self.options.name, log=self.log)
        dead.serialize = loaded.serialize
        self._dead = dead
        host = Host(
            app_name=self.plan.app_name,
            worker_name=self.options.name,
            app_args=tuple(self.app_args),
            gate=self.gate,
            log=self.log,
            dead_letters=dead,
            max_frame_size=self.options.max_frame_size,
            resilient=self.options.run_with_resilience,
            drain=self._drain,
        )
        self.outputs: list[Output] = [sink_kind(p).output(p, host) for p in self.plan.sinks]
        self.engine = LocalEngine(
            self.plan, self.outputs, dead_letters=dead, clock=clock, metrics=self.options.metrics
        )
        kinds = [source_kind(source) for source in self.plan.sources]
        self.ingresses: list[Ingress] = [
            kind.ingress(source, self.engine, host)
            for kind, source in zip(kinds, self.plan.sources, strict=True)
        ]
        self.checkpointer = self._checkpointer() if self.options.run_with_resilience else None
        self.metrics = MetricsService.for_worker(self) if self.options.metrics else None

    def _checkpointer(self) -> Checkpointer:
        directory = resilience_directory(self.options.resilience_dir)
        return Checkpointer(
            app_name=self.plan.app_name,
            worker_name=self.options.name,
            engine=self.engine,
            store=CheckpointStore(directory / "checkpoints"),
            sources=[i for i in self.ingresses if isinstance(i, ReplayableSource)],
            generators=[i for i in self.ingresses if isinstance(i, GeneratorSource)],
            sinks=[o for o in self.outputs if isinstance(o, ConnectorSinkOutput)],
            serialize=self.loaded.serialize,
            deserialize=self.loaded.deserialize,
            interval_s=self.options.time_between_checkpoints_ns / 1e9,
            log=self.log,
            fork_snapshots=self.options.fork_snapshots,
        )

    def _deadletter_path(self) -> Path:
        return deadletter_directory(self.options.resilience_dir) / DEFAULT_FILENAME

    @property
    def listeners(self) -> list[ConnectorSourceListener | TCPSourceListener]:
        """The sources that listen on an address (connector and TCP sources)."""
        return [
            i for i in self.ingresses if isinstance(i, ConnectorSourceListener | TCPSourceListener)
        ]

    @property
    def addresses(self) -> dict[str, tuple[str, int]]:
        """The address each listening source is bound to, by source name."""
        return {lst.plan.name: lst.address for lst in self.listeners if lst.server is not None}

    async def run(self, ready: Callable[[Worker], None] | None = None) -> None:
        """Start everything, call ``ready(self)``, and run until :meth:`stop`.

        Raises:
            ConfigurationError: a source cannot listen on its address.
            CheckpointError: the newest checkpoint is damaged (see
                ``recover_from_previous_checkpoint``) or belongs to another application.
        """
        if self._started:
            raise RuntimeError("a worker runs once")
        self._started = True
        self._stop = stop = asyncio.Event()
        if self.checkpointer is not None:
            self.checkpointer.recover(fall_back=self.options.recover_from_previous_checkpoint)
        try:
            await self._listen()
            if self.metrics is not None:
                await self.metrics.start()
        except ConfigurationError:
            for ingress in self.ingresses:
                await ingress.stop()
            raise
        try:
            await self._run_tasks(stop, ready)
        finally:  # when a task failed, _shutdown() did not run: the endpoint still serves
            if self.metrics is not None:
                await self.metrics.stop()

    async def _run_tasks(self, stop: asyncio.Event, ready: Callable[[Worker], None] | None) -> None:
        """Run the sinks and the background tasks until ``stop`` is set, then shut down."""
        async with asyncio.TaskGroup() as tasks:
            for output in self.outputs:
                tasks.create_task(output.run(), name=f"sink {output.name}")
            background = [
                tasks.create_task(coro, name=name)
                for ingress in self.ingresses
                for name, coro in ingress.background()
            ]
            if self.checkpointer is not None:
                background.append(tasks.create_task(self.checkpointer.run(), name="checkpoints"))
            if self.engine.windows:
                background.append(tasks.create_task(self._tick(), name="windows"))
            if self.metrics is not None:
                background.append(tasks.create_task(self.metrics.run(), name="metrics"))
            background.append(tasks.create_task(self._summaries(), name="log summaries"))
            self.log.info(
                "worker '%s' is running application '%s'", self.options.name, self.plan.app_name
            )
            if ready is not None:
                ready(self)
            await stop.wait()
            for task in background:
                task.cancel()
            await self._shutdown()

    async def _summaries(self, interval: float = 1.0) -> None:
        """Log the dead-letter summary lines that are due, while the worker runs."""
        while True:
            await asyncio.sleep(interval)
            self._dead.flush_log()

    async def _tick(self, interval: float = 0.1) -> None:
        """Let idle windows fire as time passes."""
        while True:
            await asyncio.sleep(interval)
            self.engine.tick()

    async def _listen(self) -> None:
        for ingress in self.ingresses:
            await ingress.open()

    async def _drain(self, timeout: float) -> bool:
        """Wait until every sink has handed its output on (or ``timeout``)."""
        results = [await output.drain(timeout) for output in self.outputs]
        return all(results)

    async def _shutdown(self) -> None:
        for ingress in self.ingresses:
            await ingress.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        if self.checkpointer is not None:  # a last checkpoint: a restart replays nothing
            await self.checkpointer.checkpoint()
        drained = True
        for output in self.outputs:
            if not await output.drain(self.options.drain_timeout):
                drained = False
                self.log.warning(
                    "sink '%s' still held %d bytes at shutdown", output.name, output.buffered_bytes
                )
        for ingress in self.ingresses:  # a Kafka source commits only what every sink handed on
            await ingress.finish(commit=drained)
        for output in self.outputs:
            output.stop()
        self.engine.dead_letters.close()
        self.log.info("worker '%s' stopped", self.options.name)

    def stop(self) -> None:
        """Ask the worker to stop (from the event loop's thread)."""
        if self._stop is not None:
            self._stop.set()

    def statistics(self) -> WorkerStatistics:
        """A snapshot of every counter of the worker (what ``/api/stats`` serves)."""
        return WorkerStatistics(
            self.options.name,
            self.engine.statistics(),
            tuple(i.statistics() for i in self.ingresses),
            tuple(o.statistics() for o in self.outputs),
            self.gate.statistics(),
            self.checkpointer.statistics() if self.checkpointer is not None else None,
            tuple(self._connections()),
        )

    def _connections(self) -> list[ConnectionStatistics]:
        found = []
        for listener in self.listeners:
            for conn in list(listener.connections):
                session = getattr(conn, "session", None)
                if isinstance(session, SourceSession):
                    peer = str(getattr(conn, "peer", "?"))
                    found.append(
                        ConnectionStatistics(listener.plan.name, peer, session.statistics())
                    )
        return found
