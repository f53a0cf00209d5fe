"""The conformance checks of wallaroo.testing, run against kafka_source and kafka_sink with the
session's Tansu broker."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from conformance_codecs import key_value, pair, payload
from conformance_helpers import (
    MESSAGES,
    SINK_STEPS,
    SOURCE_STEPS,
    TIMEOUT,
    connector_env,
    unique,
)

from wallaroo.testing import (
    ConformanceReport,
    check_sink_connector,
    check_source_connector,
    python_module_command,
)


def new_topic(bootstrap: str, partitions: int) -> str:
    name = unique("conformance")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(10)
    return name


@pytest.mark.slow
def test_kafka_source_conforms(kafka_bootstrap):
    # One record per batch: Tansu reports wrong end offsets for batches of several records.
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "batch.num.messages": 1, "linger.ms": 0}
    )

    def attempt() -> ConformanceReport:
        topic = new_topic(kafka_bootstrap, partitions=2)

        def feed(start: int, count: int) -> list[bytes]:
            values = [f"record-{i}".encode() for i in range(start, start + count)]
            for value in values:
                producer.produce(topic, value, key=value)
            assert producer.flush(10) == 0
            return values

        return check_source_connector(
            python_module_command("wallaroo.connectors.kafka_source"),
            feed,
            params={
                "topics": topic,
                "bootstrap_brokers": kafka_bootstrap,
                "consumer_group": unique("conformance"),
                "session_timeout_ms": "2000",  # Tansu joins a group in about half of it
            },
            env=connector_env(),
            messages=MESSAGES,
            timeout=TIMEOUT,
            name="kafka_source",
        )

    report = attempt()
    assert report.steps == SOURCE_STEPS
    assert report.connections == 3
    assert report.messages >= 4 * MESSAGES


class TopicReader:
    """Reads every partition of a topic from its start, in a thread, collecting
    ``(key, value)`` pairs."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.got: set[tuple[str, str]] = set()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": unique("reader"),
                "enable.auto.commit": False,
            }
        )
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(100, 0.1):
                if message.error() is None:
                    self.got.add((message.key().decode(), message.value().decode()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()  # Tansu waits for open connections when it stops


@pytest.mark.slow
def test_kafka_sink_conforms(kafka_bootstrap):
    topic = new_topic(kafka_bootstrap, partitions=2)
    reader = TopicReader(kafka_bootstrap, topic, partitions=2)
    try:
        report = check_sink_connector(
            python_module_command("wallaroo.connectors.kafka_sink"),
            lambda sent: {pair(p) for p in sent} <= reader.got,
            payload=payload,
            sink_decoder=key_value,
            params={"topic": topic, "bootstrap_brokers": kafka_bootstrap},
            env=connector_env(),
            messages=MESSAGES,
            timeout=TIMEOUT,
            name="kafka_sink",
        )
    finally:
        reader.close()
    assert report.steps == SINK_STEPS
    assert report.connections == 2
    assert report.messages == 2 * MESSAGES
