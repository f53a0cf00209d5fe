"""A real worker process with its metrics on, a TCP receiver for its sink, and a sender."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from diagnostics import give_up

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BIN = Path(sys.executable).parent
APP = HERE / "metrics_app.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def framed(payloads) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in payloads)


def numbers(start: int, n: int) -> list[bytes]:
    return [str(i).encode() for i in range(start, start + n)]


class TcpPeer:
    """A server on a free port that takes connections one after the other and hands every
    chunk it reads to :meth:`received`, until :meth:`close`."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def received(self, chunk: bytes) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(0.2)
                while not self._stop.is_set():
                    try:
                        chunk = conn.recv(65536)
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    self.received(chunk)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.close()


class Receiver(TcpPeer):
    """Plays the TCP sink's peer: counts the lines the worker writes."""

    def __init__(self) -> None:
        self.lines = 0
        super().__init__()

    def received(self, chunk: bytes) -> None:
        self.lines += chunk.count(b"\n")

    def wait_lines(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.lines < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sink got {self.lines} lines, expected {n}")
            time.sleep(0.05)


class WorkerProcess:
    """``machida`` running the parity-count app with ``--metrics-http`` (and extra flags)."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.receiver = Receiver()
        self.source_port = free_port()
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        self.stderr_path = tmp / "worker.log"
        self._log = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [
                str(BIN / "machida"),
                "--application-module",
                str(APP),
                "--resilience-dir",
                str(tmp / "resilience"),
                "--metrics-http",
                f"127.0.0.1:{self.http_port}",
                *extra,
                "--in",
                f"numbers@127.0.0.1:{self.source_port}",
                "--out",
                f"127.0.0.1:{self.receiver.port}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self._wait_up()

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def _wait_up(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        give_up(self.proc)  # its stacks land in its log
        raise TimeoutError(f"the worker's metrics endpoint did not answer:\n{self.log()}")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return r.read()

    def stats(self) -> dict:
        return json.loads(self.get("/api/stats"))

    def wait_stats(self, check, timeout: float = 15.0) -> dict:
        """Poll ``/api/stats`` until ``check(doc)`` is true; return that document."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.stats()
            if check(doc):
                return doc
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stats never satisfied the check: {json.dumps(doc)[:2000]}")
            time.sleep(0.1)

    def send(self, payloads) -> None:
        with socket.create_connection(("127.0.0.1", self.source_port)) as s:
            s.sendall(framed(payloads))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self.receiver.close()


class Feeder:
    """Sends numbers (and one bad payload per batch of 20) until stopped, ~20 batches a second."""

    def __init__(self, port: int, batch: int = 500) -> None:
        self.port = port
        self.batch = batch
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            batches = 0
            while not self._stop.is_set():
                payloads = numbers(self.sent, self.batch)
                if batches % 20 == 0:
                    payloads.append(b"not a number")
                s.sendall(framed(payloads))
                self.sent += self.batch
                batches += 1
                time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
