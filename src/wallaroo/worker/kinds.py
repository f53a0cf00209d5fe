"""The registry of source and sink kinds: each config class builds its own runtime parts.

A source config (``SourceConnectorConfig``, ``TCPSourceConfig``, ``GenSourceConfig``, the Kafka
parsers) is registered with a :class:`SourceKind` that builds its :class:`Ingress`; a sink config
with a :class:`SinkKind` that builds its output. The embedded worker, the Ray actors and the
testing harness ask :func:`source_kind` / :func:`sink_kind` and never branch on config types, so
adding a kind means writing its ingress (or output) and one :func:`register_source` (or
:func:`register_sink`) call here.

Every ingress offers the same life cycle (:class:`Ingress`): ``open`` (listen, or nothing),
``background`` (the coroutines the owner runs in its task group), ``stop`` (take no more
input), ``finish`` (after the sinks drained). What a checkpoint records of a source is its own:
a :class:`~wallaroo.worker.checkpointing.ReplayableSource` has positions, a
:class:`~wallaroo.worker.generator.GeneratorSource` its next value.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from wallaroo.configs import (
    GenSourceConfig,
    SinkConnectorConfig,
    SourceConnectorConfig,
    TCPSinkConfig,
    TCPSourceConfig,
)
from wallaroo.engine.deadletter import DeadLetterLog
from wallaroo.engine.local import LocalEngine
from wallaroo.errors import ConfigurationError
from wallaroo.kafka import (
    CustomKafkaSinkCLIParser,
    CustomKafkaSourceCLIParser,
    DefaultKafkaSinkCLIParser,
    DefaultKafkaSourceCLIParser,
)
from wallaroo.plan.physical import SinkPlan, SourcePlan
from wallaroo.protocol.frames import MAX_FRAME_SIZE
from wallaroo.protocol.sink_session import WorkerSinkSession
from wallaroo.worker.connector_sink import ConnectorSinkOutput
from wallaroo.worker.egress import TCPSinkOutput
from wallaroo.worker.flow import Gate
from wallaroo.worker.generator import GeneratorSource
from wallaroo.worker.ingress import ConnectorSourceListener, IngressStatistics
from wallaroo.worker.kafka import KafkaSource
from wallaroo.worker.kafka_sink import KafkaSinkOutput
from wallaroo.worker.tcp_source import TCPSourceListener

__all__ = [
    "Host",
    "Ingress",
    "Output",
    "SinkKind",
    "SourceKind",
    "kafka_group_id",
    "register_sink",
    "register_source",
    "sink_kind",
    "source_kind",
]


@dataclass(frozen=True, slots=True)
class Host:
    """What the process running a source or a sink gives its runtime parts.

    Attributes:
        app_name: the application's name.
        worker_name: the worker's name (sink sessions and transaction ids carry it).
        app_args: the application's arguments (the ``Default*`` Kafka configs read their
            ``--kafka_*`` flags from them).
        gate: the backpressure gate (sources read nothing while it is closed; sinks close it).
        log: where to report.
        dead_letters: where what cannot be processed or written goes.
        max_frame_size: the largest frame a connection may send.
        resilient: checkpoints are on.
        drain: waits up to the given seconds until every sink handed its output on; True if
            it did (a Kafka source commits its offsets only then).
        backend: names the host in errors ("the worker", "the Ray backend").
    """

    app_name: str
    worker_name: str
    app_args: tuple[str, ...]
    gate: Gate
    log: logging.Logger
    dead_letters: DeadLetterLog
    max_frame_size: int = MAX_FRAME_SIZE
    resilient: bool = False
    drain: Callable[[float], Awaitable[bool]] | None = None
    backend: str = "the worker"


class Ingress(Protocol):
    """A source's runtime part: it pushes batches into the engine's source runner."""

    plan: SourcePlan
    kind: str

    async def open(self, retry: float = 0.0) -> str:
        """Start taking input (bind a listener); return ``host:port`` or the source's name.

        Raises:
            ConfigurationError: the address stayed taken for ``retry`` seconds.
        """
        ...

    def background(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """The coroutines to run while the source runs, with task names."""
        ...

    async def stop(self) -> None:
        """Take no more input (close listeners and their connections)."""
        ...

    async def finish(self, *, commit: bool) -> None:
        """After the sinks drained (``commit``: they handed everything on); the last call."""
        ...

    def statistics(self) -> IngressStatistics:
        """The source's counters."""
        ...


class Output(Protocol):
    """A sink's runtime part: the engine's sink port, with a life cycle."""

    name: str

    def write(self, payloads: list[Any]) -> None:
        """Hand on a batch of encoded outputs, in order."""
        ...

    async def run(self) -> None:
        """Connect and keep the output flowing until stopped."""
        ...

    async def drain(self, timeout: float) -> bool:
        """Wait until everything written was handed on; False after ``timeout`` seconds."""
        ...

    def stop(self) -> None:
        """Close the connection."""
        ...

    @property
    def buffered_bytes(self) -> int:
        """Bytes written but not yet handed on."""
        ...

    def statistics(self) -> Any:
        """The sink's counters (a ``SinkOutputStatistics``)."""
        ...


def _no_encoder(_config: Any) -> Callable[[Any], Any] | None:
    return None


def _no_generator(_config: Any) -> Any:
    return None


