"""Minimal stand-ins for the worker's side of connector connections, for conformance checks.

Both speak the protocol through the same sans-IO sessions the real worker uses
(:mod:`wallaroo.protocol`), over real sockets on 127.0.0.1, each in its own thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

from wallaroo.protocol.events import (
    HandshakeDone,
    Messages,
    SinkReady,
    StreamAccepted,
    StreamOpened,
    UncommittedReported,
    VoteReceived,
)
from wallaroo.protocol.sink_session import WorkerSinkSession
from wallaroo.protocol.source_session import SourceSession
from wallaroo.protocol.stream_registry import StreamRegistry

__all__ = ["FakeSinkWorker", "FakeSourceWorker", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeSourceWorker:
    """Listens like a worker's connector source; records what the connector does.

    ``hold_acks(True)`` stops acknowledgements (so the connector's credits run out);
    ``drop_connection()`` closes the current connection as a dying worker would.
    """

    def __init__(self, cookie: str, max_credits: int, refill_credits: int) -> None:
        self._cookie = cookie
        self._max_credits = max_credits
        self._refill = refill_credits
        self._registry = StreamRegistry()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.hellos = 0
        self.opened = 0
        self.payloads: list[bytes] = []
        self.min_credits = max_credits
        self._hold = False
        self._credits_only = False
        self._stop = False
        self._lock = threading.Lock()
        self._current: socket.socket | None = None
        self._serving: threading.Thread | None = None
        self._running = threading.Event()  # cleared while a simulated crash is in progress
        self._running.set()
        self.acked: dict[int, int] = {}
        self._thread = threading.Thread(target=self._accept, name="fake-source-worker", daemon=True)
        self._thread.start()

    def payload_set(self) -> set[bytes]:
        """The payloads received so far, as a set (thread-safe)."""
        with self._lock:
            return set(self.payloads)

    def hold_acks(self, hold: bool, *, grant_credits: bool = False) -> None:
        """Stop acknowledging positions; with ``grant_credits``, still top credits up (ACKs
        with an empty position list), so the connector can go on sending."""
        self._hold = hold
        self._credits_only = grant_credits

    def drop_connection(self) -> None:
        """Shut the current connection down, as a dying worker would."""
        conn = self._current
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def crash(self, keep_payloads: int, positions: dict[int, int]) -> None:
        """Play a worker that died and restarted from a checkpoint: drop the connection, forget
        every payload after the first ``keep_payloads``, and resume streams at ``positions``."""
        self._running.clear()
        try:
            self.drop_connection()
            serving = self._serving
            if serving is not None:
                serving.join(5)
            with self._lock:
                del self.payloads[keep_payloads:]
            self._registry.reset(dict(positions))
            self.acked = dict(positions)
        finally:
            self._running.set()

    def close(self) -> None:
        """Stop accepting, drop the current connection and close the listening socket."""
        self._stop = True
        self._running.set()
        self.drop_connection()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._running.wait()  # a connection made during a crash waits for the "restart"
            self._current = conn
            self._serving = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._serving.start()

    def _serve(self, conn: socket.socket) -> None:
        session = SourceSession(
            cookie=self._cookie,
            max_credits=self._max_credits,
            refill_credits=self._refill,
            registry=self._registry,
        )
        pending: dict[int, int] = {}
        conn.settimeout(0.05)
        with conn:
            while not self._stop and not session.closed:
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    data = None
                except OSError:
                    break
                if data == b"":
                    break
                if data:
                    self._events(session.receive(data), pending)
                    credits = session.statistics().credits_outstanding
                    self.min_credits = min(self.min_credits, credits)
                if not self._hold:
                    for stream_id, por in pending.items():
                        session.processed(stream_id, por)
                    self.acked.update(pending)
                    pending.clear()
                    session.flush_acks(force=True)
                elif self._credits_only:
                    session.flush_acks()
                out = session.take_output()
                if out:
                    with contextlib.suppress(OSError):
                        conn.sendall(out)
            session.connection_lost()

    def _events(self, events: list[Any], pending: dict[int, int]) -> None:
        for event in events:
            if isinstance(event, HandshakeDone):
                self.hellos += 1
            elif isinstance(event, StreamOpened):
                self.opened += 1
            elif isinstance(event, Messages):
                with self._lock:
                    self.payloads.extend(p for p in event.payloads if p is not None)
                pending[event.stream_id] = event.message_ids[-1]


class FakeSinkWorker:
    """Connects to a sink connector like a worker's connector sink."""

    def __init__(self, cookie: str, port: int) -> None:
        self.port = port
        self.session = WorkerSinkSession(
            app_name="conformance", worker_name="conformance-worker", sink_id=0, cookie=cookie
        )
        self.sock: socket.socket | None = None
        self.connections = 0
        self._rtag = 0
        self._checkpoint = 0

    def connect_and_intro(self) -> bool:
        """One attempt: connect, send the intro, wait for the three answers. True on success."""
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
        except OSError:
            return False
        self._rtag += 1
        sock.sendall(self.session.intro(self._rtag))
        seen: set[type] = set()
        for event in self._read(
            sock, 5.0, lambda s: {SinkReady, StreamAccepted, UncommittedReported} <= s, seen
        ):
            if isinstance(event, UncommittedReported):
                for txn in event.txn_ids:
                    sock.sendall(self.session.phase2(txn, commit=False))
        if not {SinkReady, StreamAccepted, UncommittedReported} <= seen:
            sock.close()
            self.session.connection_lost()
            return False
        self.sock = sock
        self.connections += 1
        return True

    def send(self, payloads: list[bytes]) -> None:
        """Send ``payloads`` as MESSAGE frames of the output stream.

        Raises:
            ConnectionError: not connected (call :meth:`connect_and_intro` first).
        """
        if self.sock is None:
            raise ConnectionError("not connected")
        self.sock.sendall(self.session.payloads(payloads))

    def phase1_answered(self) -> bool:
        """Send PHASE1 for a new checkpoint, wait for the vote, send PHASE2 accordingly."""
        if self.sock is None:
            return False
        self._checkpoint += 1
        self.sock.sendall(self.session.phase1(self._checkpoint))
        votes = [
            e
            for e in self._read(self.sock, 5.0, lambda s: VoteReceived in s, set())
            if isinstance(e, VoteReceived)
        ]
        if not votes:
            return False
        self.sock.sendall(self.session.phase2(votes[0].txn_id, votes[0].commit))
        return True

    def drop_connection(self) -> None:
        """Close the connection (if any) and forget the session's connection state."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.session.connection_lost()

    def close(self) -> None:
        """Close the connection, as :meth:`drop_connection`."""
        self.drop_connection()

    def _read(self, sock: socket.socket, timeout: float, done: Any, seen: set[type]) -> list[Any]:
        events: list[Any] = []
        deadline = time.monotonic() + timeout
        sock.settimeout(0.1)
        while not done(seen) and time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                new = self.session.receive(data)
            except Exception:
                break
            events.extend(new)
            seen.update(type(e) for e in new)
        return events
