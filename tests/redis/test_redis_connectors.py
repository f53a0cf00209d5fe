"""redis_subscriber_source and redis_hash_sink against the machine's Redis, with a real worker:
Redis pub/sub -> worker -> Redis hash."""

from __future__ import annotations

import base64
import json
import signal

import pytest
from connector_helpers import REPO, Proc, assert_a_missing_library_is_one_line, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

APP = ["--application-module", "redis_pipeline"]


@pytest.fixture
def worker_env(procs):
    procs.env["EVENTS_PORT"], procs.env["TABLE_PORT"] = str(free_port()), str(free_port())
    return procs.env


def source_args(redis_port, subscription: str, name: str) -> list[str]:
    return [*APP, "--connector", "events", f"--events-{subscription}", name,
            "--events-port", str(redis_port)]  # fmt: skip


def sink_args(redis_port, key: str) -> list[str]:
    return [*APP, "--connector", "table", "--table-key", key, "--table-port", str(redis_port)]


def publish(client, channel: str, first: int, count: int) -> int:
    """Publish ``f<i>=v<i>`` for i in [first, first + count); return how many subscribers got
    each message (summed)."""
    pipe = client.pipeline(transaction=False)
    for i in range(first, first + count):
        pipe.publish(channel, f"f{i}=v{i}")
    return sum(pipe.execute())


def subscribers(client, channel: str) -> int:
    return int(client.pubsub_numsub(channel)[0][1])


def expected(first: int, count: int) -> dict[str, str]:
    return {f"f{i}": f"V{i}" for i in range(first, first + count)}


def start_pipeline(procs, launch, redis_port, channel, key, way="executable", pattern=None):
    """Start the sink, the worker and the source; return them once both connectors are
    connected and the source is subscribed."""
    sink = launch("redis_hash_sink", way, *sink_args(redis_port, key))
    worker = procs.machida("redis_pipeline")
    subscription = ("pattern", pattern) if pattern else ("topic", channel)
    source = launch("redis_subscriber_source", way, *source_args(redis_port, *subscription))
    source.wait_for("subscribed to")
    sink.wait_for("worker 'worker' connected")
    return source, worker, sink


def test_every_published_message_reaches_the_hash_transformed(
    procs, launch, wait_until, worker_env, client, redis_port, uid
):
    channel, key = f"events-{uid}", f"table-{uid}"
    source, worker, sink = start_pipeline(procs, launch, redis_port, channel, key)
    assert publish(client, channel, 0, 5000) == 5000
    wait_until(lambda: client.hlen(key) >= 5000, "5000 fields in the hash")
    assert client.hgetall(key) == expected(0, 5000)
    assert source.stop() == 0 and sink.stop() == 0
    assert "ERROR" not in source.output + sink.output + worker.output
    client.delete(key)


