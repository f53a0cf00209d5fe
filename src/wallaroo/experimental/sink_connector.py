"""``SinkConnector``: the seed's sink connector client.

A connector program builds one, calls :meth:`SinkConnector.listen`, and loops on
:meth:`SinkConnector.read`. The worker connects to it (retrying until it listens) and speaks
protocol v3; a background thread answers the handshake and the two-phase-commit questions
whether or not anyone is reading.

Delivery, by mode:

* default: values are returned as they arrive, and every PHASE1 is voted commit. A worker that
  restarts connects again (its new connection replaces the old one) and may send output again
  that was already returned (at-least-once across a worker crash); without resilience the
  worker does not re-send, so output in flight when it crashed is lost.
* ``transactional=True``: values are returned only once their transaction committed (PHASE2
  commit), in order: exactly-once for the reader while the connector process lives. Everything
  is in memory (see the class docstring for what a crash of the connector loses).
* ``sink_factory=...``: the output goes to a :class:`~wallaroo.experimental.TransactionalSink`
  per worker, whose hooks make it durable (exactly-once across crashes of either side when they
  do); :meth:`SinkConnector.read` is not used.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from wallaroo.decorators import Decoder
from wallaroo.errors import ConnectorError, StreamDecoderError
from wallaroo.experimental.client_args import param_list, parse_connector_args
from wallaroo.experimental.discovery import find_sink_connector
from wallaroo.experimental.sink_inbox import Inbox, MemorySink
from wallaroo.experimental.sink_server import SinkFactory, SinkServer
from wallaroo.experimental.transactional import TransactionalSink

__all__ = ["SinkConnector", "SinkConnectorStatistics"]


@dataclass(frozen=True, slots=True)
class SinkConnectorStatistics:
    """A snapshot of a :class:`SinkConnector`.

    ``received`` counts values put where :meth:`SinkConnector.read` finds them (in
    transactional mode: committed values), ``uncommitted`` the values held in transactions
    that have not committed yet, ``commits`` and ``aborts`` the transactions' outcomes (PHASE2,
    or the resolution of an uncommitted transaction; 0 outside transactional mode).
    """

    connector: str
    address: str
    workers: tuple[str, ...]
    received: int
    read: int
    buffered: int
    paused_connections: int
    transactional: bool
    uncommitted: int
    commits: int
    aborts: int


class SinkConnector:
    """The sink side of a connector program: receives the worker's output for one connector.

    Args:
        args: the command line (``sys.argv`` when None or empty); it is also what the app's
            ``application_setup(args)`` receives.
        required_params: names of ``--<connector>-<name>`` parameters that must be given.
        optional_params: names of parameters that may be given.
        buffer_size: how many values may wait for :meth:`read`. When that many wait, the
            connector stops reading the connection that filled the buffer (TCP then pushes
            back on the worker) until readers have taken half of them. In transactional mode
            values held in uncommitted transactions count too, but reading never stops while
            no committed value waits (the PHASE2 that would release them is behind them in the
            connection): one transaction may exceed ``buffer_size``, up to what the worker
            outputs between two checkpoints.
        transactional: return only values of committed transactions (see below).
        sink_factory: ``sink_factory(worker_name)`` returns the
            :class:`~wallaroo.experimental.TransactionalSink` that stores that worker's output
            (called once per worker name, when it first connects). Implies transactional
            mode; the values go to the sinks, not to :meth:`read`.

    Attributes:
        params: the parsed parameters.
        config: the application's :class:`~wallaroo.configs.SinkConnectorConfig`.

    Raises:
        SystemExit: a required parameter is missing (argparse's usage message, exit code 2).
        ConfigurationError: the application module cannot be loaded or has no sink connector
            named by ``--connector``.

    :meth:`read` and :meth:`read_many` may be called from any thread; each value goes to one
    caller. One connection is kept per worker name: a new HELLO from a worker that is already
    connected (it restarted) replaces the old connection.

    **Transactional mode** (``transactional=True``). Each worker's output is held in memory
    until the worker's checkpoint commits it: the output since the last commit (the open
    transaction) is buffered; PHASE1 votes commit unless output is missing (a message id past
    the bytes received: the worker lost output while disconnected), duplicated, or the range
    does not match what was received, and then votes abort (the worker rolls back and sends
    it again); PHASE2 commit makes the transaction's values available to :meth:`read`, in
    order; PHASE2 abort, or a new connection of the same worker, discards the uncommitted
    values. LIST_UNCOMMITTED is answered with the transaction that voted commit and has had
    no PHASE2 yet (at most one), which the worker then commits or aborts. :meth:`read` thus
    returns each committed value exactly once while this process lives.

    Nothing is written to disk. If the connector process dies: the values of the open
    transaction are sent again by the worker (its checkpoint aborts, having lost the sink);
    the values of a transaction that voted commit but had no PHASE2 yet are **lost** when the
    worker completes that checkpoint (it has the vote); committed values not yet read are
    lost. After a restart the connector knows no offsets: it takes the worker's and votes
    abort until the worker's output lines up with what it received. For output that must
    survive a crash of the connector, use ``sink_factory`` with a durable sink such as
    ``wallaroo.connectors.file_sink``.
    """

    def __init__(
        self,
        args: Sequence[str] | None = None,
        required_params: Iterable[str] = (),
        optional_params: Iterable[str] = (),
        *,
        buffer_size: int = 4096,
        transactional: bool = False,
        sink_factory: Callable[[str], TransactionalSink] | None = None,
    ) -> None:
        argv = list(args or sys.argv)  # as the original: an empty list means sys.argv too
        required = param_list(required_params, "required_params")
        optional = param_list(optional_params, "optional_params")
        self.params = parse_connector_args(argv, required, optional)
        self.config = find_sink_connector(self.params.application, self.params.connector_name, argv)
        decoder = self.config.decoder
        self._decode = decoder.fn if type(decoder) is Decoder else decoder.decode  # as decode()
        self._buffer_size = int(buffer_size)
        self._factory: SinkFactory | None = None
        self._to_sinks = sink_factory is not None
        if sink_factory is not None:
            user_factory = sink_factory
            self._factory = lambda worker, _inbox: user_factory(worker)
        elif transactional:
            self._factory = lambda _worker, inbox: MemorySink(inbox)
        self._server: SinkServer | None = None
        self._inbox: Inbox | None = None
        self._address: tuple[str, int] | None = None

    def listen(self, host: str | None = None, port: int | None = None, backlog: int = 16) -> None:
        """Bind (with SO_REUSEADDR) and start accepting workers in a background thread.

        Args:
            host: overrides the connector's host from the application.
            port: overrides its port (0 picks a free port; see :attr:`port`).
            backlog: the listen backlog.

        Raises:
            ConnectorError: already listening, or the address cannot be bound.
        """
        if self._server is not None:
            raise ConnectorError(f"sink connector '{self.config.name}' is already listening")
        host = host or self.config.host
        port = self.config.port if port is None else int(port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            listener = socket.create_server((host, port), family=family, backlog=backlog)
        except OSError as exc:
            raise ConnectorError(
                f"sink connector '{self.config.name}' cannot listen on {host}:{port}: "
                f"{exc.strerror or exc}"
            ) from exc
        self._address = listener.getsockname()[:2]
        self._server = SinkServer(
            listener, self.config.cookie, self._buffer_size, self.config.name, self._factory
        )
        self._inbox = self._server.inbox
        self._server.start()

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` actually bound (the real port when 0 was asked for).

        Raises:
            ConnectorError: :meth:`listen` was not called.
        """
        if self._address is None:
            raise ConnectorError("the sink connector is not listening; call listen() first")
        return self._address

    @property
    def port(self) -> int:
        """The port actually bound. Raises ConnectorError before :meth:`listen`."""
        return self.address[1]

    def read(self, timeout: float | None = None) -> Any:
        """Return the next value, decoded with the application's sink decoder.

        Values come from any connected worker, in arrival order per connection.

        Args:
            timeout: seconds to wait for a value (None: wait forever).

        Raises:
            TimeoutError: no value arrived within ``timeout``.
            StreamDecoderError: the decoder failed on the next payload (it is consumed; the
                next call goes on with the following one).
            ConnectorError: not listening, closed and every value was read, or the output
                goes to the sinks of ``sink_factory``.
        """
        return self.read_many(1, timeout)[0]

    def read_many(self, max_count: int = 1024, timeout: float | None = None) -> list[Any]:
        """Return between 1 and ``max_count`` decoded values: those waiting, or the first to
        arrive within ``timeout``. Raises as :meth:`read` does; a decoder failure is raised
        by the call that reaches its payload, after the values decoded before it."""
        inbox = self._inbox
        if inbox is None:
            raise ConnectorError("the sink connector is not listening; call listen() first")
        if self._to_sinks:
            raise ConnectorError(
                f"sink connector '{self.config.name}' hands its output to the sinks of its "
                "sink_factory; read() has nothing to return (wait with join())"
            )
        payloads = inbox.take(max(1, max_count), timeout)
        with contextlib.suppress(Exception):  # else again one by one, to find the bad one
            return list(map(self._decode, payloads))
        values: list[Any] = []
        for index, payload in enumerate(payloads):
            try:
                values.append(self._decode(payload))
            except Exception as exc:
                if values:
                    inbox.push_front(payloads[index:])
                    return values
                inbox.push_front(payloads[1:])
                raise StreamDecoderError(
                    f"the decoder of sink connector '{self.config.name}' failed on a payload "
                    f"of {len(payload)} bytes: {type(exc).__name__}: {exc}"
                ) from exc
        return values

    def close(self) -> None:
        """Stop listening and close every connection; values already received can still be
        read, after which :meth:`read` raises ConnectorError. Idempotent."""
        if self._server is not None:
            self._server.stop()

    def join(self, timeout: float | None = None) -> BaseException | None:
        """Wait until the connector stops: after :meth:`close`, or when its thread failed.

        Args:
            timeout: seconds to wait (None: until it stops).

        Returns:
            the internal error the thread stopped with; None when it stopped cleanly or is
            still running after ``timeout``.

        Raises:
            ConnectorError: :meth:`listen` was not called.
        """
        if self._server is None:
            raise ConnectorError("the sink connector is not listening; call listen() first")
        return self._server.join(timeout)

    def statistics(self) -> SinkConnectorStatistics:
        """Return a snapshot of the connector's counters."""
        server, inbox = self._server, self._inbox
        host, port = self._address or (self.config.host, self.config.port)
        commits, aborts = server.transactions() if server is not None else (0, 0)
        return SinkConnectorStatistics(
            connector=self.config.name,
            address=f"{host}:{port}",
            workers=server.workers if server is not None else (),
            received=inbox.received if inbox is not None else 0,
            read=inbox.taken if inbox is not None else 0,
            buffered=len(inbox) if inbox is not None else 0,
            paused_connections=server.paused if server is not None else 0,
            transactional=self._factory is not None,
            uncommitted=inbox.held if inbox is not None else 0,
            commits=commits,
            aborts=aborts,
        )

    def __enter__(self) -> SinkConnector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
