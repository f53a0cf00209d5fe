"""Fixtures of the Redis connector tests: real Redis, real processes, unique names per test.

``procs``, ``uid``, ``launch``, ``wait_until`` and ``client`` are shared with tests/rabbitmq and
tests/postgres, in tests/connectors/connector_helpers.py; ``relays`` is this folder's."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "connectors"))  # the shared process helpers and fixtures
from connector_helpers import client, free_port, launch, procs, uid, wait_until  # noqa: E402, F401


class Relay:
    """A TCP relay from a fixed port to ``127.0.0.1:target`` that can go down (every
    connection through it is cut and new ones are refused) and come back on the same port."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._server: socket.socket | None = None
        self.up()

    def up(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def down(self) -> None:
        server, self._server = self._server, None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in [server, *sockets]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked on it
                sock.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def relays() -> Iterator[Callable[[int], Relay]]:
    """``relays(port)`` makes a :class:`Relay` to that port; all are closed at the end."""
    made: list[Relay] = []

    def make(target: int) -> Relay:
        made.append(Relay(target))
        return made[-1]

    yield make
    for relay in made:
        relay.down()
