"""The worker's built-in Kafka sink: a confluent-kafka producer behind the ``SinkPort`` interface.

Records are handed to librdkafka's queue (its threads talk to the brokers, and reconnect with
back-off when they go away); delivery reports are served from the event loop with
``poll(0)``, so the loop never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from wallaroo.decorators import to_bytes
from wallaroo.engine.deadletter import DeadLetterLog
from wallaroo.errors import UserCodeError
from wallaroo.kafka import CustomKafkaSinkCLIParser
from wallaroo.worker.egress import SinkOutputStatistics
from wallaroo.worker.flow import Gate, WaterMarks
from wallaroo.worker.kafka import IDLE, BrokerWatch, client_config, import_confluent_kafka

__all__ = ["KafkaSinkOutput"]


class KafkaSinkOutput:
    """Produces a sink's ``(value, key, partition)`` outputs to one topic (a ``SinkPort``).

    Records wait in librdkafka's queue until the brokers acknowledge them (``acks=all``), and
    in a local list while that queue is full. While more than 8 MiB wait, the worker's gate is
    closed, so memory stays bounded. An output that is not a ``(value, key, partition)`` tuple
    of the right types, too large, or that the brokers finally refuse, is a dead letter.

    Raises:
        ConfigurationError: confluent-kafka is not installed.
    """

    kind = "Kafka sink"

    def __init__(
        self,
        name: str,
        config: CustomKafkaSinkCLIParser,
        gate: Gate,
        log: logging.Logger,
        dead_letters: DeadLetterLog,
    ) -> None:
        ck = import_confluent_kafka(f"Kafka sink '{name}'")
        self.name, self.config, self._log = name, config, log
        self._water = WaterMarks(gate, name)
        self._dead = dead_letters
        self._watch = BrokerWatch(ck, f"Kafka sink '{name}'", config.bootstrap_servers, log)
        conf = client_config(config.bootstrap_servers, config.log_level, log)
        conf |= {
            "acks": "all",
            "enable.idempotence": True,  # retries neither reorder nor duplicate records
            "linger.ms": config.max_produce_buffer_ms,
            "message.max.bytes": max(config.max_message_size, 1000),
            "error_cb": self._watch.error,
        }
        self._ck = ck
        self._producer = ck.Producer(conf)
        self._pending: list[tuple[bytes | None, bytes | None, int]] = []
        self._pending_bytes = 0
        self._in_flight_bytes = 0
        self._stopping = False
        self._delivered_bytes = 0

    # -- SinkPort -----------------------------------------------------------------------------
    def write(self, payloads: list[Any]) -> None:
        """Queue the encoder's outputs for the producer."""
        for item in payloads:
            record = self._check(item)
            if record is not None:
                self._pending.append(record)
                self._pending_bytes += len(record[0] or b"") + len(record[1] or b"")
        self._pump()

    def _check(self, item: Any) -> tuple[bytes | None, bytes | None, int] | None:
        try:
            if not isinstance(item, tuple) or len(item) != 3:
                raise UserCodeError(
                    f"the encoder of Kafka sink '{self.name}' must return (value, key, "
                    f"partition), got {type(item).__name__}"
                )
            value = to_bytes(item[0], "a Kafka value", UserCodeError)
            key = to_bytes(item[1], "a Kafka key", UserCodeError)
            part = item[2]
            if part is not None and (isinstance(part, bool) or not isinstance(part, int)):
                raise UserCodeError(f"a Kafka partition must be an int or None, got {part!r}")
            if len(value or b"") + len(key or b"") > self.config.max_message_size:
                raise UserCodeError(
                    f"a record of {len(value or b'')} bytes is larger than "
                    f"--kafka_sink_max_message_size ({self.config.max_message_size})"
                )
        except UserCodeError as exc:
            self._dead_letter(exc, item)
            return None
        return value, key, -1 if part is None else part

    def _dead_letter(self, exc: BaseException, item: Any) -> None:
        self._dead.record(
            pipeline=f"sink {self.name}", stage=f"Kafka sink {self.name}", exc=exc, value=item
        )

    def _pump(self) -> None:
        """Hand pending records to librdkafka until its queue is full."""
        sent = 0
        produce, topic = self._producer.produce, self.config.topic
        for value, key, partition in self._pending:
            size = len(value or b"") + len(key or b"")
            try:
                produce(topic, value, key, partition, on_delivery=self._delivered)
                self._in_flight_bytes += size
            except BufferError:
                break
            except self._ck.KafkaException as exc:  # e.g. a partition the topic lacks
                self._dead_letter(exc, (value, key, partition))
            sent += 1
            self._pending_bytes -= size
        if sent:
            del self._pending[:sent]
        self._update_water()

    def _delivered(self, err: Any, msg: Any) -> None:
        size = len(msg.value() or b"") + len(msg.key() or b"")
        self._in_flight_bytes -= size
        if err is None:
            self._delivered_bytes += size
            self._watch.alive()
            return
        self._log.error("Kafka sink '%s' could not deliver a record: %s", self.name, err.str())
        self._dead_letter(self._ck.KafkaException(err), (msg.value(), msg.key(), msg.partition()))

    def _update_water(self) -> None:
        self._water.update(self.buffered_bytes)

    @property
    def buffered_bytes(self) -> int:
        """Bytes not yet acknowledged by the brokers."""
        return self._pending_bytes + self._in_flight_bytes

    # -- life ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve delivery reports and the local queue until :meth:`stop`."""
        self._log.info(
            "Kafka sink '%s' producing to topic '%s' at %s",
            self.name,
            self.config.topic,
            self.config.bootstrap_servers,
        )
        while not self._stopping:
            self._producer.poll(0)
            self._pump()
            await asyncio.sleep(IDLE)

    async def drain(self, timeout: float) -> bool:
        """Wait until every record is acknowledged (or ``timeout``); True if they all are."""
        deadline = time.monotonic() + timeout
        while self._pending or len(self._producer):
            self._producer.poll(0)
            self._pump()
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.002)
        return True

    def stop(self) -> None:
        """Stop serving; records not yet acknowledged are given up (reported by the worker)."""
        self._stopping = True
        self._producer.flush(0)

    def statistics(self) -> SinkOutputStatistics:
        """A snapshot of the producer's state (see :class:`SinkOutputStatistics`)."""
        return SinkOutputStatistics(
            self.name,
            self.config.bootstrap_servers,
            not self._watch.down,
            1,
            self.buffered_bytes,
            self._delivered_bytes,
        )
