"""Fixtures of the Redis connector tests: real Redis, real processes, unique names per test."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "connectors"))  # the shared process helpers
from connector_helpers import BIN, REPO, Proc, Procs, free_port  # noqa: E402

Launch = Callable[..., Proc]


def _launch(procs: Procs, program: str, way: str, *args: str) -> Proc:
    if way == "executable":
        return procs.start(program, REPO / "connectors" / program, *args)
    if way == "python -m":
        return procs.python(program, "-m", f"wallaroo.connectors.{program}", *args)
    if way == "wallaroo connector":
        return procs.start(program, BIN / "wallaroo", "connector", program, *args)
    copy = procs.cwd / f"my_{program}.py"
    copy.write_bytes((REPO / "src" / "wallaroo" / "connectors" / f"{program}.py").read_bytes())
    return procs.python(program, copy, *args)


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Starts processes in ``tmp_path`` with this folder's applications importable; kills
    whatever is still running at the end."""
    runner = Procs(tmp_path)
    runner.env["PYTHONPATH"] = f"{HERE}:{tmp_path}"
    yield runner
    for proc in runner.started:
        proc.kill()


@pytest.fixture
def uid() -> str:
    """A suffix that makes this test's channel, key, queue or table names unique."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def launch(procs: Procs) -> Launch:
    """``launch(program, way, *args)`` starts a prebuilt connector program one of the four
    documented ways: "executable", "python -m", "wallaroo connector" or "copied file"."""
    return lambda program, way, *args: _launch(procs, program, way, *args)


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """``wait_until(condition, what, timeout=20)`` polls ``condition`` every 0.05 s."""
    return _wait_until


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
