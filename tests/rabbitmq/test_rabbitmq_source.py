"""rabbitmq_source against the machine's RabbitMQ, with a real worker and redis_hash_sink:
RabbitMQ queue -> worker -> Redis hash (one field per message, so redeliveries are harmless
and a missing message shows)."""

from __future__ import annotations

import signal
import threading
import time

import pika
import pytest
from connector_helpers import Proxy, assert_a_missing_library_is_one_line, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

APP = ["--application-module", "rabbitmq_pipeline"]


@pytest.fixture
def channel(rabbitmq_url):
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    yield connection.channel()
    connection.close()


@pytest.fixture
def worker_env(procs):
    procs.env["ORDERS_PORT"], procs.env["DOUBLED_PORT"] = str(free_port()), str(free_port())
    procs.env["MAX_CREDITS"], procs.env["REFILL_CREDITS"] = "500", "100"
    return procs.env


def source_args(url: str, queue: str) -> list[str]:
    return [*APP, "--connector", "orders", "--orders-amqpurl", url, "--orders-queue", queue]


def start_sink_and_worker(procs, launch, redis_port, key):
    sink = launch("redis_hash_sink", "python -m", *APP, "--connector", "doubled",
                  "--doubled-key", key, "--doubled-port", str(redis_port))  # fmt: skip
    procs.machida("rabbitmq_pipeline")
    return sink


def publish(channel, queue: str, first: int, count: int) -> None:
    for n in range(first, first + count):
        channel.basic_publish("", queue, str(n).encode())


def publish_paced(url: str, queue: str, count: int, batch: int = 500) -> None:
    """Publish 0..count-1 in batches of ``batch`` a twentieth of a second apart (on a
    connection of its own: pika's are not shared between threads)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        own = connection.channel()
        for first in range(0, count, batch):
            publish(own, queue, first, min(batch, count - first))
            time.sleep(0.05)
    finally:
        connection.close()


def expected(count: int) -> dict[str, str]:
    return {f"m{n}": str(2 * n) for n in range(count)}


def settled(channel, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of the queue; unacknowledged messages of a closed
    connection are ready again."""
    method = channel.queue_declare(queue, passive=True).method
    return method.message_count, method.consumer_count


def test_10000_messages_none_missing_with_the_source_killed_and_restarted_midway(
    procs, launch, wait_until, worker_env, client, channel, rabbitmq_url, redis_port, uid
):
    queue, key = f"orders-{uid}", f"doubled-{uid}"
    sink = start_sink_and_worker(procs, launch, redis_port, key)
    source = launch("rabbitmq_source", "executable", *source_args(rabbitmq_url, queue))
    source.wait_for(f"declared the missing queue '{queue}' (durable)")
    source.wait_for("consuming queue")
    sink.wait_for("worker 'worker' connected")
    channel.queue_declare(queue, durable=True)  # the same properties, or the broker refuses
    # Published over about 2 s, so that the kill lands while messages are still coming.
    publisher = threading.Thread(target=publish_paced, args=(rabbitmq_url, queue, 10_000))
    publisher.start()
    wait_until(lambda: client.hlen(key) >= 3000, "3000 messages through")
    source.popen.kill()  # SIGKILL: deliveries it held go back to the queue
    source.popen.wait(10)
    assert client.hlen(key) < 10_000, "the kill came too late to test anything"
    publisher.join(30)
    again = launch("rabbitmq_source", "wallaroo connector", *source_args(rabbitmq_url, queue))
    resumed = again.wait_for("connected to the worker")
    assert int(resumed.rsplit(" ", 1)[1]) >= 3000  # ids continue from NOTIFY_ACK + 1
    wait_until(lambda: client.hlen(key) >= 10_000, "all 10000 messages", timeout=60)
    assert again.stop(signal.SIGTERM) == 0, again.output
    assert client.hgetall(key) == expected(10_000)
    assert settled(channel, queue) == (0, 0)  # every delivery was acknowledged to the broker
    assert "ERROR" not in again.output + sink.output
    channel.queue_delete(queue)
    client.delete(key)


def test_the_source_reconnects_when_the_broker_connection_is_lost(
    procs, launch, wait_until, worker_env, client, channel, rabbitmq_url, redis_port, uid
):
    """The source reaches RabbitMQ through a proxy whose connections are cut midway: it logs
    the loss, reconnects, and the deliveries the broker gives again make up for the held ones
    it can no longer acknowledge."""
    queue, key = f"orders-{uid}", f"doubled-{uid}"
    channel.queue_declare(queue, durable=True)
    publish(channel, queue, 0, 3000)
    proxy = Proxy(5672)
    try:
        url = rabbitmq_url.replace("127.0.0.1:5672", f"127.0.0.1:{proxy.port}")
        start_sink_and_worker(procs, launch, redis_port, key)
        source = launch("rabbitmq_source", "python -m", *source_args(url, queue))
        wait_until(lambda: client.hlen(key) >= 500, "500 messages through")
        proxy.cut()
        source.wait_for("lost RabbitMQ")
        source.wait_for(f"consuming queue '{queue}' at RabbitMQ 127.0.0.1:{proxy.port}")
        source.wait_for("(prefetch 10000) again")
        # The broker requeued the held deliveries at the head of the queue, so once a tail
        # published now has arrived, the redeliveries went through the worker before it and
        # the stop below only waits for their acknowledgement. (Stopping before they were sent
        # would rightly leave them in the queue.)
        publish(channel, queue, 3000, 500)
        wait_until(lambda: client.hlen(key) >= 3500, "all 3500 messages", timeout=60)
        assert source.stop() == 0, source.output
    finally:
        proxy.close()
    assert client.hgetall(key) == expected(3500)
    assert settled(channel, queue) == (0, 0), source.output
    channel.queue_delete(queue)
    client.delete(key)


def test_first_log_line_and_a_clean_stop_while_waiting_for_the_worker(
    procs, launch, worker_env, rabbitmq_url, uid
):
    source = launch("rabbitmq_source", "copied file", *source_args(rabbitmq_url, f"q-{uid}"))
    first = source.wait_for("rabbitmq_source for connector 'orders'")
    assert source.lines[0] == first
    assert f"queue 'q-{uid}' at RabbitMQ 127.0.0.1:5672 (vhost '/')" in first
    assert f"worker at 127.0.0.1:{worker_env['ORDERS_PORT']}" in first
    source.wait_for("waiting for the worker")
    assert source.stop(signal.SIGINT) == 0, source.output
    assert "stopping (SIGINT)" in source.output


def test_a_worker_that_refuses_the_cookie_stops_the_source_with_exit_code_1(
    procs, launch, worker_env, rabbitmq_url, uid
):
    procs.env["COOKIE"] = "the worker's"
    procs.machida("rabbitmq_pipeline")
    procs.env["COOKIE"] = "another one"
    source = launch("rabbitmq_source", "executable", *source_args(rabbitmq_url, f"q-{uid}"))
    assert source.popen.wait(20) == 1, source.output
    source.kill()
    assert "refused the connector" in source.output


def test_a_missing_client_library_gives_one_line_naming_the_extra(procs):
    assert_a_missing_library_is_one_line(
        procs, "pika", "rabbitmq", "rabbitmq_source", *APP, "--connector", "orders"
    )
