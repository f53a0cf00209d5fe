"""A fake worker for client tests: the worker's side of a source connection (``SourceSession``)
served by threads on a free port, with knobs to cut connections and send RESTART."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from wallaroo.protocol.events import (
    HandshakeDone,
    Messages,
    SessionClosed,
    StreamClosed,
    StreamOpened,
)
from wallaroo.protocol.frames import Error, Restart
from wallaroo.protocol.source_session import SourceSession
from wallaroo.protocol.stream_registry import StreamRegistry


class FakeWorker:
    """Accepts connector connections; records what arrives; acks after "processing"."""

    def __init__(self, cookie: str = "", max_credits: int = 4096, refill_credits: int = 1024):
        self.cookie = cookie
        self.max_credits = max_credits
        self.refill_credits = refill_credits
        self.registry = StreamRegistry()
        self.lock = threading.Condition()
        self.messages: list[tuple[int, int, bytes | None, bytes | None]] = []  # sid, id, key, msg
        self.opened: list[tuple[int, str, int]] = []
        self.ended: list[int] = []
        self.hellos: list[HandshakeDone] = []
        self.connections = 0
        self.processing = True  # False: never report progress, so nothing is ever acked
        self.acking = True  # False: send no ACK (so no new credits) until it is True again
        self._live: dict[socket.socket, SourceSession] = {}
        self._threads: list[threading.Thread] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._closing = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def seed(self, stream_id: int, point_of_ref: int) -> None:
        """Pretend the stream was fed before and released at ``point_of_ref``."""
        with self.lock:
            self.registry.acquire(stream_id, "earlier")
            self.registry.release(stream_id, "earlier", point_of_ref)

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        with self.lock:
            if not self.lock.wait_for(predicate, timeout):
                raise AssertionError("the fake worker waited in vain")

    def ids(self, stream_id: int | None = None) -> list[int]:
        with self.lock:
            return [m[1] for m in self.messages if stream_id is None or m[0] == stream_id]

    def payloads(self) -> list[bytes | None]:
        with self.lock:
            return [m[3] for m in self.messages]

    def cut(self) -> None:
        """Drop every connection (as a crash of the network would)."""
        with self.lock:
            for sock, session in list(self._live.items()):
                session.connection_lost()
                sock.shutdown(socket.SHUT_RDWR)

    def restart(self, address: str = "") -> None:
        """Relinquish every stream, send RESTART and close, as a rolled-back worker does."""
        with self.lock:
            for sock, session in list(self._live.items()):
                session.connection_lost()
                sock.sendall(Restart(address).encode())
                sock.shutdown(socket.SHUT_RDWR)

    def send_error(self, message: str) -> None:
        """Send ERROR on every connection (the worker gives up on them)."""
        with self.lock:
            for sock in list(self._live):
                sock.sendall(Error(message).encode())

    def close(self) -> None:
        self._closing = True
        self.cut()
        self._server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._server.close()
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while not self._closing:
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            session = SourceSession(
                cookie=self.cookie,
                max_credits=self.max_credits,
                refill_credits=self.refill_credits,
                registry=self.registry,
            )
            with self.lock:
                self._live[sock] = session
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock, session), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, session: SourceSession) -> None:
        try:
            while data := sock.recv(65536):
                with self.lock:
                    if session.closed:
                        break
                    for event in session.receive(data):
                        self._record(session, event)
                    if self.acking:
                        session.flush_acks()
                    out = session.take_output()
                    self.lock.notify_all()
                    if out:  # under the lock: cut() and restart() never split a frame
                        sock.sendall(out)
        except OSError:
            pass
        finally:
            with self.lock:
                session.connection_lost()
                self._live.pop(sock, None)
                self.lock.notify_all()
            sock.close()

    def _record(self, session: SourceSession, event: object) -> None:
        if isinstance(event, Messages):
            for message_id, key, payload in zip(
                event.message_ids, event.keys, event.payloads, strict=True
            ):
                self.messages.append((event.stream_id, message_id, key, payload))
            if self.processing:
                session.processed(event.stream_id, event.message_ids[-1])
        elif isinstance(event, StreamOpened):
            self.opened.append((event.stream_id, event.stream_name, event.point_of_ref))
        elif isinstance(event, StreamClosed):
            self.ended.append(event.stream_id)
        elif isinstance(event, HandshakeDone):
            self.hellos.append(event)
        elif isinstance(event, SessionClosed):
            pass


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
