"""The conformance checks of wallaroo.testing, run against redis_subscriber_source and
redis_hash_sink with the machine's Redis."""

from __future__ import annotations

import pytest
from conformance_helpers import (
    MESSAGES,
    assert_sink_conforms,
    assert_source_conforms,
    check_sink,
    check_source,
    numbered,
    sent_pairs,
    unique,
    wait_for,
)

import redis
from wallaroo.testing import ConformanceReport


@pytest.fixture
def client(redis_port):
    connection = redis.Redis(port=redis_port)
    yield connection
    connection.close()


@pytest.mark.slow
def test_redis_subscriber_source_conforms(client, redis_port):
    def attempt() -> ConformanceReport:
        channel = unique("conformance")

        def feed(start: int, count: int) -> list[bytes]:
            # Pub/sub keeps nothing for a subscriber that is not there yet: the source
            # subscribes only after it connected to the worker. It stays subscribed while it
            # reconnects to the worker, so later calls find it at once.
            wait_for(lambda: client.pubsub_numsub(channel)[0][1] >= 1, f"a subscriber on {channel}")
            values = numbered("message", start, count)
            pipe = client.pipeline(transaction=False)
            for value in values:
                pipe.publish(channel, value)
            assert sum(pipe.execute()) == count, "a message reached no subscriber"
            return values

        return check_source(
            "redis_subscriber_source", feed, params={"topic": channel, "port": str(redis_port)}
        )

    assert_source_conforms(attempt())


@pytest.mark.slow
def test_redis_hash_sink_conforms(client, redis_port):
    key = unique("conformance")

    def delivered(sent) -> bool:
        held = {(f.decode(), v.decode()) for f, v in client.hgetall(key).items()}
        return sent_pairs(sent) <= held

    try:
        report = check_sink(
            "redis_hash_sink", delivered, params={"key": key, "port": str(redis_port)}
        )
        assert client.hlen(key) == 2 * MESSAGES
    finally:
        client.delete(key)
    assert_sink_conforms(report)
