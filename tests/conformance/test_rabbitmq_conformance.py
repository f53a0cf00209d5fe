"""The conformance check of wallaroo.testing, run against rabbitmq_source with the machine's
RabbitMQ."""

from __future__ import annotations

import pika
import pytest
from conformance_helpers import assert_source_conforms, check_source, numbered, unique

from wallaroo.testing import ConformanceReport


@pytest.fixture
def channel(rabbitmq_url):
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    yield connection.channel()
    connection.close()


@pytest.mark.slow
def test_rabbitmq_source_conforms(channel, rabbitmq_url):
    def attempt() -> ConformanceReport:
        queue = unique("conformance")
        # Declared here, as the source would, so that what the first feed publishes is kept
        # even if the source has not declared it yet (it connects to the worker first).
        channel.queue_declare(queue, durable=True)

        def feed(start: int, count: int) -> list[bytes]:
            values = numbered("message", start, count)
            for value in values:
                channel.basic_publish("", queue, value)
            return values

        try:
            return check_source(
                "rabbitmq_source", feed, params={"amqpurl": rabbitmq_url, "queue": queue}
            )
        finally:
            channel.queue_delete(queue)

    assert_source_conforms(attempt())
