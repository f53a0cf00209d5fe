"""Helpers for the connector tests: free ports, processes that are always reaped, the prebuilt
connector programs started each documented way, UDP peers, the test applications, TCP proxies.

It also holds the fixtures that the folders of the service connector tests (tests/rabbitmq,
tests/redis, tests/postgres) share: their conftest.py imports them by name."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from diagnostics import give_up

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """A child process whose merged stdout/stderr lines are collected by a thread."""

    def __init__(self, name: str, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        self.args = args
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 20.0, start: int = 0) -> str:
        """Return the first line (from index ``start``) containing ``text``."""
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if text in line:
                        return line
                seen = max(seen, len(self.lines))
                if self._eof:
                    raise AssertionError(
                        f"{self.name} exited ({self.popen.poll()}) before printing {text!r}:\n"
                        f"{self.output_unlocked()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        self._give_up()  # outside the lock: the reader thread collects the stacks
        raise AssertionError(
            f"{self.name} did not print {text!r} in {timeout} s (its stacks, if it could "
            f"write them, are at the end):\n{self.output}"
        )

    def _give_up(self) -> None:
        """Ask the process for its stacks (SIGUSR1), give it a second, kill it."""
        give_up(self.popen)
        self._reader.join(5)

    def output_unlocked(self) -> str:
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and return the exit code; a process that does not exit within
        ``timeout`` is asked for its stacks and killed, and the assertion shows its output."""
        self.popen.send_signal(sig)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self._give_up()
            raise AssertionError(
                f"{self.name} did not exit {timeout} s after signal {sig}:\n{self.output}"
            ) from None
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        self._reader.join(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


class Procs:
    """Starts processes in ``cwd`` with ``env``; the fixture kills every one at the end."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = dict(os.environ)
        self.env["PATH"] = f"{BIN}{os.pathsep}{self.env.get('PATH', '')}"
        self.env["PYTHONPATH"] = str(cwd)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.started: list[Proc] = []

    def start(self, name: str, *args: str | Path) -> Proc:
        proc = Proc(name, [str(a) for a in args], self.cwd, self.env)
        self.started.append(proc)
        return proc

    def machida(self, module: str, *args: str) -> Proc:
        return self.start("machida", BIN / "machida", "--application-module", module, *args)

    def python(self, name: str, *args: str | Path) -> Proc:
        return self.start(name, sys.executable, *args)


def reaped(runner: Procs) -> Iterator[Procs]:
    """The body of a ``procs`` fixture: yields ``runner``, then kills whatever it started that
    is still running."""
    yield runner
    for proc in runner.started:
        proc.kill()


def start_connector(procs: Procs, name: str, way: str, *args: str) -> Proc:
    """Start the prebuilt connector program ``name`` one of the four documented ways:
    "executable" (``connectors/<name>``), "python -m", "wallaroo connector" or "copied file"
    (its module copied into ``procs.cwd`` as ``my_<name>.py``, once, and run from there)."""
    if way == "executable":
        return procs.start(name, REPO / "connectors" / name, *args)
    if way == "python -m":
        return procs.python(name, "-m", f"wallaroo.connectors.{name}", *args)
    if way == "wallaroo connector":
        return procs.start(name, BIN / "wallaroo", "connector", name, *args)
    copy = procs.cwd / f"my_{name}.py"  # "copy it into your tree"
    if not copy.exists():
        shutil.copy(REPO / "src" / "wallaroo" / "connectors" / f"{name}.py", copy)
    return procs.python(name, copy, *args)


def poll_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``condition`` every 0.05 s; fail after ``timeout`` s, naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def assert_a_missing_library_is_one_line(
    procs: Procs, library: str, extra: str, program: str, *args: str
) -> str:
    """Run connector program ``program`` with ``args`` as if ``library`` were not installed: it
    must exit with code 2 and one line on stderr, which names ``pip install
    'wallaroo-py[<extra>]'``. Returns that line."""
    script = (
        "import runpy, sys\n"
        f"sys.modules[{library!r}] = None  # as if {library} were not installed\n"
        f"runpy.run_module('wallaroo.connectors.{program}', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=procs.cwd, env=procs.env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"pip install 'wallaroo-py[{extra}]'" in lines[0], result.stderr
    return lines[0]


# The fixtures of tests/rabbitmq, tests/redis and tests/postgres (imported by their conftest.py).


@pytest.fixture
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Procs]:
    """Starts processes in ``tmp_path`` with the test's folder (its applications) importable;
    kills whatever is still running at the end."""
    runner = Procs(tmp_path)
    runner.env["PYTHONPATH"] = f"{request.path.parent}:{tmp_path}"
    yield from reaped(runner)


@pytest.fixture
def uid() -> str:
    """A suffix that makes this test's channel, key, queue or table names unique."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def launch(procs: Procs) -> Callable[..., Proc]:
    """``launch(program, way, *args)`` starts a prebuilt connector program one of the four
    documented ways: "executable", "python -m", "wallaroo connector" or "copied file"."""
    return lambda program, way, *args: start_connector(procs, program, way, *args)


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """``wait_until(condition, what, timeout=20)`` polls ``condition`` every 0.05 s."""
    return poll_until


@pytest.fixture
def client(redis_port: int) -> Iterator[object]:
    """A client of the machine's Redis (``redis_port``) that decodes replies; closed at the
    end."""
    import redis  # only the tests that use Redis need redis-py

    connection = redis.Redis(port=redis_port, decode_responses=True)
    yield connection
    connection.close()


class UdpPeer:
    """A UDP socket on a free port: a receiver of results or a sender of datagrams."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])

    def send(self, port: int, payloads: list[bytes], pause: float = 0.0005) -> None:
        for payload in payloads:
            self.sock.sendto(payload, ("127.0.0.1", port))
            time.sleep(pause)

    def receive(self, count: int, timeout: float = 15.0) -> list[bytes]:
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                got.append(self.sock.recv(65535))
            except TimeoutError:
                break
        return got

    def close(self) -> None:
        self.sock.close()


def write_module(directory: Path, name: str, source: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def celsius_ports(procs: Procs) -> tuple[int, int]:
    """Pick the worker's connector ports and put them in the processes' environment."""
    source_port, sink_port = free_port(), free_port()
    procs.env["CELSIUS_FEED_PORT"] = str(source_port)
    procs.env["FAHRENHEIT_CONVERSION_PORT"] = str(sink_port)
    return source_port, sink_port


def fahrenheit(celsius: float) -> bytes:
    """What the pipeline outputs for a Celsius value sent as a big-endian float32."""
    import struct

    value = struct.unpack(">f", struct.pack(">f", celsius))[0]
    return str(value * 1.8 + 32).encode()


class Proxy:
    """A TCP forwarder to ``127.0.0.1:target``; :meth:`cut` breaks every connection through it.
    While ``refusing`` is true, it closes each new connection at once."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.accepted = 0
        self._sockets: list[socket.socket] = []
        self._all: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.refusing = False
        self._spawn(self._accept)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self.accepted += 1
                self._sockets += [client, upstream]
                self._all += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self, close: bool = False) -> None:
        """Shut down every connection through the proxy (and close its sockets if ``close``)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            if close:
                sock.close()

    def close(self) -> None:
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self.server.close()
        self.cut()
        for thread in self._threads:
            thread.join(5)
        for sock in self._all:
            sock.close()
