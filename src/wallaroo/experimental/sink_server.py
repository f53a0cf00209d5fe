"""The background side of a ``SinkConnector``: one thread that accepts the workers' connections,
answers the protocol and fills a bounded inbox.

The thread answers HELLO, NOTIFY and the two-phase-commit frames at once, whether or not anyone
is reading, through a :class:`~wallaroo.protocol.sink_endpoint.SinkEndpointSession` in
auto-commit mode. Payloads go into an :class:`Inbox`; when it is full the thread stops reading
the connection that filled it, so TCP pushes back on the worker and memory stays bounded.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from wallaroo.errors import ConnectorError
from wallaroo.protocol.events import (
    EndpointEvent,
    Payloads,
    SessionClosed,
    WorkerConnected,
    WorkersLeftReported,
)
from wallaroo.protocol.sink_endpoint import SinkEndpointSession

__all__ = ["Inbox", "SinkServer"]

log = logging.getLogger("wallaroo.connector")

RECV_SIZE = 256 * 1024
SEND_TIMEOUT = 10.0


class Inbox:
    """A bounded FIFO of payloads: the server thread puts, readers take.

    ``put_many`` never blocks; it reports whether the inbox is below capacity, so the producer
    can stop reading until ``on_room`` is called (once the inbox has drained to half).
    """

    def __init__(self, capacity: int, on_room: Callable[[], None]) -> None:
        self._items: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._capacity = max(1, capacity)
        self._on_room = on_room
        self._want_room = False
        self._closed = False
        self._error: BaseException | None = None
        self.received = 0
        self.taken = 0

    def __len__(self) -> int:
        return len(self._items)

    def has_room(self) -> bool:
        """True while the inbox holds fewer payloads than its capacity."""
        return len(self._items) < self._capacity

    def put_many(self, payloads: Iterable[bytes]) -> bool:
        """Append ``payloads``; return False if the inbox is now full (stop reading)."""
        with self._cond:
            before = len(self._items)
            self._items.extend(payloads)
            self.received += len(self._items) - before
            self._cond.notify_all()
            if len(self._items) >= self._capacity:
                self._want_room = True
                return False
            return True

    def push_front(self, payloads: list[bytes]) -> None:
        """Put back payloads a reader took but did not use, ahead of everything else."""
        with self._cond:
            self._items.extendleft(reversed(payloads))
            self.taken -= len(payloads)

    def take(self, max_count: int, timeout: float | None) -> list[bytes]:
        """Remove and return 1 to ``max_count`` payloads, waiting up to ``timeout`` seconds.

        Raises:
            TimeoutError: nothing arrived in time.
            ConnectorError: the inbox is empty and closed (the cause is chained if the server
                thread failed).
        """
        with self._cond:
            ready = self._cond.wait_for(
                lambda: self._items or self._closed or self._error is not None, timeout
            )
            if not self._items:
                if self._error is not None:
                    raise ConnectorError("the sink connector's server thread failed") from (
                        self._error
                    )
                if self._closed or ready:
                    raise ConnectorError("the sink connector is closed")
                raise TimeoutError(f"no value arrived within {timeout} s")
            count = min(max_count, len(self._items))
            batch = [self._items.popleft() for _ in range(count)]
            self.taken += count
            wake = self._want_room and len(self._items) <= self._capacity // 2
            if wake:
                self._want_room = False
        if wake:
            self._on_room()
        return batch

    def close(self, error: BaseException | None = None) -> None:
        """No more payloads will come; readers drain what is left, then get ConnectorError."""
        with self._cond:
            self._closed = True
            self._error = error
            self._cond.notify_all()


@dataclass(eq=False, slots=True)
class _Conn:
    sock: socket.socket
    peer: str
    session: SinkEndpointSession
    worker: str | None = None
    paused: bool = False


class SinkServer:
    """Serves a listening socket from a background thread until :meth:`stop`.

    Args:
        listener: a bound, listening socket (made non-blocking here).
        cookie: the cookie every worker's HELLO must carry.
        capacity: the capacity of :attr:`inbox`, where payloads go.
        name: names the thread and the log lines.
    """

    def __init__(self, listener: socket.socket, cookie: str, capacity: int, name: str) -> None:
        self._listener = listener
        self._cookie = cookie
        self.inbox = Inbox(capacity, self.wake)
        self._inbox = self.inbox
        self._name = name
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._conns: set[_Conn] = set()
        self._by_worker: dict[str, _Conn] = {}
        self._stopping = False
        self.workers: tuple[str, ...] = ()
        """The names of the workers connected now (replaced whole, safe to read anywhere)."""
        self.paused = 0
        self._thread = threading.Thread(
            target=self._run, name=f"wallaroo-sink-connector-{name}", daemon=True
        )

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
        """Stop the thread and close every socket. Idempotent."""
        self._stopping = True
        self.wake()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

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
            self._inbox.close(error)

    def _accept(self) -> None:
        try:
            sock, peer = self._listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(SEND_TIMEOUT)
        session = SinkEndpointSession(cookie=self._cookie, auto_commit=True)
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
        events = conn.session.receive(data)
        out = conn.session.take_output()
        if out:
            try:
                conn.sock.sendall(out)
            except OSError as exc:
                self._drop(conn, f"connection failed: {exc}")
                return
        for event in events:
            self._handle(conn, event)
        if conn.session.closed and conn in self._conns:
            self._drop(conn, None)

    def _handle(self, conn: _Conn, event: EndpointEvent) -> None:
        if isinstance(event, Payloads):
            if not self._inbox.put_many(event.payloads) and not conn.paused:
                self._sel.unregister(conn.sock)
                conn.paused = True
                self.paused += 1
        elif isinstance(event, WorkerConnected):
            old = self._by_worker.get(event.worker_name)
            if old is not None and old is not conn:
                log.info(
                    "worker '%s' connected again; closing its previous connection",
                    event.worker_name,
                )
                self._drop(old, None)
            conn.worker = event.worker_name
            self._by_worker[event.worker_name] = conn
            self.workers = tuple(self._by_worker)
            log.info(
                "sink connector '%s': worker '%s' connected from %s",
                self._name,
                event.worker_name,
                conn.peer,
            )
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
