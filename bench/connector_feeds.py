"""The feeds of the connector latency benchmark (:mod:`bench.connector_latency`): for each
prebuilt source connector, how to prepare its server, the program's parameters, and how to write
one message to the external system; and the servers of a run.

Servers: UDP and files need none; PostgreSQL, Redis and RabbitMQ are the machine's
(``scripts/services start``); a Tansu broker (Kafka) and a moto server (Kinesis) are started
for the run with the test suite's helpers (``tests/services.py``) and stopped after it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import socket
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import proc

APP = "bench.apps.stamp"
KINESIS_BATCH = 0.01  # seconds of records per PutRecords call at high rates (see KinesisFeed)


@functools.cache
def _services() -> ModuleType:
    """The test suite's module that starts and finds the servers (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "wallaroo_test_services", proc.ROOT / "tests" / "services.py"
    )
    if spec is None or spec.loader is None:
        raise RuntimeError("tests/services.py is missing: run the benchmark from the checkout")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# -- the feeds ----------------------------------------------------------------------------------
@dataclass
class Context:
    """What every feed may use: the run's directory, the worker's address, the servers."""

    tmp: Path
    host: str
    app_flags: list[str]
    servers: Servers


class Feed:
    """How one feed gets a message to the worker. :meth:`program` gives the connector
    program's name and parameters (None: no program); :meth:`open` is called before the
    program starts, :meth:`write` writes one payload, :meth:`close` cleans up."""

    name = ""
    writes_batches = False  # write_batch() exists and is used at high rates

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def program(self) -> tuple[str, dict[str, str]] | None:
        return None

    def open(self) -> None:
        pass

    def started(self) -> None:
        """The program runs (its first log line is out)."""

    def write(self, payload: bytes) -> None:
        raise NotImplementedError

    def write_batch(self, payloads: list[bytes]) -> None:
        for payload in payloads:
            self.write(payload)

    def close(self) -> None:
        pass

    def env(self) -> dict[str, str]:
        return {}


class PlainFeed(Feed):
    """The baseline: this process writes with ``SourceConnector.write``."""

    name = "SourceConnector"

    def started(self) -> None:
        import wallaroo.experimental as wx

        args = ["bench", "--application-module", APP, "--connector", "feed", *self.ctx.app_flags]
        self.connector = wx.SourceConnector([*args, "--feed-instance", "plain"])
        self.connector.connect(timeout=30)

    def write(self, payload: bytes) -> None:
        self.connector.write(payload)

    def close(self) -> None:
        if hasattr(self, "connector"):
            self.connector.close(timeout=2.0)


class UdpFeed(Feed):
    name = "udp_source"

    def open(self) -> None:
        self.port = free_udp_port(self.ctx.host)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def program(self) -> tuple[str, dict[str, str]]:
        return "udp_source", {"host": self.ctx.host, "port": str(self.port)}

    def write(self, payload: bytes) -> None:
        self.sock.sendto(payload, (self.ctx.host, self.port))

    def close(self) -> None:
        self.sock.close()


class FileFeed(Feed):
    """Appends lines with one ``write`` system call each; ``file_source`` follows the file."""

    name = "file_source"

    def open(self) -> None:
        self.path = self.ctx.tmp / "feed.txt"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def program(self) -> tuple[str, dict[str, str]]:
        return "file_source", {"files": str(self.path), "follow": "true"}

    def write(self, payload: bytes) -> None:
        os.write(self.fd, payload + b"\n")

    def close(self) -> None:
        os.close(self.fd)


class KafkaFeed(Feed):
    """Produces to a one-partition topic, one record per request (``linger.ms`` 0)."""

    name = "kafka_source"
    fetch_wait_max_ms = ""  # the program's default

    def open(self) -> None:
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient, NewTopic

        self.bootstrap = self.ctx.servers.kafka()
        self.topic = f"latency-{uuid.uuid4().hex[:10]}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(self.topic, 1, 1)]).values():
            future.result(10)
        self.producer = Producer(
            {"bootstrap.servers": self.bootstrap, "linger.ms": 0, "batch.num.messages": 1}
        )

    def program(self) -> tuple[str, dict[str, str]]:
        params = {
            "topics": self.topic,
            "bootstrap_brokers": self.bootstrap,
            "consumer_group": self.topic,
            "session_timeout_ms": "2000",
        }
        if self.fetch_wait_max_ms:
            params["fetch_wait_max_ms"] = self.fetch_wait_max_ms
        return "kafka_source", params

    def write(self, payload: bytes) -> None:
        self.producer.produce(self.topic, payload)
        self.producer.poll(0)

    def close(self) -> None:
        if hasattr(self, "producer"):
            self.producer.flush(10)


class KafkaShortFetchFeed(KafkaFeed):
    """Tansu answers a waiting fetch up to about half of ``fetch_wait_max_ms`` after a record
    arrives (a floor of its own); at 10 ms what the program adds shows."""

    name = "kafka_source fetch_wait_max_ms=10"
    fetch_wait_max_ms = "10"


