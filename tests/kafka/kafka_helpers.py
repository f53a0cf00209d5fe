"""Helpers of the Kafka tests: unique topics and groups on the session's broker, producing and
reading whole topics, and the Kafka connector programs started each way."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from connector_helpers import Proc, Procs, free_port, start_connector

HERE = Path(__file__).resolve().parent
WAYS = ["executable", "python -m", "wallaroo connector", "copied file"]
GROUP_TIMEOUTS = ("2000",)  # session.timeout.ms: Tansu joins a group in about half of it


def record(i: int) -> str:
    return f"rec-{i:05d}"


class Kafka:
    """A client of the test broker."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def topic(self, prefix: str, partitions: int = 4) -> str:
        # A client is never kept: Tansu waits for open connections when it stops.
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(name, partitions, 1)])
        for future in futures.values():
            future.result(10)
        return name

    @staticmethod
    def group(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    def produce(self, topic: str, values: list[str], pause: float = 0.0) -> None:
        """Produce ``values`` keyed by their number, one record per batch (Tansu reports wrong
        end offsets for batches of several records)."""
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "batch.num.messages": 1, "linger.ms": 0}
        )
        for n, value in enumerate(values):
            producer.produce(topic, value.encode(), value.rpartition("-")[2].encode())
            if pause and n % 100 == 99:
                producer.poll(0)
                time.sleep(pause)
        assert producer.flush(30) == 0

    def produce_in_background(
        self, topic: str, values: list[str], seconds: float
    ) -> threading.Thread:
        pause = seconds / max(len(values) / 100, 1)
        thread = threading.Thread(target=self.produce, args=(topic, values, pause), daemon=True)
        thread.start()
        return thread

    def read(self, topic: str, count: int, timeout: float = 60.0, grace: float = 1.0) -> list[str]:
        """Every value of ``topic`` (no group: all partitions from the start), once ``count``
        arrived and ``grace`` seconds passed without more, or at ``timeout``."""
        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": "reader", "enable.auto.commit": False}
        )
        try:
            meta = consumer.list_topics(topic, 10)
            partitions = sorted(meta.topics[topic].partitions)
            consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
            values: list[str] = []
            deadline = time.monotonic() + timeout
            quiet_until = None
            while time.monotonic() < deadline:
                batch = [m for m in consumer.consume(1000, 0.2) if m.error() is None]
                values += [m.value().decode() for m in batch]
                if not grace and len(values) >= count:
                    break
                if batch:
                    quiet_until = None
                elif len(values) >= count:
                    quiet_until = quiet_until or time.monotonic() + grace
                    if time.monotonic() >= quiet_until:
                        break
            return values
        finally:
            consumer.close()

    def committed(self, group: str, topic: str) -> dict[int, int]:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            partitions = sorted(consumer.list_topics(topic, 10).topics[topic].partitions)
            tps = consumer.committed([TopicPartition(topic, p) for p in partitions], 10)
            return {tp.partition: tp.offset for tp in tps}
        finally:
            consumer.close()


def kafka_procs(cwd: Path) -> Procs:
    """Processes that load tests/kafka/*_app.py, with free connector ports."""
    procs = Procs(cwd)
    procs.env["PYTHONPATH"] = f"{HERE}{os.pathsep}{cwd}"
    procs.env["FEED_PORT"] = str(free_port())
    procs.env["RESULTS_PORT"] = str(free_port())
    return procs


def start_source(
    procs: Procs, way: str, bootstrap: str, topic: str, group: str, *extra: str
) -> Proc:
    args = ["--application-module", "kafka_app", "--connector", "feed", "--feed-topics", topic,
            "--feed-bootstrap_brokers", bootstrap, "--feed-consumer_group", group,
            "--feed-session_timeout_ms", GROUP_TIMEOUTS[0], *extra]  # fmt: skip
    return start_connector(procs, "kafka_source", way, *args)


def start_sink(procs: Procs, way: str, bootstrap: str, topic: str) -> Proc:
    args = ["--application-module", "kafka_app", "--connector", "results", "--results-topic",
            topic, "--results-bootstrap_brokers", bootstrap]  # fmt: skip
    return start_connector(procs, "kafka_sink", way, *args)
