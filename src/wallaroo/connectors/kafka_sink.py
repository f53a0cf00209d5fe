#!/usr/bin/env python3
"""kafka_sink: receive a connector sink's output from Wallaroo and produce it to a Kafka topic.

Usage::

    kafka_sink --application-module app --connector results --results-topic totals \\
        --results-bootstrap_brokers 127.0.0.1:9092

Parameters (prefixed with the connector's name):
    topic               (required) the topic to produce to.
    bootstrap_brokers   Kafka brokers, ``host:port[,host:port...]`` (127.0.0.1:9092).

It listens for the worker at the address the application gives the connector and decodes each
output with the application's sink decoder, which returns ``(key, value)`` or ``(key, value,
partition)``. Key and value are sent as they are when bytes, as UTF-8 when ``str``, as
``str(x)`` in UTF-8 otherwise; None stays None (no key; a null value). Without a partition the
producer picks one from the key. Records are acknowledged by all in-sync replicas
(``acks=all``) and delivered in order per partition; the producer is flushed whenever the worker
pauses and on exit.

Delivery: a record the brokers do not take within librdkafka's ``message.timeout.ms`` (5
minutes, retrying meanwhile) is logged as lost, and so are records still held when the program
is killed: the connector votes commit without making anything durable (at-least-once across a
worker restart, at-most-once across a restart of this program).

Logs go to stderr; the first line names the connector, the worker's address and the brokers.
SIGINT and SIGTERM stop it cleanly (exit code 0) after flushing for up to 5 s. librdkafka
reconnects to the brokers with back-off; while they are away, output waits, the buffers fill
and the worker is slowed down through TCP.

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any, NoReturn

import wallaroo
import wallaroo.experimental

log = logging.getLogger("kafka_sink")

EXTRA = "pip install 'wallaroo-py[kafka]'"


class Stop(BaseException):
    """Raised in the main thread by SIGINT or SIGTERM (a BaseException, so that code catching
    ``Exception`` does not swallow it)."""


def _request_stop(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def as_bytes(value: Any) -> bytes | None:
    """A key or value as Kafka takes it."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return (value if isinstance(value, str) else str(value)).encode("utf-8")


def as_record(decoded: Any) -> tuple[bytes | None, bytes | None, int]:
    """``(key, value, partition)`` from the decoder's ``(key, value[, partition])``.

    Raises:
        ValueError: the decoder returned something else.
    """
    if not isinstance(decoded, tuple | list) or len(decoded) not in (2, 3):
        raise ValueError(
            f"the sink decoder must return (key, value) or (key, value, partition), got "
            f"{type(decoded).__name__}"
        )
    partition = decoded[2] if len(decoded) == 3 else None
    if partition is not None and (isinstance(partition, bool) or not isinstance(partition, int)):
        raise ValueError(f"a partition must be an int or None, got {partition!r}")
    return as_bytes(decoded[0]), as_bytes(decoded[1]), -1 if partition is None else partition


class Producer:
    """A Kafka producer that logs broker outages and failed deliveries."""

    def __init__(self, ck: Any, brokers: str, topic: str) -> None:
        self.ck, self.brokers, self.topic = ck, brokers, topic
        self.down = False
        self.failed = 0
        self.delivered = 0
        self.producer = ck.Producer({
            "bootstrap.servers": brokers,
            "acks": "all",
            "enable.idempotence": True,  # retries neither reorder nor duplicate records
            "linger.ms": 5,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 2000,
            "error_cb": self.on_error,
            "logger": log,
        })  # fmt: skip

    def produce(self, records: list[tuple[bytes | None, bytes | None, int]]) -> None:
        """Hand records to librdkafka, waiting while its queue is full.

        Raises:
            KafkaException: a record librdkafka refuses at once (e.g. too large); the records
                before it are produced.
        """
        for key, value, partition in records:
            while True:
                try:
                    self.producer.produce(self.topic, value, key, partition, self.on_delivery)
                    break
                except BufferError:  # its queue is full: serve deliveries, then try again
                    self.producer.poll(0.1)
        self.producer.poll(0)

    def on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            if self.down:
                self.down = False
                log.info("the Kafka brokers at %s are back", self.brokers)
            return
        self.failed += 1
        if self.failed == 1 or self.failed % 1000 == 0:
            log.error("a record to %s/%s was lost: %s (%d lost so far)",
                      self.topic, msg.partition(), err.str(), self.failed)  # fmt: skip

    def on_error(self, err: Any) -> None:
        if err.code() == self.ck.KafkaError._ALL_BROKERS_DOWN:
            if not self.down:
                log.warning("the Kafka brokers at %s are unreachable; reconnecting with back-off "
                            "(output waits)", self.brokers)  # fmt: skip
            self.down = True
        elif err.code() != self.ck.KafkaError._TRANSPORT:
            log.warning("Kafka: %s", err.str())

    def flush(self, timeout: float) -> int:
        """Deliver what is queued, for up to ``timeout`` s; return how many are left."""
        return int(self.producer.flush(timeout))


def serve(connector: wallaroo.experimental.SinkConnector, producer: Producer) -> NoReturn:
    """Produce every value the connector reads, until interrupted."""
    while True:
        try:
            values = connector.read_many(1024, timeout=0.1)
        except TimeoutError:  # the worker pauses: deliver what is queued
            producer.flush(0.5)
            continue
        except wallaroo.experimental.ConnectorError:
            raise
        except wallaroo.WallarooError as exc:  # the decoder rejected one output
            log.warning("%s; dropped", exc)
            continue
        records = []
        for value in values:
            try:
                records.append(as_record(value))
            except ValueError as exc:
                log.warning("%s; dropped", exc)
        try:
            producer.produce(records)
        except producer.ck.KafkaException as exc:
            log.warning("Kafka refused a record (%s); dropped", exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    try:
        import confluent_kafka as ck
    except ImportError:
        log.error("kafka_sink needs confluent-kafka, which is not installed: %s", EXTRA)
        return 2
    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    args = list(sys.argv if argv is None else argv)
    connector: wallaroo.experimental.SinkConnector | None = None
    producer: Producer | None = None
    try:
        connector = wallaroo.experimental.SinkConnector(
            args, required_params=["topic"], optional_params=["bootstrap_brokers"]
        )
        brokers = connector.params.bootstrap_brokers or "127.0.0.1:9092"
        producer = Producer(ck, brokers, connector.params.topic)
        connector.listen()
        host, port = connector.address
        log.info("kafka_sink for connector '%s': listening for the worker on %s:%d, producing "
                 "to topic '%s' at Kafka %s", connector.config.name, host, port,
                 connector.params.topic, brokers)  # fmt: skip
        serve(connector, producer)
    except (Stop, KeyboardInterrupt) as stop:
        log.info("stopping (%s)", stop or "SIGINT")
        return 0
    except (wallaroo.WallarooError, ck.KafkaException, OSError, ValueError) as exc:
        log.error("%s", exc)
        failure = (OSError, ck.KafkaException, wallaroo.experimental.ConnectorError)
        return 1 if isinstance(exc, failure) else 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if connector is not None:
            connector.close()
        if producer is not None:
            left = producer.flush(5.0)
            if left:
                log.warning("%d records were not delivered to Kafka before exit", left)


if __name__ == "__main__":
    sys.exit(main())