class KinesisFeed(Feed):
    """PutRecord on a one-shard stream of moto's Kinesis. One call takes milliseconds of
    boto3 and moto CPU, so at high rates the records of each ``KINESIS_BATCH`` seconds go in
    one PutRecords call (each record's write time is that call's)."""

    name = "kinesis_source"
    writes_batches = True
    poll_interval = ""  # the program's default

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_CONFIG_FILE": str(self.ctx.tmp / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.ctx.tmp / "no-aws-credentials"),
        }

    def open(self) -> None:
        import boto3

        self.endpoint = self.ctx.servers.moto()
        self.client = boto3.client(
            "kinesis",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        self.stream = f"latency-{uuid.uuid4().hex[:10]}"
        self.client.create_stream(StreamName=self.stream, ShardCount=1)
        self.client.get_waiter("stream_exists").wait(
            StreamName=self.stream, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100}
        )

    def program(self) -> tuple[str, dict[str, str]]:
        return "kinesis_source", {
            "stream": self.stream,
            "region": "us-east-1",
            "endpoint_url": self.endpoint,
            "state_file": str(self.ctx.tmp / f"{self.stream}.kinesis-positions.json"),
            **({"poll_interval": self.poll_interval} if self.poll_interval else {}),
        }

    def write(self, payload: bytes) -> None:
        self.client.put_record(StreamName=self.stream, Data=payload, PartitionKey="k")

    def write_batch(self, payloads: list[bytes]) -> None:
        records = [{"Data": p, "PartitionKey": "k"} for p in payloads]
        self.client.put_records(StreamName=self.stream, Records=records)

    def close(self) -> None:
        if hasattr(self, "client"):
            with contextlib.suppress(Exception):
                self.client.delete_stream(StreamName=self.stream)


class KinesisShortPollFeed(KinesisFeed):
    """The default ``poll_interval`` (0.2 s: AWS allows 5 reads a second per shard) is the
    floor of Kinesis; at 0.01 s (moto has no such limit) what the program adds shows."""

    name = "kinesis_source poll_interval=0.01"
    poll_interval = "0.01"


class RedisFeed(Feed):
    name = "redis_subscriber_source"

    def open(self) -> None:
        import redis

        self.port = self.ctx.servers.redis()
        self.channel = f"latency-{uuid.uuid4().hex[:10]}"
        self.client = redis.Redis(port=self.port)

    def program(self) -> tuple[str, dict[str, str]]:
        return "redis_subscriber_source", {"topic": self.channel, "port": str(self.port)}

    def write(self, payload: bytes) -> None:
        self.client.publish(self.channel, payload)

    def close(self) -> None:
        self.client.close()


class RabbitFeed(Feed):
    name = "rabbitmq_source"

    def open(self) -> None:
        import pika

        self.url = self.ctx.servers.rabbitmq()
        self.queue = f"latency-{uuid.uuid4().hex[:10]}"
        self.connection = pika.BlockingConnection(pika.URLParameters(self.url))
        self.channel = self.connection.channel()
        self.channel.queue_declare(self.queue, durable=True)

    def program(self) -> tuple[str, dict[str, str]]:
        return "rabbitmq_source", {"amqpurl": self.url, "queue": self.queue}

    def write(self, payload: bytes) -> None:
        self.channel.basic_publish("", self.queue, payload)

    def close(self) -> None:
        if hasattr(self, "connection"):
            with contextlib.suppress(Exception):
                self.channel.queue_delete(self.queue)
                self.connection.close()


class PostgresFeed(Feed):
    """One INSERT per message (autocommit); ``postgres_notify_source``'s trigger NOTIFYs it."""

    name = "postgres_notify_source"

    def open(self) -> None:
        import psycopg

        self.dsn = self.ctx.servers.postgres()
        self.table = f"latency_{uuid.uuid4().hex[:10]}"
        self.conn = psycopg.connect(self.dsn, autocommit=True)
        self.conn.execute(f"CREATE TABLE {self.table} (payload text)")
        self.insert = f"INSERT INTO {self.table} (payload) VALUES (%s)"

    def program(self) -> tuple[str, dict[str, str]]:
        return "postgres_notify_source", {
            "connection": self.dsn,
            "table": self.table,
            "column": "payload",
        }

    def write(self, payload: bytes) -> None:
        self.conn.execute(self.insert, (payload.decode(),))

    def close(self) -> None:
        if hasattr(self, "conn"):
            with contextlib.suppress(Exception):
                self.conn.execute(f"DROP TABLE IF EXISTS {self.table}")
            self.conn.close()


FEED_CLASSES: dict[str, type[Feed]] = {
    cls.name: cls
    for cls in (
        PlainFeed,
        UdpFeed,
        FileFeed,
        KafkaFeed,
        KafkaShortFetchFeed,
        KinesisFeed,
        KinesisShortPollFeed,
        RedisFeed,
        RabbitFeed,
        PostgresFeed,
    )
}


@dataclass
class Servers:
    """The servers of the run: the machine's found when first asked for, Tansu and moto
    started when first asked for and stopped by :meth:`stop`."""

    tmp: Path
    started: list[Any] = field(default_factory=list)
    _kafka: str = ""
    _moto: str = ""

    def kafka(self) -> str:
        if not self._kafka:
            server = _services().start_tansu(self.tmp)
            self.started.append(server)
            self._kafka = f"127.0.0.1:{server.port}"
        return self._kafka

    def moto(self) -> str:
        if not self._moto:
            server = _services().start_moto(self.tmp)
            self.started.append(server)
            self._moto = f"http://127.0.0.1:{server.port}"
        return self._moto

    def redis(self) -> int:
        services = _services()
        services.require_port(services.REDIS_PORT, "Redis")
        return int(services.REDIS_PORT)

    def rabbitmq(self) -> str:
        services = _services()
        services.require_port(5672, "RabbitMQ")
        return str(services.RABBITMQ_URL)

    def postgres(self) -> str:
        services = _services()
        services.require_port(5432, "PostgreSQL")
        return str(services.POSTGRES_DSN)

    def stop(self) -> None:
        for server in reversed(self.started):
            server.stop()


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
