"""Connector latency: the time from a write to the external system to the worker's ingest,
through each prebuilt source connector, against its real server.

One ``machida`` runs ``bench.apps.stamp`` (connector source ``feed``, a TCP sink read here).
For each feed in turn its connector program starts (``python -m wallaroo.connectors.<name>``)
and connects to that worker; warm-up messages go through until one arrives; then messages are
written at a fixed rate, each carrying ``time.monotonic_ns()`` taken just before the write
(``sendto``, a file append, a Kafka produce, a Kinesis PutRecord, a Redis PUBLISH, a RabbitMQ
publish, a PostgreSQL INSERT whose trigger NOTIFYs), and the application's computation stamps
the moment it runs. Latency = that stamp less the write's. The ``SourceConnector`` feed is the
baseline: the same worker fed by the connector client library written directly, so what a
program adds is its latency less the baseline's (per percentile).

The feeds and their servers are in :mod:`bench.connector_feeds`. ``python -m bench --only
connectors`` runs this (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import proc
from bench.connector_feeds import APP, FEED_CLASSES, KINESIS_BATCH, Context, Feed, Servers

OUT = struct.Struct(">cIQQ")
FEEDS = (
    "SourceConnector",
    "udp_source",
    "file_source",
    "kafka_source",
    "kafka_source fetch_wait_max_ms=10",
    "kinesis_source",
    "kinesis_source poll_interval=0.01",
    "redis_subscriber_source",
    "rabbitmq_source",
    "postgres_notify_source",
)
RATES = (10.0, 100.0, 1000.0)


class RunError(Exception):
    """A process failed, or messages did not arrive in time."""


# -- the worker's output ------------------------------------------------------------------------
class Receiver:
    """Listens for the worker's TCP sink and collects every ``(kind, seq, written, ingested)``
    record, by kind and sequence number, in a thread of its own."""

    def __init__(self, host: str) -> None:
        self.server = socket.create_server((host, 0))
        self.port = int(self.server.getsockname()[1])
        self.records: dict[tuple[bytes, int], tuple[int, int]] = {}
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closed
            while True:
                conn, _ = self.server.accept()
                with conn:
                    self._read(conn)

    def _read(self, conn: socket.socket) -> None:
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
            whole = len(data) - len(data) % OUT.size
            with self.cond:
                for kind, seq, written, ingested in OUT.iter_unpack(data[:whole]):
                    self.records[(kind, seq)] = (written, ingested)
                self.cond.notify_all()
            data = data[whole:]

    def wait(self, keys: list[tuple[bytes, int]], timeout: float) -> bool:
        """Wait until every record of ``keys`` arrived, or ``timeout``; True if they did."""
        with self.cond:
            return self.cond.wait_for(lambda: all(k in self.records for k in keys), timeout)

    def wait_any(self, keys: list[tuple[bytes, int]], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: any(k in self.records for k in keys), timeout)

    def close(self) -> None:
        self.server.close()


# -- running ------------------------------------------------------------------------------------
@dataclass
class Measured:
    """The latencies of one feed at one rate."""

    feed: str
    rate: float
    n: int
    achieved: float  # messages/s actually written
    latencies_ms: list[float]

    def at(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Run:
    """One worker and its receiver; :meth:`measure` runs one feed at every rate."""

    def __init__(self, tmp: Path, log: Callable[[str], None]) -> None:
        self.tmp, self.log = tmp, log
        self.host = proc.private_host()
        self.procs = proc.Procs()
        self.servers = Servers(tmp)
        self.receiver = Receiver(self.host)
        self.source_port = proc.free_port(self.host)
        self.app_flags = [
            "--bench-host",
            self.host,
            "--bench-source-port",
            str(self.source_port),
            "--bench-sink-port",
            str(self.receiver.port),
        ]
        self.seq = 0

    def start_worker(self) -> None:
        command = [
            str(Path(proc.PYTHON).parent / "machida"),
            "--application-module",
            APP,
            "--resilience-dir",
            str(self.tmp / "resilience"),
            *self.app_flags,
        ]
        worker = self.procs.start(command, self.tmp / "worker.log")
        proc.wait_for_text(self.tmp / "worker.log", "is running application", worker, 30)

    def close(self) -> None:
        self.procs.stop_all()
        self.receiver.close()
        self.servers.stop()

    def payloads(self, kind: bytes, count: int) -> Iterator[tuple[tuple[bytes, int], bytes]]:
        """``count`` keys and payloads of ``kind``, each stamped when it is taken."""
        for _ in range(count):
            self.seq += 1
            key = (kind, self.seq)
            yield key, b"%s %d %d" % (kind, self.seq, time.monotonic_ns())

    def measure(self, name: str, counts: dict[float, int]) -> list[Measured]:
        """Start feed ``name``'s program, warm it up, then write ``counts[rate]`` messages at
        each rate; RunError when messages do not arrive in time."""
        feed = FEED_CLASSES[name](Context(self.tmp, self.host, self.app_flags, self.servers))
        program: subprocess.Popen[bytes] | None = None
        log = self.tmp / f"{name.replace(' ', '-')}.log"
        try:
            feed.open()
            spec = feed.program()
            if spec is not None:
                program = self._start_program(feed, *spec, log)
            feed.started()
            self._warm_up(feed, program, log)
            return [self._paced(feed, rate, count) for rate, count in counts.items()]
        finally:
            if program is not None:
                proc.terminate(program)
            feed.close()

    def _start_program(
        self, feed: Feed, program: str, params: dict[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        command = [proc.PYTHON, "-m", f"wallaroo.connectors.{program}"]
        command += ["--application-module", APP, "--connector", "feed", *self.app_flags]
        for key, value in params.items():
            command += [f"--feed-{key}", value]
        env = proc.env() | feed.env()
        with open(log, "wb") as err:
            started = subprocess.Popen(
                command, cwd=self.tmp, env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err
            )
        self.procs.procs.append(started)
        proc.wait_for_text(log, program, started, 30)  # the first line: it runs
        return started

    def _warm_up(self, feed: Feed, program: subprocess.Popen[bytes] | None, log: Path) -> None:
        """Write a warm-up message every 0.1 s until one arrives (the program subscribed,
        joined its group, ...), then five more that must all arrive."""
        deadline = time.monotonic() + 60
        sent: list[tuple[bytes, int]] = []
        while True:
            key, payload = next(self.payloads(b"w", 1))
            feed.write(payload)
            sent.append(key)
            if self.receiver.wait_any(sent, 0.1):
                break
            if program is not None and program.poll() is not None:
                raise RunError(f"{feed.name} exited ({program.returncode}); see {log}")
            if time.monotonic() > deadline:
                raise RunError(f"nothing came through {feed.name} in 60 s; see {log}")
        last = []
        for key, payload in self.payloads(b"w", 5):
            feed.write(payload)
            last.append(key)
            time.sleep(0.02)
        if not self.receiver.wait(last, 30):
            raise RunError(f"warm-up messages through {feed.name} did not all arrive; see {log}")

    def _paced(self, feed: Feed, rate: float, count: int) -> Measured:
        """Write ``count`` measured messages at ``rate`` per second and collect them."""
        keys: list[tuple[bytes, int]] = []
        batched = feed.writes_batches and rate * KINESIS_BATCH >= 2
        step = KINESIS_BATCH if batched else 1.0 / rate
        per_write = round(rate * step) if batched else 1
        start = time.monotonic()
        written = 0
        while written < count:
            delay = start + (written / per_write) * step - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            chunk = list(self.payloads(b"m", min(per_write, count - written)))
            if batched:
                feed.write_batch([p for _, p in chunk])
            else:
                feed.write(chunk[0][1])
            keys += [k for k, _ in chunk]
            written += len(chunk)
        achieved = count / max(time.monotonic() - start, 1e-9)
        if not self.receiver.wait(keys, 30):
            got = sum(k in self.receiver.records for k in keys)
            raise RunError(f"{feed.name} at {rate:g}/s: {got} of {count} arrived in 30 s")
        with self.receiver.cond:
            stamps = [self.receiver.records[k] for k in keys]
        latencies = [(ingested - written_ns) / 1e6 for written_ns, ingested in stamps]
        return Measured(feed.name, rate, count, achieved, latencies)


def run_all(
    feeds: list[str], counts: dict[float, int], log: Callable[[str], None]
) -> tuple[dict[str, list[Measured]], list[str]]:
    """Measure every feed of ``feeds`` (the baseline ``SourceConnector`` first, added when
    missing) at every rate of ``counts`` through one worker; returns the measurements by feed
    and the failures (a failed feed's logs are kept in a directory its failure names)."""
    ordered = ["SourceConnector", *(f for f in feeds if f != "SourceConnector")]
    measured: dict[str, list[Measured]] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wallaroo-bench-") as tmp:
        run = Run(Path(tmp), log)
        try:
            run.start_worker()
            for feed in ordered:
                log(f"connector latency {feed}: " + ", ".join(
                    f"{n:,} at {rate:g}/s" for rate, n in counts.items()
                ))  # fmt: skip
                try:
                    measured[feed] = run.measure(feed, counts)
                except (RunError, RuntimeError, TimeoutError, OSError) as exc:
                    kept = tempfile.mkdtemp(prefix="wallaroo-bench-failed-")
                    for file in Path(tmp).glob("*.log"):
                        shutil.copy(file, kept)
                    failures.append(f"connector latency {feed}: {exc} (logs in {kept})")
                    log(f"FAILED {failures[-1]}")
        except (RunError, RuntimeError, TimeoutError, OSError) as exc:
            failures.append(f"connector latency: the worker: {exc}")
        finally:
            run.close()
    return measured, failures


@dataclass(frozen=True)
class Summary:
    """One feed at one rate: its percentiles, and what it adds to the baseline's (None for
    the baseline itself)."""

    feed: str
    rate: float
    n: int
    achieved: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None


def summary(measured: dict[str, list[Measured]]) -> list[Summary]:
    """One :class:`Summary` per feed and rate, in the order measured."""
    base = {m.rate: m for m in measured.get("SourceConnector", [])}
    records: list[Summary] = []
    for feed, results in measured.items():
        for m in results:
            plain = base.get(m.rate) if feed != "SourceConnector" else None
            records.append(
                Summary(
                    feed,
                    m.rate,
                    m.n,
                    m.achieved,
                    m.at(0.5),
                    m.at(0.99),
                    max(m.latencies_ms),
                    None if plain is None else m.at(0.5) - plain.at(0.5),
                    None if plain is None else m.at(0.99) - plain.at(0.99),
                )
            )
    return records
