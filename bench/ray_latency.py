"""Latency at low rates, embedded and on Ray: does a batching path end its batch as soon as
nothing else is ready?

``python -m bench.ray_latency [--seconds S] [--workers N]``

One ``machida`` runs ``bench.apps.echo_keyed`` (a TCP source of 8-byte sequence numbers, key by
the number modulo 16, a count per key, a TCP sink read here), first embedded, then with
``--backend ray --workers N`` (a local Ray cluster started by the worker). After a warm-up,
messages are sent at 10/s and at 1000/s for ``--seconds`` each; a message's latency is the
time from its send to its sequence number arriving at the sink. On Ray a message crosses the
source actor's channel to a worker actor and the worker's channel to the sink actor: each
channel sends its first buffered message after at most a few milliseconds (the source actor's
linger) or at the end of the call that produced it.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import proc

APP = "bench.apps.echo_keyed"
SEQ = struct.Struct(">Q")
RATES = (10.0, 1000.0)


class Sink:
    """Accepts the worker's sink connection and records when each sequence number arrives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.arrived: dict[int, int] = {}
        self.lock = threading.Lock()
        proc.accept_forever(self.sock, self._read)

    def _read(self, conn: socket.socket) -> None:
        pending = b""
        with conn:
            while chunk := conn.recv(65536):
                now = time.monotonic_ns()
                pending += chunk
                whole = len(pending) // SEQ.size * SEQ.size
                with self.lock:
                    for (seq,) in SEQ.iter_unpack(pending[:whole]):
                        self.arrived[seq] = now
                pending = pending[whole:]


def _connect(port: int, worker: object, timeout: float = 120.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError:
            if time.monotonic() > deadline or getattr(worker, "poll", lambda: None)() is not None:
                raise
            time.sleep(0.2)


def _frame(seq: int) -> bytes:
    return (8).to_bytes(4, "big") + SEQ.pack(seq)


def measure(backend: str, workers: int, seconds: float) -> dict[float, list[float]]:
    """Latencies in milliseconds per rate for one backend."""
    sink = Sink()
    source_port = proc.free_port()
    extra = ["--backend", "ray", "--workers", str(workers)] if backend == "ray" else []
    procs = proc.Procs()
    env_note = {"WALLAROO_BENCH_SOURCE": f"127.0.0.1:{source_port}",
                "WALLAROO_BENCH_SINK": f"127.0.0.1:{sink.port}"}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "worker.log"
        os.environ.update(env_note)  # proc.start passes this environment on
        machida = str(Path(proc.PYTHON).parent / "machida")
        worker = procs.start([machida, "--application-module", APP, *extra], log)
        try:
            sock = _connect(source_port, worker)
            seq = 0
            deadline = time.monotonic() + 120
            while not sink.arrived:  # warm-up: until the path is up end to end
                sock.sendall(_frame(seq))
                seq += 1
                time.sleep(0.05)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"nothing arrived; see {log}")
            time.sleep(1.0)
            found: dict[float, list[float]] = {}
            for rate in RATES:
                sent: dict[int, int] = {}
                period = 1.0 / rate
                start = time.monotonic()
                n = int(seconds * rate)
                for i in range(n):
                    target = start + i * period
                    pause = target - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    sent[seq] = time.monotonic_ns()
                    sock.sendall(_frame(seq))
                    seq += 1
                wait_until = time.monotonic() + 10
                while time.monotonic() < wait_until:
                    with sink.lock:
                        if all(s in sink.arrived for s in sent):
                            break
                    time.sleep(0.01)
                with sink.lock:
                    lost = [s for s in sent if s not in sink.arrived]
                    if lost:
                        raise RuntimeError(f"{backend}: {len(lost)} of {n} messages never arrived")
                    found[rate] = [(sink.arrived[s] - t) / 1e6 for s, t in sent.items()]
            sock.close()
            return found
        finally:
            procs.stop_all()
            sink.sock.close()


def _q(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    """Print p50, p99 and max latency per backend and rate."""
    parser = argparse.ArgumentParser(prog="python -m bench.ray_latency", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per rate (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (default 2)")
    args = parser.parse_args(argv)
    print("| backend | rate | messages | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for backend in ("embedded", "ray"):
        for rate, lat in measure(backend, args.workers, args.seconds).items():
            name = backend if backend == "embedded" else f"ray, {args.workers} workers"
            print(
                f"| {name} | {rate:,.0f}/s | {len(lat)} | {statistics.median(lat):.2f} | "
                f"{_q(lat, 0.99):.2f} | {max(lat):.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
