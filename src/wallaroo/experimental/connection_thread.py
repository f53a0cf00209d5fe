"""The connection machinery under ``AtLeastOnceSourceConnector``: one thread that owns the
connection to the worker, sends queued frames, reads the worker's frames and reconnects.

:class:`ConnectionThread` knows nothing of streams; a subclass says what to do with the
worker's events (:meth:`ConnectionThread._dispatch`), what to do between reads
(:meth:`ConnectionThread._tick`, due at :meth:`ConnectionThread._deadline`) and what to do when
a connection is lost and when one is (re-)established.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import selectors
import socket
import threading
import time

from wallaroo.errors import ConnectorError, ProtocolError
from wallaroo.experimental.client_link import ClientLink, LinkLostError
from wallaroo.protocol.client_session import ClientSession
from wallaroo.protocol.events import ClientEvent

__all__ = ["ConnectionThread", "RestartSignal"]

log = logging.getLogger("wallaroo.connector")


class RestartSignal(Exception):  # noqa: N818 - a signal inside the thread, never seen by users
    """Raised by ``_dispatch`` on RESTART: reconnect, to ``address`` if it is not empty."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.address = address


class ConnectionThread(abc.ABC):
    """A connection to a worker served by a background thread.

    Args:
        version: the protocol version for HELLO.
        cookie: the cookie of the application's source connector.
        program_name: names the connector program (informative for the worker).
        instance_name: names this instance (informative for the worker).
        host: the worker's connector source host.
        port: its port.

    Subclasses change state only while holding ``self._lock`` (an ``RLock``); the thread holds
    it while calling the abstract methods and never while writing to the socket.
    """

    def __init__(
        self,
        version: str,
        cookie: str,
        program_name: str,
        instance_name: str,
        host: str,
        port: int,
    ) -> None:
        self.version = version
        self.cookie = cookie
        self.program_name = program_name
        self.instance_name = instance_name
        self.host = host
        self.port = int(port)
        self._lock = threading.RLock()
        self._credit = threading.Condition(self._lock)
        self._outbox: list[bytes] = []
        self._link: ClientLink | None = None
        self._thread: threading.Thread | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None

    # -- what a subclass provides -----------------------------------------------------------
    @abc.abstractmethod
    def _dispatch(self, events: list[ClientEvent]) -> None:
        """Handle the worker's events (raise RestartSignal or ConnectorError to reconnect)."""

    @abc.abstractmethod
    def _tick(self) -> None:
        """Queue whatever is due now (called after every wake-up)."""

    @abc.abstractmethod
    def _deadline(self) -> float | None:
        """The ``time.monotonic()`` when :meth:`_tick` is next due, or None."""

    @abc.abstractmethod
    def _connection_lost(self) -> None:
        """The connection is gone (queued frames were dropped)."""

    @abc.abstractmethod
    def _connected(self, first: bool) -> None:
        """A connection is up: the first one (``connect()``) or a new one after a loss."""

    @abc.abstractmethod
    def handle_invalid_message(self, error: ProtocolError) -> None:
        """The worker broke the protocol."""

    @abc.abstractmethod
    def handle_error(self, error: ConnectorError) -> None:
        """The worker sent ERROR, or a reconnection was refused."""

    # -- public API -------------------------------------------------------------------------
    @property
    def credits(self) -> int:
        """Credits left on the current connection (0 when not connected)."""
        link = self._link
        return link.session.credits if link is not None else 0

    def connect(self, *, retry: bool = False, timeout: float | None = None) -> None:
        """Connect and complete the handshake, then start the connector's thread.

        Args:
            retry: keep trying (backing off from 0.05 s to 1 s, one log line) while the worker
                is not up; without it the first failure is raised, as in the original.
            timeout: with ``retry``, give up after this many seconds (None: never).

        Raises:
            ConnectorError: the connection failed (without ``retry``, or after ``timeout``),
                the worker refused the connector (bad cookie: never retried), or ``connect()``
                was already called.
        """
        if self._thread is not None or self._stop.is_set():
            raise ConnectorError("connect() may be called once, before shutdown()")
        link = self._open(retry=retry, timeout=timeout)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        with self._lock:
            self._attach(link)
            self._connected(first=True)
        self._thread = threading.Thread(
            target=self._run, name=f"wallaroo-source-connector-{self.program_name}", daemon=True
        )
        self._thread.start()

    def shutdown(self, error: BaseException | None = None) -> None:
        """Stop: send the queued frames (and ERROR with ``error``'s text, if given), close the
        connection and end the thread. From another thread, waits up to 5 s for that.
        Idempotent; the first error given is kept for :meth:`join`."""
        with self._lock:
            if error is not None and self._error is None:
                self._error = error
                if self._link is not None:
                    self._outbox.append(self._link.session.error(str(error)))
            self._stop.set()
            self._credit.notify_all()
        thread = self._thread
        if thread is None:
            self._finish()
            return
        self._wake()
        if thread is not threading.current_thread():
            thread.join(5.0)

    def join(self, timeout: float | None = None) -> BaseException | None:
        """Wait until the connector has stopped (or ``timeout``); return the error it stopped
        with, if any."""
        self._stopped.wait(timeout)
        return self._error

    # -- helpers for subclasses -------------------------------------------------------------
    def _in_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _session(self) -> ClientSession:
        if self._link is None:
            raise ProtocolError(
                "not connected to the worker; call connect() (or wait for the reconnection)"
            )
        return self._link.session

    def _queue(self, frame: bytes) -> None:
        self._outbox.append(frame)
        if not self._in_thread():
            self._wake()

    def wake(self) -> None:
        """Wake the connector's thread now (e.g. an iterator subclass has new data), instead
        of at its next poll. Safe from any thread."""
        self._wake()

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):  # a full wake pipe wakes the thread anyway
                self._wake_w.send(b"\0")

    # -- the thread -------------------------------------------------------------------------
    def _open(self, *, retry: bool, timeout: float | None = None) -> ClientLink:
        return ClientLink.open(
            self.host,
            self.port,
            cookie=self.cookie,
            program_name=self.program_name,
            instance_name=self.instance_name,
            version=self.version,
            retry=retry,
            timeout=timeout,
            stop=self._stop,
        )

    def _attach(self, link: ClientLink) -> None:
        self._link = link
        if self._selector is not None:
            self._selector.register(link.sock, selectors.EVENT_READ, link)

    def _detach(self) -> None:
        link, self._link = self._link, None
        self._outbox.clear()
        if link is not None:
            if self._selector is not None:
                self._selector.unregister(link.sock)
            link.close()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except RestartSignal as restart:
                    self._reconnect("the worker asked for a restart", restart.address)
                except LinkLostError as exc:
                    self._reconnect(str(exc), "")
                except ProtocolError as exc:
                    self.handle_invalid_message(exc)  # by default shuts down (ERROR sent last)
                    if not self._stop.is_set():
                        self._reconnect(f"protocol error: {exc}", "")
                except ConnectorError as exc:
                    self.handle_error(exc)
                    if not self._stop.is_set():
                        self._reconnect(str(exc), "")
        except LinkLostError:
            pass  # stopped while reconnecting
        except Exception as exc:  # a failing hook or iterator stops the connector, reported
            log.exception("source connector %s stopped on an error", self.program_name)
            if self._error is None:
                self._error = exc
        finally:
            self._finish()

    def _step(self) -> None:
        selector = self._selector
        if selector is None:
            return
        with self._lock:
            deadline = 0.0 if self._outbox else self._deadline()
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        for key, _ in selector.select(timeout):
            link = key.data
            if isinstance(link, ClientLink) and link is self._link:
                events = link.read()
                with self._lock:
                    self._dispatch(events)
            elif link is None and self._wake_r is not None:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
        with self._lock:
            self._tick()
            data, link = b"".join(self._outbox), self._link
            self._outbox.clear()
        if data and link is not None:
            link.send(data)

    def _reconnect(self, reason: str, address: str) -> None:
        with self._lock:
            self._detach()
            self._connection_lost()
            self._credit.notify_all()
        if self._stop.is_set():
            return
        if address:
            host, _, port = address.rpartition(":")
            self.host, self.port = host or self.host, int(port)
        log.warning("%s; reconnecting to the worker at %s:%d", reason, self.host, self.port)
        link = self._open(retry=True)
        with self._lock:
            self._attach(link)
            self._connected(first=False)
            self._credit.notify_all()

    def _finish(self) -> None:
        with self._lock:
            data, link = b"".join(self._outbox), self._link
            self._outbox.clear()
        if data and link is not None and not link.broken:
            with contextlib.suppress(ConnectorError):
                link.send(data)
        with self._lock:
            self._detach()
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self._wake_r = self._wake_w = None
            if self._selector is not None:
                self._selector.close()
                self._selector = None
            self._stopped.set()
            self._credit.notify_all()
