"""Helpers for the connector tests: free ports, processes that are always reaped, UDP peers,
the test applications."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

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
                    raise AssertionError(
                        f"{self.name} did not print {text!r} in {timeout} s:\n"
                        f"{self.output_unlocked()}"
                    )
                self._cond.wait(remaining)

    def output_unlocked(self) -> str:
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and return the exit code."""
        self.popen.send_signal(sig)
        code = self.popen.wait(timeout)
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
    """A TCP forwarder to ``127.0.0.1:target``; :meth:`cut` breaks every connection through it."""

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

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self.server.close()
        self.cut()
        for thread in self._threads:
            thread.join(5)
        for sock in self._all:
            sock.close()