@dataclass(frozen=True, slots=True)
class SourceKind:
    """How sources of one config class run.

    Attributes:
        name: the kind, as logs and errors name it.
        ingress: builds the runtime part of a source of this kind in ``engine``.
        encoder: the encoding function the testing harness applies to non-``bytes`` items
            (a connector source's encoder: what ``SourceConnector.write(value)`` does), or None.
        generator: the source's generator (a generator source's), or None.
    """

    name: str
    ingress: Callable[[SourcePlan, LocalEngine, Host], Ingress]
    encoder: Callable[[Any], Callable[[Any], Any] | None] = _no_encoder
    generator: Callable[[Any], Any] = _no_generator


@dataclass(frozen=True, slots=True)
class SinkKind:
    """How sinks of one config class run.

    Attributes:
        name: the kind, as logs and errors name it.
        output: builds the runtime part of a sink of this kind.
        decoder: the decoding function of a connector sink's outputs (what
            ``SinkConnector.read()`` applies), or None.
    """

    name: str
    output: Callable[[SinkPlan, Host], Output]
    decoder: Callable[[Any], Callable[[bytes], Any] | None] = _no_encoder


_SOURCES: dict[type, SourceKind] = {}
_SINKS: dict[type, SinkKind] = {}


def register_source(config_class: type, kind: SourceKind) -> None:
    """Run sources whose config is a ``config_class`` (or a subclass) with ``kind``."""
    _SOURCES[config_class] = kind


def register_sink(config_class: type, kind: SinkKind) -> None:
    """Run sinks whose config is a ``config_class`` (or a subclass) with ``kind``."""
    _SINKS[config_class] = kind


def _lookup(table: dict[type, Any], what: str, plan: SourcePlan | SinkPlan, backend: str) -> Any:
    for cls in type(plan.config).__mro__:
        found = table.get(cls)
        if found is not None:
            return found
    raise ConfigurationError(
        f"{backend} cannot run {what} '{plan.name}' ({type(plan.config).__name__})"
    )


def source_kind(plan: SourcePlan, backend: str = "the worker") -> SourceKind:
    """The kind of source ``plan``.

    Raises:
        ConfigurationError: no kind runs its config.
    """
    return _lookup(_SOURCES, "source", plan, backend)  # type: ignore[no-any-return]


def sink_kind(plan: SinkPlan, backend: str = "the worker") -> SinkKind:
    """The kind of sink ``plan``.

    Raises:
        ConfigurationError: no kind runs its config.
    """
    return _lookup(_SINKS, "sink", plan, backend)  # type: ignore[no-any-return]


def kafka_group_id(app_name: str, source_name: str) -> str:
    """The consumer group a Kafka source commits its offsets to."""
    return f"wallaroo-{app_name}-{source_name}"


# -- the kinds ----------------------------------------------------------------------------------


def _connector_source(plan: SourcePlan, engine: LocalEngine, host: Host) -> Ingress:
    return ConnectorSourceListener(
        plan, engine, host.gate, host.log, host.max_frame_size, resilient=host.resilient
    )


def _tcp_source(plan: SourcePlan, engine: LocalEngine, host: Host) -> Ingress:
    return TCPSourceListener(plan, engine, host.gate, host.log, host.max_frame_size)


def _generator_source(plan: SourcePlan, engine: LocalEngine, host: Host) -> Ingress:
    return GeneratorSource(plan, engine, host.gate, host.log)


def _kafka_source(plan: SourcePlan, engine: LocalEngine, host: Host) -> Ingress:
    config = plan.config
    if isinstance(config, DefaultKafkaSourceCLIParser):
        config = config.resolve(list(host.app_args))
    if host.drain is None:
        raise ConfigurationError(f"{host.backend} cannot drain the sinks of source '{plan.name}'")
    return KafkaSource(
        plan,
        config,
        engine,
        host.gate,
        host.log,
        group_id=kafka_group_id(host.app_name, plan.name),
        drain=host.drain,
        resilient=host.resilient,
    )


def _connector_sink(plan: SinkPlan, host: Host) -> Output:
    config = plan.config
    session = WorkerSinkSession(
        app_name=host.app_name,
        worker_name=host.worker_name,
        sink_id=plan.index,
        cookie=config.cookie,
        max_frame_size=host.max_frame_size,
    )
    return ConnectorSinkOutput(
        plan.name,
        config.host,
        config.port,
        host.gate,
        host.log,
        session,
        resilient=host.resilient,
    )


def _tcp_sink(plan: SinkPlan, host: Host) -> Output:
    config = plan.config
    return TCPSinkOutput(plan.name, config.host, config.port, host.gate, host.log)


def _kafka_sink(plan: SinkPlan, host: Host) -> Output:
    config = plan.config
    if isinstance(config, DefaultKafkaSinkCLIParser):
        config = config.resolve(list(host.app_args))
    return KafkaSinkOutput(plan.name, config, host.gate, host.log, host.dead_letters)


register_source(
    SourceConnectorConfig,
    SourceKind("connector source", _connector_source, encoder=lambda c: c.encoder.encode),
)
register_source(TCPSourceConfig, SourceKind("TCP source", _tcp_source))
register_source(
    GenSourceConfig,
    SourceKind("generator source", _generator_source, generator=lambda c: c.generator),
)
register_source(DefaultKafkaSourceCLIParser, SourceKind("Kafka source", _kafka_source))
register_source(CustomKafkaSourceCLIParser, SourceKind("Kafka source", _kafka_source))
register_sink(
    SinkConnectorConfig,
    SinkKind("connector sink", _connector_sink, decoder=lambda c: c.decoder.decode),
)
register_sink(TCPSinkConfig, SinkKind("TCP sink", _tcp_sink))
register_sink(DefaultKafkaSinkCLIParser, SinkKind("Kafka sink", _kafka_sink))
register_sink(CustomKafkaSinkCLIParser, SinkKind("Kafka sink", _kafka_sink))
