"""The conformance checks of wallaroo.testing, run against kafka_source and kafka_sink with the
session's Tansu broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from conformance_helpers import (
    PairReader,
    assert_sink_conforms,
    assert_source_conforms,
    check_sink,
    check_source,
    numbered,
    sent_pairs,
    unique,
)

from wallaroo.testing import ConformanceReport


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
            values = numbered("record", start, count)
            for value in values:
                producer.produce(topic, value, key=value)
            assert producer.flush(10) == 0
            return values

        return check_source(
            "kafka_source",
            feed,
            params={
                "topics": topic,
                "bootstrap_brokers": kafka_bootstrap,
                "consumer_group": unique("conformance"),
                "session_timeout_ms": "2000",  # Tansu joins a group in about half of it
            },
        )

    assert_source_conforms(attempt())


class TopicReader(PairReader):
    """Reads every partition of a topic from its start, in a thread, collecting
    ``(key, value)`` pairs."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": unique("reader"),
                "enable.auto.commit": False,
            }
        )
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        super().__init__()

    def read(self) -> Iterator[tuple[str, str]]:
        for message in self._consumer.consume(100, 0.1):
            if message.error() is None:
                yield message.key().decode(), message.value().decode()

    def close(self) -> None:
        super().close()
        self._consumer.close()  # Tansu waits for open connections when it stops


@pytest.mark.slow
def test_kafka_sink_conforms(kafka_bootstrap):
    topic = new_topic(kafka_bootstrap, partitions=2)
    reader = TopicReader(kafka_bootstrap, topic, partitions=2)
    try:
        report = check_sink(
            "kafka_sink",
            lambda sent: sent_pairs(sent) <= reader.got,
            params={"topic": topic, "bootstrap_brokers": kafka_bootstrap},
        )
    finally:
        reader.close()
    assert_sink_conforms(report)
