"""Drivers of Ray runs: the correctness pipeline (file source, file sink) and word count.

:class:`RayPipeline` is the fault suite's :class:`fault_driver.Pipeline` with the worker run as
``machida --backend ray --workers N --ray-address ADDRESS``; its control port gives the actors'
process ids (to kill one) and rescales the application.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fault_driver import BIN, REPO, Pipeline, free_port, wait_until

from ray_cluster import HEALTH_CHECKS, RAY_ENV, require_ray
from wallaroo.ray_backend.control import CONTROL_FILE, request

__all__ = ["HEALTH_CHECKS", "RAY_ENV", "RayPipeline", "require_ray"]

EXAMPLES = REPO / "examples"


@dataclass
class RayPipeline(Pipeline):
    """The correctness pipeline on Ray (``workers`` worker actors, the cluster at
    ``ray_address``)."""

    workers: int = 2
    ray_address: str = ""

    def _worker_command(self) -> list[str]:
        return [*super()._worker_command(), "--backend", "ray", "--workers", str(self.workers),
                "--ray-address", self.ray_address]  # fmt: skip

    def control(self, body: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        address = json.loads((self.resilience_dir / CONTROL_FILE).read_text())["address"]
        return request(address, body, timeout)

    def status(self) -> dict[str, Any]:
        """The coordinator's status (``ok`` is False while it is rolling back)."""
        try:
            return self.control({"op": "status"}, 30)
        except (OSError, ValueError):
            return {"ok": False}

    def wait_running(self, restarts: int = 0, timeout: float = 90.0) -> dict[str, Any]:
        """Wait until the application runs after ``restarts`` restarts; its status."""
        found: dict[str, Any] = {}

        def running() -> bool:
            found.update(self.status())
            return bool(found.get("ok")) and found.get("restarts", -1) >= restarts

        wait_until(running, timeout, f"the application running after {restarts} restarts")
        return found

    def kill_actor(self, name: str) -> dict[str, Any]:
        """SIGKILL the process of actor ``name`` (``w1``, ``s0``, ``sink0``); its info."""
        status = self.wait_running()
        (actor,) = [a for a in status["actors"] if a["name"] == name]
        os.kill(actor["pid"], signal.SIGKILL)
        self.record(f"{name} SIGKILL", f"pid {actor['pid']}")
        return actor

    def wait_committed(self, fraction: float, timeout: float = 120.0) -> None:
        target = fraction * self.expected_bytes
        wait_until(lambda: self.committed_size() >= target, timeout, f"{fraction:.0%} committed")


class LineCollector:
    """A TCP sink peer: accepts connections and keeps every byte received."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.data = bytearray()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn:
            while chunk := conn.recv(65536):
                with self._lock:
                    self.data += chunk

    def lines(self) -> list[bytes]:
        with self._lock:
            return bytes(self.data).splitlines(keepends=True)

    def close(self) -> None:
        self.sock.close()


def send_framed(port: int, payloads: list[bytes], timeout: float = 60.0) -> None:
    """Send u32-framed payloads to a TCP source, retrying until it listens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with sock:
        sock.sendall(b"".join(len(p).to_bytes(4, "big") + p for p in payloads))


def machida_ray(app: str, args: list[str], workers: int, ray_address: str, cwd: Path,
                log: Path, *, wallaroo_run: bool = False) -> subprocess.Popen[bytes]:  # fmt: skip
    """Start ``machida --backend ray`` (or ``wallaroo run``) for an example application."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(EXAMPLES / app.split("/", maxsplit=1)[0]), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    module = app.rsplit("/", maxsplit=1)[-1]
    start = ([str(BIN / "wallaroo"), "run", module] if wallaroo_run
             else [str(BIN / "machida"), "--application-module", module])  # fmt: skip
    command = [*start, "--backend", "ray", "--workers", str(workers),
               "--ray-address", ray_address, *args]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop_worker(proc: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM a worker started by :func:`machida_ray` and check that it exits with 0 (its
    log's tail otherwise); killed if it does not stop."""
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()


__all__ = [
    "HEALTH_CHECKS",
    "RAY_ENV",
    "LineCollector",
    "RayPipeline",
    "free_port",
    "machida_ray",
    "require_ray",
    "send_framed",
    "stop_worker",
]
