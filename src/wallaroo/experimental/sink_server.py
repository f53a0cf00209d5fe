"""The background side of a ``SinkConnector``: one thread that accepts the workers' connections,
answers the protocol and fills a bounded inbox.

The thread answers HELLO and NOTIFY at once, whether or not anyone is reading, through a
:class:`~wallaroo.protocol.sink_endpoint.SinkEndpointSession`. Without a sink factory it also
answers the two-phase-commit frames itself (no uncommitted transactions, always commit) and
payloads go straight into the :class:`~wallaroo.experimental.sink_inbox.Inbox`. With one, each
worker gets a :class:`~wallaroo.experimental.txn_driver.TransactionDriver` over the sink the
factory makes for it (kept across that worker's connections), which answers LIST_UNCOMMITTED,
votes on PHASE1 and applies PHASE2 through the sink's hooks. When the inbox is full the thread
stops reading the connection that filled it, so TCP pushes back on the worker.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from wallaroo.experimental.sink_inbox import Inbox, Origin
from wallaroo.experimental.transactional import TransactionalSink
from wallaroo.experimental.txn_driver import TransactionDriver
from wallaroo.protocol.events import (
    EndpointEvent,
    Payloads,
    Phase1Requested,
    Phase2Requested,
    SessionClosed,
    StreamNotified,
    UncommittedListRequested,
    WorkerConnected,
    WorkersLeftReported,
)
from wallaroo.protocol.frames import Error
from wallaroo.protocol.sink_endpoint import SinkEndpointSession

__all__ = ["Inbox", "SinkServer"]

log = logging.getLogger("wallaroo.connector")

RECV_SIZE = 256 * 1024
SEND_TIMEOUT = 10.0


@dataclass(eq=False, slots=True)
class _Conn:
    sock: socket.socket
    peer: str
    session: SinkEndpointSession
    worker: str | None = None
    paused: bool = False


SinkFactory = Callable[[str, Inbox], TransactionalSink]
"""Makes the sink of a worker, given its name and the server's inbox."""