def test_an_output_the_sink_decoder_rejects_is_a_dead_letter_and_the_rest_is_written(
    procs, launch, wait_until, worker_env, client, redis_port, uid
):
    channel, key = f"events-{uid}", f"table-{uid}"
    source, _, sink = start_pipeline(procs, launch, redis_port, channel, key)
    pipe = client.pipeline(transaction=False)
    for i in range(10):
        pipe.publish(channel, "f5=v\tx" if i == 5 else f"f{i}=v{i}")
    assert sum(pipe.execute()) == 10
    wait_until(lambda: client.hlen(key) >= 9, "the 9 good fields")
    assert source.stop() == 0 and sink.stop() == 0, sink.output
    assert client.hgetall(key) == {f: v for f, v in expected(0, 10).items() if f != "f5"}
    path = procs.cwd / "wallaroo-deadletter" / "table-sink.jsonl"
    (letter,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert base64.b64decode(letter["payload"]) == b"f5\tV\tX"
    assert (letter["worker"], letter["stage"], letter["error_type"]) == (
        "worker", "sink decoder decode_entry", "ValueError",
    )  # fmt: skip
    assert f"kept in {path}" in sink.output
    client.delete(key)


def test_first_log_lines_name_the_connector_and_the_real_addresses(
    procs, launch, worker_env, redis_port, uid
):
    sink = launch("redis_hash_sink", "executable", *sink_args(redis_port, f"t-{uid}"))
    source = launch("redis_subscriber_source", "executable",
                    *source_args(redis_port, "pattern", f"e-{uid}-*"))  # fmt: skip
    first = source.wait_for("redis_subscriber_source for connector 'events'")
    assert source.lines[0] == first
    assert f"pattern 'e-{uid}-*' at Redis 127.0.0.1:{redis_port}" in first
    assert f"worker at 127.0.0.1:{worker_env['EVENTS_PORT']}" in first
    first = sink.wait_for("redis_hash_sink for connector 'table'")
    assert sink.lines[0] == first
    assert f"listening for the worker on 127.0.0.1:{worker_env['TABLE_PORT']}" in first
    assert f"hash 't-{uid}' at Redis 127.0.0.1:{redis_port}" in first
    source.wait_for("waiting for the worker")
    for proc, sig in ((source, signal.SIGTERM), (sink, signal.SIGINT)):
        assert proc.stop(sig) == 0, proc.output
        assert f"stopping ({sig.name})" in proc.output


def test_each_way_of_running_the_programs_with_a_pattern_subscription(
    procs, launch, wait_until, worker_env, client, redis_port, uid
):
    """One worker; each way starts a fresh source (subscribed to a pattern) and sink, carries
    20 messages and stops them with a signal (exit code 0)."""
    key = f"table-{uid}"
    worker = procs.machida("redis_pipeline")
    for round_, way in enumerate(["executable", "python -m", "wallaroo connector", "copied file"]):
        sink = launch("redis_hash_sink", way, *sink_args(redis_port, key))
        source = launch("redis_subscriber_source", way,
                        *source_args(redis_port, "pattern", f"events-{uid}-*"))  # fmt: skip
        source.wait_for("subscribed to pattern")
        sink.wait_for("worker 'worker' connected")
        assert publish(client, f"events-{uid}-{way.replace(' ', '-')}", 20 * round_, 20) == 20
        wait_until(lambda n=20 * round_ + 20: client.hlen(key) >= n, f"{way}: 20 more fields")
        sig = signal.SIGINT if round_ % 2 else signal.SIGTERM
        assert source.stop(sig) == 0, source.output
        assert sink.stop(sig) == 0, sink.output
    assert client.hgetall(key) == expected(0, 80)
    assert worker.popen.poll() is None
    client.delete(key)


def test_at_most_once_what_is_published_while_the_source_is_away_is_lost(
    procs, launch, wait_until, worker_env, client, redis_port, uid
):
    """The guarantee docs/connectors/redis.md states: messages published while the source is
    not running are lost, what comes before and after arrives."""
    channel, key = f"events-{uid}", f"table-{uid}"
    source, _, _ = start_pipeline(procs, launch, redis_port, channel, key)
    assert publish(client, channel, 0, 100) == 100
    wait_until(lambda: client.hlen(key) >= 100, "the first 100")
    assert source.stop() == 0
    wait_until(lambda: not subscribers(client, channel), "Redis to drop the subscription")
    assert publish(client, channel, 100, 100) == 0  # nobody subscribed: Redis drops them
    again = launch("redis_subscriber_source", "executable",
                   *source_args(redis_port, "topic", channel))  # fmt: skip
    again.wait_for("subscribed to")
    assert publish(client, channel, 200, 100) == 100
    wait_until(lambda: client.hlen(key) >= 200, "the last 100")
    assert client.hgetall(key) == {**expected(0, 100), **expected(200, 100)}
    client.delete(key)


def test_both_programs_reconnect_when_redis_goes_away_and_comes_back(
    procs, launch, wait_until, worker_env, client, redis_port, relays, uid
):
    """Each program reaches Redis through its own relay, which goes down for a while: each
    logs the loss and the reconnection. What is published while the source is away is lost (at
    most once); what the worker sends while the sink cannot reach Redis is held and written
    once Redis is back."""
    channel, key = f"events-{uid}", f"table-{uid}"
    to_source, to_sink = relays(redis_port), relays(redis_port)
    sink = launch("redis_hash_sink", "executable", *sink_args(to_sink.port, key))
    procs.machida("redis_pipeline")
    source = launch("redis_subscriber_source", "executable",
                    *source_args(to_source.port, "topic", channel))  # fmt: skip
    source.wait_for("subscribed to")
    assert publish(client, channel, 0, 50) == 50
    wait_until(lambda: client.hlen(key) >= 50, "the first 50")
    to_source.down()
    source.wait_for("lost Redis")
    wait_until(lambda: not subscribers(client, channel), "Redis to drop the subscription")
    assert publish(client, channel, 50, 50) == 0  # the source is away: lost
    to_source.up()
    source.wait_for("again; what was published meanwhile is lost")
    to_sink.down()
    assert publish(client, channel, 100, 50) == 50
    sink.wait_for("lost Redis")
    assert client.hlen(key) == 50
    to_sink.up()
    sink.wait_for("is back; writing again")
    wait_until(lambda: client.hlen(key) >= 100, "the held 50")
    assert client.hgetall(key) == {**expected(0, 50), **expected(100, 50)}
    client.delete(key)


@pytest.mark.parametrize("program", ["redis_subscriber_source", "redis_hash_sink"])
def test_a_missing_client_library_gives_one_line_naming_the_extra(procs, program):
    assert_a_missing_library_is_one_line(procs, "redis", "redis", program, *APP, "--connector", "x")


@pytest.mark.parametrize("given", [[], ["--events-topic", "a", "--events-pattern", "b*"]])
def test_the_source_needs_exactly_one_of_topic_and_pattern(procs, worker_env, given):
    proc: Proc = procs.start(
        "redis_subscriber_source", REPO / "connectors" / "redis_subscriber_source",
        *APP, "--connector", "events", *given,
    )  # fmt: skip
    assert proc.popen.wait(20) == 2
    proc.kill()
    assert "give exactly one of --events-topic and --events-pattern" in proc.output
