"""Kafka producers for connector sink programs, over ``confluent_kafka`` (the ``kafka`` extra).

Nothing here imports ``confluent_kafka``: the program imports it (``import_client``) and passes
the module in as ``ck``, so this module costs nothing without the extra.

* :func:`as_record`: the sink decoder's ``(key, value[, partition])`` as Kafka takes it.
* :class:`KafkaOutputProducer`: produces records as they come (``acks=all``, idempotent), logs
  broker outages once, and hands a record Kafka refuses to a callback (the dead letters).
* :class:`KafkaTransactionalProducer`: a ``transactional.id``'s producer and its marker: one
  Kafka transaction per call of :meth:`~KafkaTransactionalProducer.commit`, which also commits
  a consumer-group offset (the marker) atomically with the records.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

from wallaroo.decorators import as_bytes

__all__ = [
    "KAFKA_TIMEOUT",
    "POISON_ERRORS",
    "KafkaOutputProducer",
    "KafkaRecord",
    "KafkaTransactionalProducer",
    "as_record",
    "record_bytes",
]

KafkaRecord = tuple[bytes | None, bytes | None, int]
"""``(key, value, partition)``; partition -1 lets the producer pick one from the key."""

KAFKA_TIMEOUT = 30.0
"""Seconds for one Kafka operation of a transaction (init, offsets, commit, abort)."""

POISON_ERRORS = frozenset({
    "MSG_SIZE_TOO_LARGE", "INVALID_MSG", "INVALID_MSG_SIZE", "INVALID_RECORD",
    "RECORD_LIST_TOO_LARGE", "_UNKNOWN_PARTITION", "POLICY_VIOLATION",
})  # fmt: skip
"""Delivery errors that a record will always get: it is a dead letter, so the rest can commit."""

_RECONNECT = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 2000}


def record_bytes(value: Any) -> bytes | None:
    """A key or value as Kafka takes it: None stays None (no key; a null value), anything else
    as :func:`~wallaroo.decorators.as_bytes` makes it."""
    return None if value is None else as_bytes(value)


def as_record(decoded: Any) -> KafkaRecord:
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
    return (
        record_bytes(decoded[0]),
        record_bytes(decoded[1]),
        -1 if partition is None else partition,
    )


class KafkaOutputProducer:
    """A Kafka producer (``acks=all``, idempotent: retries neither reorder nor duplicate) that
    logs broker outages once and their end; librdkafka reconnects with back-off.

    Args:
        ck: the ``confluent_kafka`` module.
        brokers: the bootstrap brokers, ``host:port[,host:port...]``.
        topic: the topic to produce to.
        reject: called with ``((key, value, partition), error)`` for a record Kafka refuses, at
            once or when it fails to deliver it (within ``message.timeout.ms``).
        log: the program's logger (librdkafka's lines go there too).

    Attributes:
        delivered: records Kafka acknowledged; ``failed`` those it refused.
        down: whether the brokers are unreachable now.
    """

    def __init__(
        self,
        ck: Any,
        brokers: str,
        topic: str,
        reject: Callable[[Any, BaseException], None],
        log: logging.Logger,
    ) -> None:
        self.ck, self.brokers, self.topic = ck, brokers, topic
        self.reject, self.log = reject, log
        self.down = False
        self.failed = 0
        self.delivered = 0
        self.producer = ck.Producer({
            "bootstrap.servers": brokers, "acks": "all", "enable.idempotence": True,
            "linger.ms": 5, **_RECONNECT, "error_cb": self._on_error, "logger": log,
        })  # fmt: skip

    def produce(self, records: Sequence[KafkaRecord]) -> None:
        """Hand records to librdkafka, waiting while its queue is full; a record it refuses
        at once (too large, say) goes to ``reject`` and the others are produced."""
        for key, value, partition in records:
            while True:
                try:
                    self.producer.produce(self.topic, value, key, partition, self._on_delivery)
                    break
                except BufferError:  # its queue is full: serve deliveries, then try again
                    self.producer.poll(0.1)
                except self.ck.KafkaException as exc:
                    self.failed += 1
                    self.reject((key, value, partition), exc)
                    break
        self.producer.poll(0)

    def flush(self, timeout: float) -> int:
        """Deliver what is queued, for up to ``timeout`` s; return how many are left."""
        return int(self.producer.flush(timeout))

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            if self.down:
                self.down = False
                self.log.info("the Kafka brokers at %s are back", self.brokers)
            return
        self.failed += 1
        self.reject((msg.key(), msg.value(), msg.partition()), self.ck.KafkaException(err))

    def _on_error(self, err: Any) -> None:
        if err.code() == self.ck.KafkaError._ALL_BROKERS_DOWN:
            if not self.down:
                self.log.warning("the Kafka brokers at %s are unreachable; reconnecting with "
                                 "back-off (output waits)", self.brokers)  # fmt: skip
            self.down = True
        elif err.code() != self.ck.KafkaError._TRANSPORT:
            self.log.warning("Kafka: %s", err.str())


class KafkaTransactionalProducer:
    """The transactional producer of one ``transactional.id`` and its marker.

    The marker is the committed offset of the consumer group named like the
    ``transactional.id``, on partition 0 of the topic: :meth:`commit` sets it in the same Kafka
    transaction as the records, so it tells exactly which transaction last reached Kafka.

    Args:
        ck: the ``confluent_kafka`` module.
        brokers: the bootstrap brokers.
        topic: the topic to produce to (and of the marker).
        transactional_id: the producer's ``transactional.id`` and the marker's group.
        log: the program's logger.

    Not thread-safe: use it from one thread (a sink's hooks run in the connector's thread).
    """

    def __init__(
        self, ck: Any, brokers: str, topic: str, transactional_id: str, log: logging.Logger
    ) -> None:
        self.ck, self.brokers, self.topic = ck, brokers, topic
        self.transactional_id, self.log = transactional_id, log
        self._producer: Any = None
        self._consumer: Any = None

    def start(self) -> Any:
        """The producer, made and initialised on first use (and after a failure), which fences
        a predecessor with the same ``transactional.id`` and settles its open transaction.

        Raises:
            KafkaException: the brokers did not answer within :data:`KAFKA_TIMEOUT`.
        """
        if self._producer is None:
            producer = self.ck.Producer({
                "bootstrap.servers": self.brokers, "transactional.id": self.transactional_id,
                "enable.idempotence": True, "acks": "all", "linger.ms": 5, **_RECONNECT,
                "logger": self.log,
            })  # fmt: skip
            try:
                producer.init_transactions(KAFKA_TIMEOUT)
            except self.ck.KafkaException:
                with contextlib.suppress(Exception):
                    producer.purge(blocking=False)
                raise
            self._producer = producer
            if self._consumer is None:
                self._consumer = self.ck.Consumer({
                    "bootstrap.servers": self.brokers, "group.id": self.transactional_id,
                    "enable.auto.commit": False, "isolation.level": "read_committed",
                    "logger": self.log,
                })  # fmt: skip
        return self._producer

    def marker(self) -> int | None:
        """The marker: the end offset committed with the last transaction; None when the group
        has no offset (nothing committed yet). Call :meth:`start` first.

        Raises:
            KafkaException: the brokers did not answer.
        """
        partition = self.ck.TopicPartition(self.topic, 0)
        (found,) = self._consumer.committed([partition], KAFKA_TIMEOUT)
        if found.error is not None:
            raise self.ck.KafkaException(found.error)
        return int(found.offset) if found.offset >= 0 else None

    def commit(
        self,
        records: Sequence[tuple[int, KafkaRecord]],
        end: int,
        refused: Callable[[int, BaseException], None],
    ) -> None:
        """Produce ``records`` (``(index, record)`` pairs) and the marker ``end`` in one Kafka
        transaction, committed.

        A record Kafka refuses for good, at once or with one of :data:`POISON_ERRORS`, goes to
        ``refused(index, error)`` and the transaction is produced again without it; up to three
        attempts.

        Raises:
            KafkaException: the transaction could not be committed. The producer is aborted or
                dropped (the next :meth:`start` makes a new one, which settles it); whether it
                reached Kafka is told by :meth:`marker`.
        """
        skip: set[int] = set()
        for attempt in range(1, 4):
            failed: list[tuple[int, Any]] = []
            try:
                self._attempt(records, end, skip, failed, refused)
                return
            except self.ck.KafkaException as exc:
                poison = [(i, e) for i, e in failed if e.name() in POISON_ERRORS]
                if not self._abort(exc) or not poison or attempt == 3:
                    raise
                for index, error in poison:
                    refused(index, self.ck.KafkaException(error))
                    skip.add(index)

    def close(self, *, keep_consumer: bool = False) -> None:
        """Drop the producer (purged, so nothing queued is sent) and, unless ``keep_consumer``,
        the marker's consumer. Never raises."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.purge(blocking=False)
        if not keep_consumer and self._consumer is not None:
            with contextlib.suppress(Exception):
                self._consumer.close()
            self._consumer = None

    def _attempt(
        self,
        records: Sequence[tuple[int, KafkaRecord]],
        end: int,
        skip: set[int],
        failed: list[tuple[int, Any]],
        refused: Callable[[int, BaseException], None],
    ) -> None:
        producer = self.start()
        producer.begin_transaction()
        for index, (key, value, partition) in records:
            if index in skip:
                continue
            report = functools.partial(_delivered, failed, index)
            while True:
                try:
                    producer.produce(self.topic, value, key, partition, report)
                    break
                except BufferError:  # its queue is full: serve deliveries, then try again
                    producer.poll(0.1)
                except self.ck.KafkaException as exc:  # refused at once: the same every time
                    refused(index, exc)
                    skip.add(index)
                    break
        marker = self.ck.TopicPartition(self.topic, 0, end)
        metadata = self._consumer.consumer_group_metadata()
        producer.send_offsets_to_transaction([marker], metadata, KAFKA_TIMEOUT)
        producer.commit_transaction(KAFKA_TIMEOUT)  # flushes; raises if a record failed

    def _abort(self, exc: Any) -> bool:
        """After a failed transaction: True if it was aborted, so that it surely did not
        commit; else the producer is dropped (a new one settles the transaction)."""
        error = exc.args[0] if exc.args else None
        if error is not None and error.txn_requires_abort():
            try:
                self._producer.abort_transaction(KAFKA_TIMEOUT)
                return True
            except self.ck.KafkaException:
                pass
        self.close(keep_consumer=True)
        return False


def _delivered(failed: list[tuple[int, Any]], index: int, err: Any, _msg: Any) -> None:
    """Delivery report of record ``index`` of a transaction: remember a failure."""
    if err is not None:
        failed.append((index, err))
