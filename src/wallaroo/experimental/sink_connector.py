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

An output the sink decoder rejects is a dead letter by default (``on_decode_error``): recorded
in ``./wallaroo-deadletter/<connector>-sink.jsonl`` and skipped, so a reading loop goes on.
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from wallaroo.decorators import Decoder
from wallaroo.errors import ConnectorError, StreamDecoderError, WallarooParameterError
from wallaroo.experimental.client_args import param_list, parse_connector_args
from wallaroo.experimental.discovery import load_sink_connector
from wallaroo.experimental.sink_deadletters import DEADLETTER_PARAM, SinkDeadLetters, default_path
from wallaroo.experimental.sink_inbox import Batch, Inbox, MemorySink
from wallaroo.experimental.sink_server import SinkFactory, SinkServer
from wallaroo.experimental.transactional import TransactionalSink

__all__ = ["SinkConnector", "SinkConnectorStatistics"]


@dataclass(frozen=True, slots=True)
class SinkConnectorStatistics:
    """A snapshot of a :class:`SinkConnector`.

    ``received`` counts values put where :meth:`SinkConnector.read` finds them (in
    transactional mode: committed values), ``uncommitted`` the values held in transactions
    that have not committed yet, ``commits`` and ``aborts`` the transactions' outcomes (PHASE2,
    or the resolution of an uncommitted transaction; 0 outside transactional mode),
    ``dead_letters`` the outputs recorded in the dead-letter file (``read`` counts them too:
    they were taken from the buffer).
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
    dead_letters: int


class SinkConnector:
    """The sink side of a connector program: receives the worker's output for one connector.

    Args:
        args: the command line (``sys.argv`` when None or empty); it is also what the app's
            ``application_setup(args)`` receives.
        required_params: names of ``--<connector>-<name>`` parameters that must be given.
        optional_params: names of parameters that may be given. ``deadletter_path`` is always
            accepted (``--<connector>-deadletter_path FILE``, see ``dead_letter_path``).
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
            mode; the values go to the sinks, not to :meth:`read`. The connector decodes
            nothing then; a sink whose hooks decode can record what they reject with
            :meth:`dead_letter`.
        dead_letter_path: the JSON Lines file of the dead letters. The program flag
            ``--<connector>-deadletter_path`` wins over it; without either it is
            ``./wallaroo-deadletter/<connector>-sink.jsonl`` (from the current directory when
            the connector is made). The directory is created with the first dead letter.
        on_decode_error: what :meth:`read` and :meth:`read_many` do with an output the sink
            decoder raises on. ``"dead-letter"`` (the default): append it, with the error,
            the worker it came from and its message id, to ``dead_letter_path`` in the
            worker's dead-letter format, log it (the first in full, then at most one summary
            line per 10 s, the total on :meth:`close`) and go on with the next output, so a
            reading loop never stops on bad data. ``"raise"``: raise ``StreamDecoderError``
            for it; that output is consumed, the outputs after it stay and the next call
            returns them.

    Attributes:
        params: the parsed parameters.
        config: the application's :class:`~wallaroo.configs.SinkConnectorConfig`.
        dead_letter_path: the dead-letter file, absolute.

    Raises:
        SystemExit: a required parameter is missing (argparse's usage message, exit code 2).
        ConfigurationError: the application module cannot be loaded or has no sink connector
            named by ``--connector``.
        WallarooParameterError: ``on_decode_error`` is neither ``"dead-letter"`` nor
            ``"raise"``.

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
        required_params: Iterable[str] | Mapping[str, str] = (),
        optional_params: Iterable[str] | Mapping[str, str] = (),
        *,
        buffer_size: int = 4096,
        transactional: bool = False,
        sink_factory: Callable[[str], TransactionalSink] | None = None,
        dead_letter_path: str | os.PathLike[str] | None = None,
        on_decode_error: Literal["dead-letter", "raise"] = "dead-letter",
    ) -> None:
        if on_decode_error not in ("dead-letter", "raise"):
            raise WallarooParameterError(
                f"on_decode_error must be 'dead-letter' or 'raise', got {on_decode_error!r}"
            )
        argv = list(args or sys.argv)  # as the original: an empty list means sys.argv too
        required = param_list(required_params, "required_params")
        optional = param_list(optional_params, "optional_params")
        if DEADLETTER_PARAM not in required and DEADLETTER_PARAM not in optional:
            optional.append(DEADLETTER_PARAM)
        self.params = parse_connector_args(
            argv, _with_help(required, required_params), _with_help(optional, optional_params)
        )
        self.config, pipelines = load_sink_connector(
            self.params.application, self.params.connector_name, argv
        )
        decoder = self.config.decoder
        self._decode = decoder.fn if type(decoder) is Decoder else decoder.decode  # as decode()
        label = getattr(getattr(decoder, "fn", None), "__name__", None) or "decode"
        self._raise = on_decode_error == "raise"
        self._dead = SinkDeadLetters(
            getattr(self.params, DEADLETTER_PARAM, None)
            or dead_letter_path
            or default_path(self.config.name),
            self.config.name,
            pipelines,
            f"sink decoder {label}",
        )
        self.dead_letter_path: Path = self._dead.path
        self._buffer_size = int(buffer_size)
        self._factory: SinkFactory | None = None
        self._to_sinks = sink_factory is not None
        if sink_factory is not None:
            user_factory = sink_factory
            self._factory = lambda worker, _inbox: user_factory(worker)
        elif transactional:
            self._factory = lambda worker, inbox: MemorySink(inbox, worker)
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

        Values come from any connected worker, in arrival order per connection. Each value
        is returned once (to one caller); in transactional mode only committed ones.

        Args:
            timeout: seconds to wait for a value (None: wait forever). Outputs that are dead
                letters do not count as values: the wait goes on until a good one arrives.

        Raises:
            TimeoutError: no value arrived within ``timeout``.
            StreamDecoderError: with ``on_decode_error="raise"`` only: the decoder failed on
                the next output (it is consumed; the next call goes on with the following
                one).
            ConnectorError: not listening, closed and every value was read, the output goes
                to the sinks of ``sink_factory``, or a dead letter cannot be written (the
                output stays, and the next call tries again).
        """
        return self.read_many(1, timeout)[0]

    def read_many(self, max_count: int = 1024, timeout: float | None = None) -> list[Any]:
        """Return between 1 and ``max_count`` decoded values: those waiting, or the first to
        arrive within ``timeout``. Raises as :meth:`read` does. Outputs the decoder rejects
        are dead letters (the values around them are returned, in order), or with
        ``on_decode_error="raise"`` end the batch: the call that reaches one returns the
        values decoded before it, the next call raises for it."""
        inbox = self._reading_inbox()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                batch = inbox.take(max(1, max_count), _left(deadline))
            except ConnectorError:
                self._dead.close()
                raise
            values: list[Any] = []
            try:
                values.extend(map(self._decode, batch.payloads))  # keeps those before a failure
            except Exception as exc:
                self._decode_failed(inbox, batch, values, exc)
            if self._dead.total:
                self._dead.flush()
            if values:
                return values
            # every output taken was a dead letter: wait for the next within the timeout

    def _reading_inbox(self) -> Inbox:
        inbox = self._inbox
        if inbox is None:
            raise ConnectorError("the sink connector is not listening; call listen() first")
        if self._to_sinks:
            raise ConnectorError(
                f"sink connector '{self.config.name}' hands its output to the sinks of its "
                "sink_factory; read() has nothing to return (wait with join())"
            )
        return inbox

    def _decode_failed(self, inbox: Inbox, batch: Batch, values: list[Any], exc: Exception) -> None:
        """``batch``'s payload ``len(values)`` raised ``exc``: raise, or dead-letter it and
        every later one that fails, appending the others' values to ``values``."""
        payloads, bad = batch.payloads, 0
        while True:
            index = len(values) + bad
            if self._raise:
                if values:  # those first; the next call raises
                    inbox.push_front(batch.rest(index))
                    return
                inbox.push_front(batch.rest(1))
                raise StreamDecoderError(
                    f"the decoder of sink connector '{self.config.name}' failed on a payload "
                    f"of {len(payloads[0])} bytes: {type(exc).__name__}: {exc}"
                ) from exc
            worker, stream_id, message_id = batch.origin(index)
            try:
                self._dead.record(
                    payloads[index], exc, worker=worker, stream_id=stream_id, message_id=message_id
                )
            except ConnectorError:
                inbox.push_front(batch.rest(index))
                if values:
                    return
                raise
            bad += 1
            try:
                values.extend(map(self._decode, itertools.islice(payloads, index + 1, None)))
                return
            except Exception as again:
                exc = again

    def dead_letter(
        self,
        payload: Any,
        error: BaseException,
        *,
        worker: str | None = None,
        message_id: int | None = None,
        stage: str | None = None,
    ) -> None:
        """Record an output this program cannot take as a dead letter in
        :attr:`dead_letter_path`, and log it as :meth:`read` logs its own (rate-limited).

        For a program whose ``sink_factory`` sinks decode in their hooks, or that rejects a
        decoded value itself. Thread-safe.

        Args:
            payload: the output: bytes are kept as they are, another value pickled (else its
                ``repr``).
            error: why (its type, message and innermost traceback frame are kept).
            worker: the worker it came from, if known.
            message_id: its message id (byte offset in that worker's output), if known.
            stage: the record's ``stage`` (default ``sink decoder <decoder name>``).

        Raises:
            ConnectorError: the dead-letter file cannot be written.
        """
        self._dead.record(payload, error, worker=worker, message_id=message_id, stage=stage)

    def close(self) -> None:
        """Stop listening and close every connection; values already received can still be
        read, after which :meth:`read` raises ConnectorError. Logs the number of dead
        letters (when there was more than one). Idempotent."""
        if self._server is not None:
            self._server.stop()
        self._dead.close()

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
            dead_letters=self._dead.total,
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


def _left(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (None: no deadline)."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _with_help(names: list[str], given: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """``names`` with the help texts ``given`` has for them (when it is a mapping)."""
    texts = given if isinstance(given, Mapping) else {}
    return {name: str(texts.get(name, "")) for name in names}
