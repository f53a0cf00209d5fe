"""The toolkit of connector programs: what every program in ``wallaroo.connectors`` shares.

A connector program is a script run next to the worker (docs/connectors.md). The prebuilt ones
are meant to be copied and adapted, so they use only the public API; this module is the part of
it that has nothing to do with any one external system:

* :func:`configure_logging`: log lines to stderr, ``TIME LEVEL LOGGER: message``.
* :class:`ProgramRun`: the body of ``main()``. It installs the SIGINT and SIGTERM handlers
  (raise :class:`Stop`, or set an event), turns the errors a program expects into one log line
  and an exit code (0 stopped by a signal, 1 a failure, 2 a usage or configuration error),
  ignores further signals while it cleans up, and runs the cleanups it was given.
* :class:`Stop` and :class:`UsageError`: the signal's exception and the exit-code-2 error.
* :func:`import_client`: imports a client library, or says in one line which extra installs it.
* :class:`Backoff`: retry delays that log the first failure and the recovery, not every retry.
* :func:`port_number`, :func:`positive_number`, :func:`as_bytes`, :func:`to_bytes`,
  :func:`first_line`: parameter and value helpers (the last three are those of
  :mod:`wallaroo.decorators` and :mod:`wallaroo.errors`, re-exported here).
* :func:`wait_for_worker`: wait until the worker accepts connections (a source program that
  connects with its own client).
* :func:`read_outputs`, :func:`read_remaining`: a sink program's reads (outputs the
  application's decoder rejects are the connector's dead letters); :func:`send_forever`: a
  source program's loop.

A minimal source program::

    log = logging.getLogger("my_source")

    def main() -> int:
        configure_logging()
        with ProgramRun(log) as run:  # SIGINT/SIGTERM raise Stop: exit code 0
            connector = SourceConnector(sys.argv, required_params=["path"])
            run.callback(connector.close, timeout=2.0)
            connector.connect()
            send_forever(connector, receive)
        return run.exit_code
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import logging
import math
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType, ModuleType, TracebackType
from typing import Any, NoReturn

from wallaroo.decorators import as_bytes, to_bytes
from wallaroo.errors import ConnectorError, WallarooError, first_line
from wallaroo.experimental.sink_connector import SinkConnector
from wallaroo.experimental.source_connector import SourceConnector

__all__ = [
    "LOG_FORMAT",
    "Backoff",
    "ProgramRun",
    "Stop",
    "UsageError",
    "as_bytes",
    "configure_logging",
    "first_line",
    "import_client",
    "port_number",
    "positive_number",
    "read_outputs",
    "read_remaining",
    "send_forever",
    "to_bytes",
    "wait_for_worker",
]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The format of a connector program's log lines (the logger is named after the program)."""

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop(BaseException):
    """Raised in the main thread by SIGINT or SIGTERM under ``ProgramRun(log)``; its message is
    the signal's name (``SIGTERM``).

    A BaseException, as KeyboardInterrupt is: a signal that lands inside code catching
    ``Exception`` (logging does) must not be swallowed.
    """


class UsageError(Exception):
    """A parameter is wrong, or the external system refuses the configuration (a wrong
    password, a missing table, a client library not installed): exit code 2 under
    :class:`ProgramRun`."""


def configure_logging(level: int = logging.INFO) -> None:
    """Send log records to stderr as ``2024-05-01 12:00:00,123 INFO my_source: message``
    (:data:`LOG_FORMAT`), from ``level`` up. Does nothing when the root logger already has a
    handler (``logging.basicConfig``)."""
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT)


