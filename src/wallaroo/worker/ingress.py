"""Sources of the worker that listen: connector sources here, framed TCP sources in
:mod:`wallaroo.worker.tcp_source` (on the same :class:`Listener`); generators run in
:mod:`wallaroo.worker.generator`.

Each connection is an :class:`asyncio.Protocol`: bytes arrive in ``data_received``, are cut into
messages, and these go through the engine before the callback returns, in batches of at most
:data:`MAX_BATCH` (each batch's output is handed to the sinks before the next batch starts, so a
large read does not hold its first messages back until its last are done). A connection whose
peer misbehaves is answered (an ERROR frame for connectors), logged in one line and closed; the
worker and its other connections carry on. If the engine itself fails on a batch, its messages
become dead letters before the batch is acknowledged (:meth:`Listener.lost`).
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, cast

from wallaroo.configs import SourceConnectorConfig
from wallaroo.engine.local import LocalEngine
from wallaroo.errors import ConfigurationError
from wallaroo.logsummary import clip
from wallaroo.plan.physical import SourcePlan
from wallaroo.protocol.events import (
    HandshakeDone,
    Messages,
    SessionClosed,
    StreamClosed,
    StreamOpened,
)
from wallaroo.protocol.frames import Restart
from wallaroo.protocol.source_session import SourceSession
from wallaroo.protocol.stream_registry import StreamRegistry
from wallaroo.worker.flow import Gate

__all__ = ["ConnectorSourceListener", "IngressStatistics", "Listener", "batch_slice"]

ACK_INTERVAL = 0.2
MAX_BATCH = 1024
"""The most messages handed to the engine at once (a socket read holds up to 256 KiB)."""


@dataclass(frozen=True, slots=True)
class IngressStatistics:
    """A snapshot of one source's counters.

    Attributes:
        name: the source's name.
        kind: ``"connector source"``, ``"TCP source"``, ``"Kafka source"`` or
            ``"generator source"``.
        address: ``host:port`` it listens on (the bootstrap servers for Kafka, empty for a
            generator).
        connections: connections open now (Kafka: partitions assigned; 0 for a generator).
        connections_total: connections accepted since start (Kafka: as ``connections``).
        messages: messages handed to the engine, dead letters included.
        errors: connections closed for breaking the protocol or framing, batches the engine
            failed on, (Kafka) consumer errors, and (generator) a generator that raised.
        empty_messages: connector MESSAGEs without a payload: counted, not processed (0 for
            other kinds).
    """

    name: str
    kind: str
    address: str
    connections: int
    connections_total: int
    messages: int
    errors: int
    empty_messages: int = 0
    """MESSAGEs without a payload (the protocol's "no data"): counted, not processed."""


class Listener(abc.ABC):
    """What connector and TCP sources share: a listening socket, its connections, counters."""

    kind = "source"

    def __init__(
        self,
        plan: SourcePlan,
        engine: LocalEngine,
        gate: Gate,
        log: logging.Logger,
        max_frame_size: int,
    ) -> None:
        self.plan = plan
        self.engine = engine
        self.gate = gate
        self.log = log
        self.max_frame_size = max_frame_size
        self.runner = engine.source_runner(plan.index)
        self.server: asyncio.Server | None = None
        self.address = ("", 0)
        self.connections: set[asyncio.BaseProtocol] = set()
        self.connections_total = 0
        self.messages = 0
        self.errors = 0
        self.empty_messages = 0
        self._internal_logged = False

    @abc.abstractmethod
    def _protocol(self) -> asyncio.Protocol:
        """A protocol object for one new connection."""

    def lost(
        self,
        exc: Exception,
        payloads: list[Any],
        where: str,
        *,
        stream_id: int | None = None,
        message_ids: list[int] | None = None,
    ) -> None:
        """The engine failed on a whole batch (a bug, not a bad message): every message of it
        becomes a dead letter before the batch is acknowledged, so none is lost silently. The
        traceback is logged once per listener; the dead-letter log summarises the rest."""
        self.errors += 1
        if not self._internal_logged:
            self._internal_logged = True
            self.log.exception(
                "internal error while processing %s; its %d messages are dead letters (later "
                "ones are only summarised)",
                where,
                len(payloads),
            )
        dead = self.engine.dead_letters
        for i, payload in enumerate(payloads):
            dead.record(
                pipeline=self.plan.pipeline,
                stage=f"source {self.plan.name} (internal error)",
                exc=exc,
                value=payload,
                stream_id=stream_id,
                message_id=None if message_ids is None else message_ids[i],
            )

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (port 0: a free one); return the address bound.

        Raises:
            OSError: the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._protocol, host, port, reuse_address=True)
        sock = self.server.sockets[0]
        self.address = sock.getsockname()[:2]
        return self.address

    async def open(self, retry: float = 0.0) -> str:
        """Listen on the config's address, trying for ``retry`` seconds while it is taken (a
        previous incarnation may hold it for a moment); log and return ``host:port``.

        Raises:
            ConfigurationError: the address cannot be bound (or stayed taken).
        """
        config = self.plan.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + retry
        while True:
            try:
                host, port = await self.start(config.host, config.port)
            except OSError as exc:
                if loop.time() < deadline:
                    await asyncio.sleep(0.1)
                    continue
                raise ConfigurationError(
                    f"{self.kind} '{self.plan.name}' cannot listen on "
                    f"{config.host}:{config.port}: {exc.strerror or exc}"
                ) from exc
            self.log.info("%s '%s' listening on %s:%d", self.kind, self.plan.name, host, port)
            return f"{host}:{port}"

    def background(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """Nothing runs beside a plain listener."""
        return []

    async def finish(self, *, commit: bool) -> None:  # noqa: B027 (a hook, empty by default)
        """Nothing to do after the sinks drained."""

    async def stop(self) -> None:
        """Stop listening and close every connection; return once the server is closed."""
        if self.server is not None:
            self.server.close()
            for conn in list(self.connections):
                transport = getattr(conn, "transport", None)
                if transport is not None:
                    transport.close()
            await self.server.wait_closed()

    def statistics(self) -> IngressStatistics:
        """A snapshot of this source's counters."""
        return IngressStatistics(
            self.plan.name,
            self.kind,
            f"{self.address[0]}:{self.address[1]}",
            len(self.connections),
            self.connections_total,
            self.messages,
            self.errors,
            self.empty_messages,
        )


class ConnectorSourceListener(Listener):
    """Listens for connector processes and speaks protocol v3 with each (worker side).

    With ``resilient``, connectors are acknowledged only for positions inside a committed
    checkpoint (:meth:`committed`); :meth:`rollback` sends them RESTART so they replay.
    """

    kind = "connector source"

    def __init__(
        self,
        plan: SourcePlan,
        engine: LocalEngine,
        gate: Gate,
        log: logging.Logger,
        max_frame_size: int,
        *,
        resilient: bool = False,
    ) -> None:
        super().__init__(plan, engine, gate, log, max_frame_size)
        self.resilient = resilient
        self.config: SourceConnectorConfig = plan.config
        self.registry = StreamRegistry()

    def _protocol(self) -> asyncio.Protocol:
        return _ConnectorConnection(self)

    def background(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """The acknowledgement timer (:meth:`ack_timer`)."""
        return [(f"acks {self.plan.name}", self.ack_timer())]

    async def ack_timer(self, interval: float = ACK_INTERVAL) -> None:
        """Acknowledge processed messages at least every ``interval`` seconds.

        Sessions grant credits when a connector runs low; a slow trickle of messages would
        otherwise wait that long for its acknowledgements.
        """
        while True:
            await asyncio.sleep(interval)
            for conn in list(self.connections):
                if isinstance(conn, _ConnectorConnection):
                    conn.flush(force=True)

    def new_session(self) -> SourceSession:
        """A protocol session for one new connector connection, configured from the source's
        config (cookie, credits) and sharing the listener's stream registry.
        """
        c = self.config
        return SourceSession(
            cookie=c.cookie,
            max_credits=c.max_credits,
            refill_credits=c.refill_credits,
            registry=self.registry,
            max_frame_size=self.max_frame_size,
            acks_after_checkpoint=self.resilient,
        )

    def _sessions(self) -> list[_ConnectorConnection]:
        return [c for c in self.connections if isinstance(c, _ConnectorConnection)]

    def positions(self) -> dict[int, int]:
        """The last processed point of reference of every stream this listener has seen."""
        found = self.registry.inactive_positions()
        for conn in self._sessions():
            found.update(conn.session.positions())
        return found

    def committed(self, positions: dict[int, int]) -> None:
        """A checkpoint holding ``positions`` is durable: acknowledge them to the connectors."""
        for conn in self._sessions():
            conn.session.checkpoint_committed(positions)
            conn.flush(force=False)

    def restore(self, positions: dict[int, int]) -> None:
        """Start from a checkpoint: streams resume after their checkpointed positions."""
        self.registry.reset(positions)

    def rollback(self, positions: dict[int, int]) -> None:
        """Back to a checkpoint: RESTART every connector (they replay after ``positions``)."""
        for conn in self._sessions():
            conn.restart()
        self.registry.reset(positions)


class _ConnectorConnection(asyncio.Protocol):
    def __init__(self, listener: ConnectorSourceListener) -> None:
        self.listener = listener
        self.session = listener.new_session()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.program: str | None = None  # "name (instance)" once HELLO was accepted
        self.process = listener.runner.run
        self.needs_keys = listener.runner.needs_keys
        self.timed = listener.engine.plan.timed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # stream servers give Transports
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.listener.connections.add(self)
        self.listener.connections_total += 1

    def data_received(self, data: bytes) -> None:
        session = self.session
        for event in session.receive(data):
            if type(event) is Messages:
                self._deliver(event)
            elif isinstance(event, SessionClosed):
                self._closed(event)
            elif isinstance(event, HandshakeDone):
                self._greeted(event)
            elif isinstance(event, StreamOpened):
                self.listener.log.debug(
                    "connector %s opened stream %d (%s) at %d",
                    self.peer,
                    event.stream_id,
                    event.stream_name,
                    event.point_of_ref,
                )
            elif isinstance(event, StreamClosed):
                self.listener.log.debug(
                    "connector %s ended stream %d at %d",
                    self.peer,
                    event.stream_id,
                    event.point_of_ref,
                )
        self.flush(force=False)
        if self.transport is not None and not session.closed:
            self.listener.gate.hold(self.transport)

    def flush(self, *, force: bool) -> None:
        """Send a due ACK (any pending one with ``force``) and whatever else is queued."""
        session = self.session
        session.flush_acks(force)
        transport = self.transport
        if transport is None:
            return
        out = session.take_output()
        if out:
            transport.write(out)
        if session.closed:
            transport.close()

    def restart(self) -> None:
        """Send RESTART, forget the session's streams and close (the connector reconnects)."""
        self.session.connection_lost()
        if self.transport is not None:
            self.transport.write(Restart("").encode())
            self.transport.close()

    def _deliver(self, event: Messages) -> None:
        payloads = event.payloads
        ids = event.message_ids
        keys: list[Any] | None = None
        if None in payloads:  # empty MESSAGEs carry no data; their ids still count as seen
            keep = [i for i, p in enumerate(payloads) if p is not None]
            self.listener.empty_messages += len(payloads) - len(keep)
            payloads = [payloads[i] for i in keep]
            ids_kept = [ids[i] for i in keep]
            raw_keys = [event.keys[i] for i in keep]
        else:
            ids_kept, raw_keys = ids, event.keys
        if self.needs_keys:
            keys = [None if k is None else k.decode("utf-8", "surrogateescape") for k in raw_keys]
        times = self._event_times(event, payloads) if self.timed else None
        for start in range(0, len(payloads), MAX_BATCH):
            stop = start + MAX_BATCH
            try:
                self.process(
                    batch_slice(payloads, start, stop),
                    None if keys is None else batch_slice(keys, start, stop),
                    times=None if times is None else batch_slice(times, start, stop),
                    stream_id=event.stream_id,
                    message_ids=batch_slice(ids_kept, start, stop),
                )
            except Exception as exc:
                self.listener.lost(
                    exc,
                    batch_slice(payloads, start, stop),
                    f"stream {event.stream_id} from {self.peer}",
                    stream_id=event.stream_id,
                    message_ids=batch_slice(ids_kept, start, stop),
                )
        self.listener.messages += len(payloads)
        self.session.processed(event.stream_id, ids[-1])

    def _event_times(self, event: Messages, payloads: list[Any]) -> list[int]:
        """MESSAGE event times (ms since the epoch) in ns; 0 or less means ingest time."""
        now = self.listener.engine.clock.now_ns()
        kept = [t for t, p in zip(event.event_times, event.payloads, strict=True) if p is not None]
        if len(kept) != len(payloads):  # pragma: no cover - same filter as the payloads
            return [now] * len(payloads)
        return [t * 1_000_000 if t > 0 else now for t in kept]

    def _greeted(self, event: HandshakeDone) -> None:
        self.program = f"{clip(event.program_name, 80)!s} ({clip(event.instance_name, 80)!s})"
        self._log_link("connected to")

    def _log_link(self, what: str) -> None:
        """One INFO line: this connector (``name (instance)``, escaped) ``what`` the source."""
        listener = self.listener
        listener.log.info(
            "connector %s from %s %s %s '%s'",
            self.program,
            self.peer,
            what,
            listener.kind,
            listener.plan.name,
        )

    def _closed(self, event: SessionClosed) -> None:
        if event.error:
            self.listener.errors += 1
            self.listener.log.warning(
                "connector %s on '%s': %s; connection closed",
                self.peer,
                self.listener.plan.name,
                event.reason,
            )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.program is not None:  # only connectors that said HELLO are worth a line
            self._log_link("disconnected from")
            self.program = None
        self.session.connection_lost()
        self.listener.connections.discard(self)
        if self.transport is not None:
            self.listener.gate.forget(self.transport)
        self.transport = None


def batch_slice(items: list[Any], start: int, stop: int) -> list[Any]:
    """``items[start:stop]``, without a copy when that is all of them."""
    return items if start == 0 and stop >= len(items) else items[start:stop]
