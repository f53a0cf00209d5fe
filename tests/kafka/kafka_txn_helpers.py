"""Helpers of the transactional Kafka tests: keyed input produced in order, a
``read_committed`` reader of a whole topic, and the pipeline's processes (a transactional
``kafka_sink``, a worker with resilience, ``kafka_source``) started so that they can be
SIGKILLed and started again with the same command."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from connector_helpers import BIN, Proc, Procs, start_connector
from kafka_helpers import GROUP_TIMEOUTS
from kafka_txn_app import KEYS

APP = "kafka_txn_app"
CHECKPOINT_NS = "250000000"  # a checkpoint every 0.25 s


class KeyedProducer:
    """Produces ``rec-00000``, ``rec-00001``, ... in order at ``rate`` records a second, in a
    thread, from creation until :meth:`stop`: the pipeline always has input in flight, however
    long the test's kills take. Record ``i`` is keyed by ``i % KEYS`` (one key's records share a
    partition and keep their order), one record per batch (Tansu reports wrong end offsets for
    batches of several records)."""

    def __init__(self, bootstrap: str, topic: str, rate: float = 500.0) -> None:
        self.bootstrap, self.topic, self.rate = bootstrap, topic, rate
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "batch.num.messages": 1, "linger.ms": 0}
        )
        started = time.monotonic()
        while not self._stop.is_set():
            i = self.count
            producer.produce(self.topic, f"rec-{i:05d}".encode(), str(i % KEYS).encode())
            self.count = i + 1
            if i % 10 == 9:
                producer.poll(0)
                self._stop.wait(max(0.0, started + (i + 1) / self.rate - time.monotonic()))
        assert producer.flush(30) == 0

    def stop(self, at_least: int) -> int:
        """Stop once ``at_least`` records were produced; return how many were (all flushed)."""
        while self.count < at_least and self._thread.is_alive():
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive()
        return self.count  # again after a stop: the same count


class CommittedReader:
    """Reads every partition of ``topic`` from the start with ``isolation.level=
    read_committed``, in a thread, until :meth:`close`."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{topic}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        meta = self._consumer.list_topics(topic, 10)
        partitions = sorted(meta.topics[topic].partitions)
        self._consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        self._values: list[str] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            batch = [m for m in self._consumer.consume(500, 0.1) if m.error() is None]
            if batch:
                with self._cond:
                    self._values += [m.value().decode() for m in batch]
                    self._cond.notify_all()

    def values(self) -> list[str]:
        with self._cond:
            return list(self._values)

    def wait_for(self, count: int, timeout: float) -> int:
        """Wait until ``count`` values were read (or ``timeout``); return how many were."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._values) < count and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return len(self._values)

    def settle(self, count: int, timeout: float, quiet: float = 1.5) -> list[str]:
        """Wait for ``count`` values, then ``quiet`` seconds more for any extra (a duplicate
        would come late); return them all."""
        self.wait_for(count, timeout)
        seen = -1
        while seen != len(self.values()):
            seen = len(self.values())
            time.sleep(quiet)
        return self.values()

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self._consumer.close()


def exactly_once_report(got: list[str], expected: list[str]) -> str:
    """A short description of how ``got`` differs from ``expected`` (empty when it does not)."""
    counts, want = Counter(got), Counter(expected)
    duplicated = sorted(v for v, c in counts.items() if c > want.get(v, 0) and v in want)
    missing = sorted(set(want) - set(counts))
    wrong = sorted(set(counts) - set(want))
    if not duplicated and not missing and not wrong:
        return ""
    return (
        f"{len(got)} records for {len(expected)}: {len(duplicated)} duplicated "
        f"{duplicated[:5]}, {len(missing)} missing {missing[:5]}, {len(wrong)} unexpected "
        f"{wrong[:5]}"
    )


def start_with_env(procs: Procs, name: str, args: list[str], **env: str) -> Proc:
    """Start a process like ``procs.start`` with extra environment variables."""
    proc = Proc(name, args, procs.cwd, {**procs.env, **env})
    procs.started.append(proc)
    return proc


def start_worker(procs: Procs, resilience: Path, **env: str) -> Proc:
    """``machida`` with resilience, always the same command (a restart recovers)."""
    args = [str(BIN / "machida"), "--application-module", APP, "--name", "w1",
            "--run-with-resilience", "--resilience-dir", str(resilience),
            "--time-between-checkpoints", CHECKPOINT_NS]  # fmt: skip
    return start_with_env(procs, "machida", args, **env)


def start_txn_sink(procs: Procs, bootstrap: str, topic: str, spool: Path, *extra: str) -> Proc:
    """A transactional ``kafka_sink`` for connector ``results``."""
    args = ["--application-module", APP, "--connector", "results", "--results-topic", topic,
            "--results-bootstrap_brokers", bootstrap, "--results-transactional", "true",
            "--results-spool_dir", str(spool), *extra]  # fmt: skip
    return start_connector(procs, "kafka_sink", "python -m", *args)


def start_feed(procs: Procs, bootstrap: str, topic: str, group: str) -> Proc:
    """``kafka_source`` for connector ``feed``."""
    args = ["--application-module", APP, "--connector", "feed", "--feed-topics", topic,
            "--feed-bootstrap_brokers", bootstrap, "--feed-consumer_group", group,
            "--feed-session_timeout_ms", GROUP_TIMEOUTS[0]]  # fmt: skip
    return start_connector(procs, "kafka_source", "executable", *args)


def killed(proc: Proc, timeout: float = 30.0) -> int:
    """Wait for ``proc`` to exit (it kills itself at a crash point); return its exit code."""
    code = proc.popen.wait(timeout)
    proc.kill()  # joins the reader of its output
    return code


def sigkill(proc: Proc) -> None:
    proc.popen.kill()
    proc.popen.wait(10)
    proc.kill()


def all_output(procs: Procs) -> str:
    return "\n\n".join(f"--- {p.name} {p.args[-6:]}\n{p.output[-4000:]}" for p in procs.started)