class ProgramRun(contextlib.ExitStack):
    """The body of a connector program's ``main()``, as a context manager::

        def main(argv: Sequence[str] | None = None) -> int:
            configure_logging()
            with ProgramRun(log) as run:
                connector = SinkConnector(argv, required_params=["path"])
                run.callback(connector.close)
                ...
                return 0
            return run.exit_code

    Signals (installed on entry, for SIGINT and SIGTERM):
        * ``ProgramRun(log)``: the handler raises :class:`Stop` in the main thread, wherever it
          is; the run ends, logs ``stopping (SIGTERM)`` (``stopping (SIGINT)`` for a
          KeyboardInterrupt) and ``exit_code`` is 0.
        * ``ProgramRun(log, stop=event)``: the handler sets ``event``, and the first signal logs
          ``stopping (SIGTERM)``; the program notices the event and finishes on its own (writes
          what it holds, say), returning its own exit code.

    Errors ending the body:
        * expected ones, instances of ``WallarooError``, ``OSError``, :class:`UsageError` or of
          ``errors``, are logged as one ERROR line (``str(exc)``, no traceback) and suppressed:
          ``exit_code`` is 1 for instances of ``failures`` (by default ``OSError`` and
          ``ConnectorError``: a socket failure, a worker refusing the connector), else 2 (a
          usage or configuration error);
        * anything else (a bug, or ``SystemExit`` from argparse's usage message, exit code 2)
          propagates after the cleanups.

    SIGUSR1 writes every thread's stack to stderr (:mod:`faulthandler`) and the program goes
    on: what to send a program that seems stuck before killing it.

    On exit, SIGINT and SIGTERM are ignored first, so that a second signal cannot cut the
    cleanups short; then the error is logged, and the callbacks registered with ``callback``,
    ``push`` or ``enter_context`` (as for ``contextlib.ExitStack``) run, the last registered
    first.

    Args:
        log: the program's logger.
        stop: the event the signals set instead of raising :class:`Stop`.
        errors: further exception types that are expected (``ValueError``, say).
        failures: the expected exception types that mean exit code 1.

    Attributes:
        exit_code: 0, until an expected error ends the run.
        stop: the ``stop`` argument (None when signals raise :class:`Stop`).
    """

    def __init__(
        self,
        log: logging.Logger,
        *,
        stop: threading.Event | None = None,
        errors: tuple[type[BaseException], ...] = (),
        failures: tuple[type[BaseException], ...] = (OSError, ConnectorError),
    ) -> None:
        super().__init__()
        self.log = log
        self.stop = stop
        self.errors: tuple[type[BaseException], ...] = (WallarooError, OSError, UsageError, *errors)
        self.failures = failures
        self.exit_code = 0

    def __enter__(self) -> ProgramRun:
        for signum in _STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        if hasattr(signal, "SIGUSR1"):  # kill -USR1 PID: every thread's stack to stderr
            faulthandler.register(signal.SIGUSR1, all_threads=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        for signum in _STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        if isinstance(exc, Stop | KeyboardInterrupt):
            self.log.info("stopping (%s)", str(exc) or "SIGINT")  # KeyboardInterrupt: ""
            self.exit_code = 0
        elif isinstance(exc, self.errors):
            self.log.error("%s", exc)
            self.exit_code = 1 if isinstance(exc, self.failures) else 2
        else:
            return bool(super().__exit__(exc_type, exc, tb))
        super().__exit__(None, None, None)
        return True

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stop is None:
            raise Stop(name)
        if not self.stop.is_set():
            self.log.info("stopping (%s)", name)
        self.stop.set()


def import_client(
    module: str,
    extra: str,
    missing: str = "the client library {module} is missing ({error}); install it with: {install}",
) -> ModuleType:
    """Import the client library ``module`` (an optional extra of wallaroo-py) when the program
    runs.

    Args:
        module: the module to import (``"redis"``, ``"confluent_kafka"``).
        extra: the wallaroo-py extra that installs it (``"redis"``, ``"kafka"``).
        missing: the error's one line, a ``str.format`` template of ``{module}``, ``{error}``
            (the first line of the ImportError) and ``{install}``
            (``pip install 'wallaroo-py[EXTRA]'``).

    Raises:
        UsageError: it cannot be imported (``missing``, formatted).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        install = f"pip install 'wallaroo-py[{extra}]'"
        raise UsageError(
            missing.format(module=module, error=first_line(exc), install=install)
        ) from exc


class Backoff:
    """Retry delays for one kind of request: ``first_delay`` seconds, doubling up to
    ``max_delay``. Logs the first failure of a run of failures (WARNING ``<what> failed
    (<error>); retrying with back-off``) and the recovery (INFO ``<what> works again after
    1.2 s``), not every retry.

    Args:
        log: the program's logger.
        what: the request, as the subject of the log lines (``putting records into ...``).
        first_delay: the first delay, and the delay again after a success.
        max_delay: the longest delay.

    Attributes:
        since: the ``time.monotonic()`` of the first failure of the current run of failures;
            None while requests succeed.
    """

    def __init__(
        self, log: logging.Logger, what: str, *, first_delay: float = 0.1, max_delay: float = 5.0
    ) -> None:
        self.log, self.what = log, what
        self.first_delay, self.max_delay = first_delay, max_delay
        self.delay = first_delay
        self.since: float | None = None

    def failed(self, error: object) -> float:
        """Record a failure (``error`` is what the log line says); return how long to wait
        before retrying."""
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("%s failed (%s); retrying with back-off", self.what, error)
        delay, self.delay = self.delay, min(self.delay * 2, self.max_delay)
        return delay

    def succeeded(self) -> None:
        """Record a success: log the recovery after failures, start the delays again."""
        if self.since is not None:
            elapsed = time.monotonic() - self.since
            self.log.info("%s works again after %.1f s", self.what, elapsed)
        self.since, self.delay = None, self.first_delay


def port_number(flag: str, value: str, *, allow_zero: bool = False) -> int:
    """``value`` (of the parameter ``flag``) as a port number, from 1 (0 with ``allow_zero``:
    any free port, for an address to listen on) to 65535.

    Raises:
        UsageError: it is not (``--x-port must be a number from 1 to 65535, got 'abc'``).
    """
    lowest = 0 if allow_zero else 1
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not lowest <= port <= 65535:
        raise UsageError(f"{flag} must be a number from {lowest} to 65535, got {value!r}")
    return port


def positive_number(flag: str, value: str, what: str = "a positive number") -> float:
    """``value`` (of the parameter ``flag``) as a positive, finite number; ``what`` names it in
    the error (``"a positive number of seconds"``).

    Raises:
        UsageError: it is not (``--x-rate must be a positive number, got '0'``).
    """
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number < math.inf:
        raise UsageError(f"{flag} must be {what}, got {value!r}")
    return number


def wait_for_worker(host: str, port: int, log: logging.Logger) -> None:
    """Return once the worker accepts connections at ``host:port``: probed every 0.05 s,
    backing off to 1 s, with one INFO line (``waiting for the worker at ...; retrying``) while
    it does not. Waits indefinitely (a signal's :class:`Stop` interrupts it)."""
    delay, logged = 0.05, False
    while True:
        try:
            socket.create_connection((host, port), timeout=2).close()
            return
        except OSError as exc:
            if not logged:
                log.info("waiting for the worker at %s:%d (%s); retrying", host, port, exc)
                logged = True
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def read_outputs(
    connector: SinkConnector,
    log: logging.Logger,  # noqa: ARG001 - kept in the signature the copied programs call
    limit: int,
    timeout: float | None = None,
) -> list[Any]:
    """Up to ``limit`` outputs, decoded by the application's sink decoder (``read_many``).

    Returns an empty list after ``timeout`` seconds without any (None: wait). An output the
    decoder rejects is the connector's business: by default a dead letter, recorded in
    ``connector.dead_letter_path`` and logged by the connector, and skipped (the outputs around
    it are returned); ``log`` is no longer used.

    Raises:
        ConnectorError: the connector is not listening, closed and every output was read, or a
            dead letter cannot be written.
        StreamDecoderError: the connector was made with ``on_decode_error="raise"`` and the
            decoder rejected the next output (the next call goes on after it).
    """
    try:
        return connector.read_many(limit, timeout=timeout)
    except TimeoutError:
        return []


def read_remaining(
    connector: SinkConnector, log: logging.Logger, limit: int
) -> Iterator[list[Any]]:
    """Stop listening (close the connector) and yield, in lists of up to ``limit``, the outputs
    already received, until every one is read: what a sink program writes before it exits.
    Outputs the decoder rejects are dead letters, as for :func:`read_outputs`."""
    connector.close()
    while True:
        try:
            yield read_outputs(connector, log, limit, timeout=0.0)
        except ConnectorError:
            return  # closed, and everything received was read


def send_forever(connector: SourceConnector, receive: Callable[[], Sequence[Any]]) -> NoReturn:
    """Send the worker what ``receive()`` returns, batch after batch, until interrupted.

    ``receive`` waits a little (a second, say) for payloads and returns those it got (each goes
    through the application's source encoder); when it returns none, the connector is polled,
    which notices a worker that went away and sends again what it had not acknowledged.

    Each batch is sent before ``receive`` is called again (``write_many``: no ``linger``), so
    ``receive`` should return what is ready as soon as it has something, never wait for more:
    then nothing is held back on this side.

    Raises:
        ConnectorError: the connection to the worker failed for good (a refused cookie).
    """
    while True:
        batch = receive()
        if batch:
            connector.write_many(batch)
        else:  # idle: notice a worker that went away, resend what it had not acknowledged
            connector.poll()