class SinkServer:
    """Serves a listening socket from a background thread until :meth:`stop`.

    Args:
        listener: a bound, listening socket (made non-blocking here).
        cookie: the cookie every worker's HELLO must carry.
        capacity: the capacity of :attr:`inbox`, where values for readers go.
        name: names the thread and the log lines.
        sink_factory: makes each worker's transactional sink (transactional mode); None
            answers the two-phase commit without any guarantee and fills the inbox at once.
    """

    def __init__(
        self,
        listener: socket.socket,
        cookie: str,
        capacity: int,
        name: str,
        sink_factory: SinkFactory | None = None,
    ) -> None:
        self._listener = listener
        self._cookie = cookie
        self.inbox = Inbox(capacity, self.wake)
        self._capacity = capacity
        self._warned_uncommitted = False
        self._inbox = self.inbox
        self._name = name
        self._factory = sink_factory
        self._drivers: dict[str, TransactionDriver] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._conns: set[_Conn] = set()
        self._by_worker: dict[str, _Conn] = {}
        self._stopping = False
        self.error: BaseException | None = None
        """The internal error the thread stopped with, if any."""
        self.workers: tuple[str, ...] = ()
        """The names of the workers connected now (replaced whole, safe to read anywhere)."""
        self.paused = 0
        self._thread = threading.Thread(
            target=self._run, name=f"wallaroo-sink-connector-{name}", daemon=True
        )

    @property
    def transactional(self) -> bool:
        """True when a sink factory handles the two-phase commit."""
        return self._factory is not None

    def transactions(self) -> tuple[int, int]:
        """``(commits, aborts)`` applied so far by every worker's driver."""
        drivers = tuple(self._drivers.values())
        return sum(d.commits for d in drivers), sum(d.aborts for d in drivers)

    def start(self) -> None:
        """Start the thread."""
        self._listener.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread.start()

    def wake(self) -> None:
        """Make the thread look again at its paused connections (callable from any thread)."""
        with contextlib.suppress(OSError):  # a full wake pipe already wakes it
            self._wake_w.send(b"\0")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, close every socket and every sink. Idempotent."""
        self._stopping = True
        self.wake()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    def join(self, timeout: float | None = None) -> BaseException | None:
        """Wait up to ``timeout`` seconds for the thread to stop; return :attr:`error`."""
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return self.error

    @property
    def running(self) -> bool:
        """True until the thread has stopped."""
        return self._thread.is_alive()

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            while not self._stopping:
                for key, _ in self._sel.select():
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    else:
                        self._read(key.data)
                if self.paused and self._inbox.has_room():
                    self._resume()
        except Exception as exc:  # a bug here must reach the reader, not vanish with the thread
            log.exception("sink connector '%s' stopped on an internal error", self._name)
            error = exc
        finally:
            for conn in list(self._conns):
                self._drop(conn, None)
            self._sel.close()
            self._listener.close()
            for driver in self._drivers.values():
                try:
                    driver.close()
                except Exception:
                    log.exception("sink connector '%s': closing the sink failed", self._name)
            self.error = error
            self._inbox.close(error)

    def _accept(self) -> None:
        try:
            sock, peer = self._listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(SEND_TIMEOUT)
        session = SinkEndpointSession(cookie=self._cookie, auto_commit=self._factory is None)
        conn = _Conn(sock, f"{peer[0]}:{peer[1]}", session)
        self._conns.add(conn)
        self._sel.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: _Conn) -> None:
        if conn not in self._conns:  # dropped earlier in this round (replaced by a new HELLO)
            return
        try:
            data = conn.sock.recv(RECV_SIZE)
        except OSError as exc:
            self._drop(conn, f"connection failed: {exc}")
            return
        if not data:
            self._drop(conn, "closed the connection")
            return
        for event in conn.session.receive(data):
            if conn not in self._conns:  # a handler closed it
                return
            self._handle(conn, event)
        if conn in self._conns and self._flush(conn) and conn.session.closed:
            self._drop(conn, None)

    def _flush(self, conn: _Conn) -> bool:
        """Send what the session queued; False (and the connection dropped) if that failed."""
        out = conn.session.take_output()
        if out:
            try:
                conn.sock.sendall(out)
            except OSError as exc:
                self._drop(conn, f"connection failed: {exc}")
                return False
        return True

    def _handle(self, conn: _Conn, event: EndpointEvent) -> None:
        if self._factory is not None and conn.worker is not None:
            try:
                if self._transaction_event(conn, self._drivers[conn.worker], event):
                    return
            except Exception as exc:
                self._sink_failed(conn, exc)
                return
        if isinstance(event, Payloads):
            origin = Origin(conn.worker, event.stream_id, event.offsets, 0, len(event.payloads))
            if not self._inbox.put_many(event.payloads, origin):
                self._pause(conn)
        elif isinstance(event, WorkerConnected):
            self._connected(conn, event.worker_name)
        elif isinstance(event, SessionClosed):
            log.warning(
                "sink connector '%s': connection from %s closed: %s",
                self._name,
                conn.peer,
                event.reason,
            )
        elif isinstance(event, WorkersLeftReported):
            log.info(
                "sink connector '%s': workers left the cluster: %s",
                self._name,
                ", ".join(event.workers),
            )
        else:
            log.debug("sink connector '%s': %s from %s", self._name, event, conn.peer)

    def _connected(self, conn: _Conn, worker: str) -> None:
        old = self._by_worker.get(worker)
        if old is not None and old is not conn:
            log.info("worker '%s' connected again; closing its previous connection", worker)
            self._drop(old, None)
        conn.worker = worker
        self._by_worker[worker] = conn
        self.workers = tuple(self._by_worker)
        log.info(
            "sink connector '%s': worker '%s' connected from %s", self._name, worker, conn.peer
        )
        if self._factory is not None:
            try:
                driver = self._drivers.get(worker)
                if driver is None:
                    sink = self._factory(worker, self._inbox)
                    driver = TransactionDriver(worker, sink, f"sink connector '{self._name}'")
                    self._drivers[worker] = driver
                driver.connected()
            except Exception as exc:
                self._sink_failed(conn, exc)
                return
            if driver.prepared is not None:
                log.info(
                    "sink connector '%s': worker '%s' has transaction %s waiting for its phase 2",
                    self._name, worker, driver.prepared.txn_id,
                )  # fmt: skip

    def _transaction_event(self, conn: _Conn, driver: TransactionDriver, event: object) -> bool:
        """Apply a transactional event through ``driver``; False if it is not one."""
        if isinstance(event, Payloads):
            driver.payloads(event.stream_id, event.offsets, event.payloads)
            if not self._inbox.check_room():
                self._pause(conn)
            if self._inbox.held > self._capacity and not self._warned_uncommitted:
                self._warned_uncommitted = True
                log.warning(
                    "sink connector '%s': %d values wait for a commit, more than the buffer "
                    "size; only a worker that runs with resilience (checkpoints) commits them",
                    self._name, self._inbox.held,
                )  # fmt: skip
        elif isinstance(event, StreamNotified):
            driver.notified(event.stream_id, event.point_of_ref)
        elif isinstance(event, UncommittedListRequested):
            conn.session.reply_uncommitted(event.rtag, driver.uncommitted())
        elif isinstance(event, Phase1Requested):
            outcome = driver.phase1(event.txn_id, event.where_list)
            if outcome.close != "before_reply":
                conn.session.vote(event.txn_id, outcome.vote)
            if outcome.close is not None and self._flush(conn):
                self._drop(conn, f"connection closed by the sink {outcome.close.replace('_', ' ')}")
        elif isinstance(event, Phase2Requested):
            driver.phase2(event.txn_id, event.commit)
        else:
            return False
        return True

    def _sink_failed(self, conn: _Conn, exc: Exception) -> None:
        """A sink hook raised: log it, tell the worker and close its connection (it reconnects,
        and the sink recovers)."""
        log.error(
            "sink connector '%s': the sink of worker '%s' failed: %s: %s",
            self._name, conn.worker, type(exc).__name__, exc, exc_info=exc,
        )  # fmt: skip
        with contextlib.suppress(OSError):
            conn.sock.sendall(conn.session.take_output())
            reason = f"the sink failed: {type(exc).__name__}: {exc}"[:1000]
            conn.sock.sendall(Error(reason).encode())
        self._drop(conn, None)

    def _pause(self, conn: _Conn) -> None:
        if not conn.paused:
            self._sel.unregister(conn.sock)
            conn.paused = True
            self.paused += 1

    def _resume(self) -> None:
        for conn in self._conns:
            if conn.paused:
                conn.paused = False
                self.paused -= 1
                self._sel.register(conn.sock, selectors.EVENT_READ, conn)

    def _drop(self, conn: _Conn, reason: str | None) -> None:
        if conn.paused:
            conn.paused = False
            self.paused -= 1
        else:
            self._sel.unregister(conn.sock)
        conn.sock.close()
        conn.session.connection_lost()
        self._conns.discard(conn)
        if conn.worker is not None and self._by_worker.get(conn.worker) is conn:
            del self._by_worker[conn.worker]
            self.workers = tuple(self._by_worker)
        if reason is not None:
            who = f"worker '{conn.worker}'" if conn.worker else conn.peer
            log.info("sink connector '%s': %s %s", self._name, who, reason)
