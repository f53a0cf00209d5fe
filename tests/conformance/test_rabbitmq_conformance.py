"""The conformance check of wallaroo.testing, run against rabbitmq_source with the machine's
RabbitMQ."""

from __future__ import annotations

import pika
import pytest
from conformance_helpers import (
    MESSAGES,
    SOURCE_STEPS,
    TIMEOUT,
    connector_env,
    unique,
)

from wallaroo.testing import ConformanceReport, check_source_connector, python_module_command


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
            values = [f"message-{i}".encode() for i in range(start, start + count)]
            for value in values:
                channel.basic_publish("", queue, value)
            return values

        try:
            return check_source_connector(
                python_module_command("wallaroo.connectors.rabbitmq_source"),
                feed,
                params={"amqpurl": rabbitmq_url, "queue": queue},
                env=connector_env(),
                messages=MESSAGES,
                timeout=TIMEOUT,
                name="rabbitmq_source",
            )
        finally:
            channel.queue_delete(queue)

    report = attempt()
    assert report.steps == SOURCE_STEPS
    assert report.connections == 3
    assert report.messages >= 4 * MESSAGES
