#!/usr/bin/env python3
"""kafka_sink: receive a connector sink's output from Wallaroo and produce it to a Kafka topic.

Usage::

    kafka_sink --application-module app --connector results --results-topic totals \\
        --results-bootstrap_brokers 127.0.0.1:9092

    # exactly-once, with a worker that runs with resilience:
    kafka_sink --application-module app --connector results --results-topic totals \\
        --results-transactional true --results-spool_dir /var/lib/app/kafka-spool

Parameters (prefixed with the connector's name):
    topic               (required) the topic to produce to.
    bootstrap_brokers   Kafka brokers, ``host:port[,host:port...]`` (127.0.0.1:9092).
    transactional       ``true`` or ``false`` (default): take part in the worker's two-phase
                        commit and write each checkpoint's output in one Kafka transaction.
    spool_dir           (required when transactional) an existing directory for the spool
                        files (below); it must survive a crash of this program.
    transactional_id    the prefix of the Kafka ``transactional.id``, default
                        ``wallaroo-kafka_sink.<topic>.<connector>``; worker W's is
                        ``<prefix>.W``.
    deadletter_path     where outputs the sink decoder rejects are kept (default
                        ``./wallaroo-deadletter/<connector>-sink.jsonl``).
    crash_point         (tests only) ``before-vote:<n>``, ``after-vote:<n>`` or
                        ``after-commit:<n>``: kill this process with SIGKILL at that point of
                        its n-th transaction with output.

It listens for the worker at the address the application gives the connector and decodes each
output with the application's sink decoder, which returns ``(key, value)`` or ``(key, value,
partition)``. Key and value are sent as they are when bytes, as UTF-8 when ``str``, as
``str(x)`` in UTF-8 otherwise; None stays None (no key; a null value). Without a partition the
producer picks one from the key. Records are acknowledged by all in-sync replicas
(``acks=all``) and delivered in order per partition.

By default the program produces each output as it arrives (flushing whenever the worker pauses
and on exit) and votes commit on every checkpoint without making anything durable:
at-least-once across a worker restart, at-most-once for what it holds when it is killed. A
record the brokers do not take within librdkafka's ``message.timeout.ms`` is logged as lost.

Transactional mode (``transactional true``) is a ``TransactionalSink``: exactly-once for a
``read_committed`` consumer across crashes of the worker and of this program, as long as the
spool directory survives. Per worker W, in the spool directory:

* ``<connector>.W.open``: the output of the open transaction, appended as it arrives (not
  durable, discarded whenever the worker reconnects);
* ``<connector>.W.prepared``: at PHASE1, before voting commit, the open file gets a trailer
  (transaction id, offsets, count, CRC-32), is fsynced and renamed to this name (the directory
  is fsynced too). It is the promise behind the vote.

PHASE2 commit produces the prepared payloads in one Kafka transaction (producer
``transactional.id`` ``<prefix>.W``, idempotent) which also commits the consumer-group offset
of group ``<prefix>.W`` on partition 0 of the topic to the transaction's end offset in the
worker's output: a marker that is committed atomically with the records. Then the prepared
file is deleted. PHASE2 abort deletes it. On every connection of the worker the marker is read,
after initialising the producer if there is none yet (or the last one failed), which fences a
predecessor with the same ``transactional.id`` and settles its unfinished transaction: a
prepared file the marker has reached was already committed (the program died after the Kafka
commit) and is deleted; otherwise its transaction is reported to the worker, which commits it
(it is then produced from the spool in a fresh Kafka transaction) or aborts it. The Kafka
transaction exists only while PHASE2 runs, so nothing the worker rolls back ever reaches
Kafka. The sink decoder runs at PHASE2; a payload it rejects (or that is no ``(key, value)``)
is a dead letter, recorded once per committed transaction (again only if this program dies
during that PHASE2 and replays it from the spool); a record Kafka refuses for good is a dead
letter too, left out of the transaction (the same way on every retry). See
docs/connectors/kafka.md.

In both modes a payload the sink decoder rejects is kept in the dead-letter file
(``--<connector>-deadletter_path``, default ``./wallaroo-deadletter/<connector>-sink.jsonl``,
JSON Lines in the worker's dead-letter format) and logged, rate-limited.

Logs go to stderr; the first line names the connector, the worker's address and the brokers.
SIGINT and SIGTERM stop it cleanly (exit code 0); 1 means a socket or Kafka failure, 2 a usage
or configuration error. librdkafka reconnects to the brokers with back-off.

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
The spooling is ``wallaroo.experimental.SpooledSink``, the Kafka clients are in
``wallaroo.experimental.kafka_producers``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import wallaroo.experimental as wx
from wallaroo.experimental.kafka_producers import (
    KafkaOutputProducer,
    KafkaRecord,
    KafkaTransactionalProducer,
    as_record,
)
from wallaroo.experimental.program import (
    ProgramRun,
    UsageError,
    configure_logging,
    import_client,
)
from wallaroo.experimental.spooled_sink import SpooledSink, parse_crash_point

log = logging.getLogger("kafka_sink")

OPTIONAL = ["bootstrap_brokers", "transactional", "spool_dir", "transactional_id", "crash_point"]


def serve(connector: wx.SinkConnector, producer: KafkaOutputProducer) -> NoReturn:
    """Produce every value the connector reads, until interrupted."""
    while True:
        try:
            values = connector.read_many(1024, timeout=0.1)
        except TimeoutError:  # the worker pauses: deliver what is queued
            producer.flush(0.5)
            continue
        records = []  # outputs the decoder rejected are the connector's dead letters
        for value in values:
            try:
                records.append(as_record(value))
            except ValueError as exc:  # decoded, but not a record: a dead letter too
                connector.dead_letter(value, exc, stage="kafka_sink record")
        producer.produce(records)


# -- transactional mode -----------------------------------------------------------------------


@dataclass(slots=True)
class TxnSettings:
    """What every worker's :class:`KafkaTransactionalSink` shares.

    Attributes:
        ck: the ``confluent_kafka`` module.
        brokers: the bootstrap brokers.
        topic: the topic to produce to.
        spool_dir: the directory of the spool files.
        connector: the connector's name (part of the spool files' names).
        id_prefix: the ``transactional.id`` of worker W is ``<id_prefix>.W``, and so is the
            consumer group of its commit marker.
        crash: the test-only crash point, ``(point, n)``, or None.
        decoder: the application's sink decoder (set once the connector has loaded it).
        dead_letter: the connector's ``dead_letter`` (set with ``decoder``).
    """

    ck: Any
    brokers: str
    topic: str
    spool_dir: str
    connector: str
    id_prefix: str
    crash: tuple[str, int] | None = None
    decoder: Any = None
    dead_letter: Any = None

    def make_sink(self, worker: str) -> KafkaTransactionalSink:
        """The ``sink_factory`` of the connector.

        Raises:
            ValueError: the worker's name cannot be part of a file name (the connector refuses
                the worker with ERROR).
        """
        return KafkaTransactionalSink(worker, self)


def txn_settings(params: Any, ck: Any) -> TxnSettings | None:
    """The transactional settings from the parsed parameters; None when not transactional.

    Raises:
        ValueError: a parameter is invalid (``transactional`` not ``true``/``false``, no or a
            missing ``spool_dir``, a bad ``crash_point``, a transactional-only parameter without
            ``transactional true``).
    """
    flag = (params.transactional or "false").strip().lower()
    if flag not in ("true", "false"):
        raise ValueError(f"transactional must be 'true' or 'false', got {params.transactional!r}")
    if flag == "false":
        extra = [n for n in ("spool_dir", "transactional_id", "crash_point") if getattr(params, n)]
        if extra:
            raise ValueError(f"{', '.join(extra)} need(s) transactional true")
        return None
    if not params.spool_dir:
        raise ValueError(f"transactional true needs --{params.connector_name}-spool_dir")
    if not os.path.isdir(params.spool_dir):
        raise ValueError(f"the spool directory {params.spool_dir} does not exist")
    crash = parse_crash_point(params.crash_point)
    topic = params.topic
    return TxnSettings(
        ck=ck,
        brokers=params.bootstrap_brokers or "127.0.0.1:9092",
        topic=topic,
        spool_dir=params.spool_dir,
        connector=params.connector_name,
        id_prefix=params.transactional_id or f"wallaroo-kafka_sink.{topic}.{params.connector_name}",
        crash=crash,
    )


class KafkaTransactionalSink(SpooledSink):
    """One worker's output to Kafka in transactions (see the module docstring): spooled by
    :class:`~wallaroo.experimental.spooled_sink.SpooledSink`, produced at PHASE2 by a
    :class:`~wallaroo.experimental.kafka_producers.KafkaTransactionalProducer` whose marker
    tells which transaction last reached Kafka.

    Every Kafka transaction begins and ends inside :meth:`commit`; between hooks there is none.
    A hook that fails raises: on the worker's next connection :meth:`recover` starts again from
    the spool and the marker, with a new producer when the old one failed.

    Raises:
        ValueError: (constructor) the worker's name cannot be part of a file name.
    """

    def __init__(self, worker: str, settings: TxnSettings) -> None:
        super().__init__(worker, settings.spool_dir, settings.connector, log=log, system="Kafka",
                         crash=settings.crash)  # fmt: skip
        self.settings = settings
        self.transactional_id = f"{settings.id_prefix}.{worker}"
        self.kafka = KafkaTransactionalProducer(
            settings.ck, settings.brokers, settings.topic, self.transactional_id, log
        )
        self.dropped = 0  # records left out (dead letters): refused by Kafka

    def destination(self) -> str:
        """The topic and the ``transactional.id``, for the log."""
        return f"{self.settings.topic} (transactional.id {self.transactional_id})"

    def delivered_end(self) -> int | None:
        """The marker, after initialising the producer if there is none (fencing a
        predecessor).

        Raises:
            KafkaException: the brokers did not answer.
        """
        self.kafka.start()
        return self.kafka.marker()

    def deliver(self, txn: wx.Transaction, payloads: list[bytes]) -> None:
        """Decode the payloads and produce them with the marker ``txn.end`` in one Kafka
        transaction. A payload the decoder rejects, and a record Kafka refuses for good, is a
        dead letter (once per transaction), left out of the transaction.

        Raises:
            KafkaException: the transaction could not be committed (logged).
        """
        records: list[tuple[int, KafkaRecord]] = []
        offset = txn.start
        for index, payload in enumerate(payloads):
            record = self._record(txn, index, payload, offset)
            offset += len(payload)
            if record is not None:
                records.append((index, record))

        def refused(index: int, exc: BaseException) -> None:
            self._refused(txn, index, payloads[index], exc)

        try:
            self.kafka.commit(records, txn.end, refused)
        except self.settings.ck.KafkaException as exc:
            log.error("worker '%s': Kafka transaction of %s failed: %s",
                      self.worker, txn.txn_id, exc)  # fmt: skip
            raise

    def close(self) -> None:
        """The connector stops: drop the open spool file and the Kafka clients (nothing is
        pending: every Kafka transaction ends inside :meth:`commit`)."""
        super().close()
        self.kafka.close()

    def _record(
        self, txn: wx.Transaction, index: int, payload: bytes, offset: int
    ) -> KafkaRecord | None:
        """A payload (at byte ``offset`` of the worker's output) as ``(key, value,
        partition)``; None when the decoder rejects it: a dead letter, recorded once per
        transaction (the same payload is rejected every time, so skipping it is
        deterministic)."""
        try:
            return as_record(self.settings.decoder.decode(payload))
        except Exception as exc:  # the application's decoder may raise anything
            if self.first_time(txn, index):
                self.settings.dead_letter(payload, exc, worker=self.worker, message_id=offset)
            return None

    def _refused(self, txn: wx.Transaction, index: int, payload: bytes, exc: BaseException) -> None:
        """Kafka refuses record ``index`` of ``txn`` for good: a dead letter (once per
        transaction, however often it is attempted), left out of the transaction."""
        if self.first_time(txn, index):
            self.dropped += 1
            self.settings.dead_letter(
                payload, exc, worker=self.worker,
                stage=f"kafka_sink produce to {self.settings.topic}",
            )  # fmt: skip


def serve_transactional(connector: wx.SinkConnector, settings: TxnSettings) -> int:
    """Serve the workers in transactional mode until the connector's thread fails; return the
    exit code (1). The caller closes the connector; a signal's ``Stop`` propagates.

    Raises:
        ConnectorError: the connector's address cannot be bound.
    """
    settings.decoder = connector.config.decoder
    settings.dead_letter = connector.dead_letter
    connector.listen()
    host, port = connector.address
    log.info(
        "kafka_sink for connector '%s': listening for the worker on %s:%d, producing to topic "
        "'%s' at Kafka %s, in transactions (transactional.id %s.<worker>, spool %s)",
        connector.config.name, host, port, settings.topic, settings.brokers, settings.id_prefix,
        settings.spool_dir,
    )  # fmt: skip
    error = connector.join()
    log.error("the connector stopped: %s", error)
    return 1


def flush_at_exit(producer: KafkaOutputProducer) -> None:
    """Deliver what the producer still holds, for up to 5 s; warn about what is left."""
    left = producer.flush(5.0)
    if left:
        log.warning("%d records were not delivered to Kafka before exit", left)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    try:
        ck = import_client(
            "confluent_kafka", "kafka",
            "kafka_sink needs confluent-kafka, which is not installed: {install}",
        )  # fmt: skip
    except UsageError as exc:
        log.error("%s", exc)
        return 2
    args = list(sys.argv if argv is None else argv)
    failures = (OSError, ck.KafkaException, wx.ConnectorError)
    with ProgramRun(log, errors=(ck.KafkaException, ValueError), failures=failures) as run:
        params = wx.parse_connector_args(args, ["topic"], OPTIONAL)
        settings = txn_settings(params, ck)
        if settings is not None:
            connector = wx.SinkConnector(args, ["topic"], OPTIONAL, sink_factory=settings.make_sink)
            run.callback(connector.close)
            return serve_transactional(connector, settings)
        connector = wx.SinkConnector(args, required_params=["topic"], optional_params=OPTIONAL)
        brokers = params.bootstrap_brokers or "127.0.0.1:9092"
        producer = KafkaOutputProducer(
            ck, brokers, connector.params.topic,
            lambda record, exc: connector.dead_letter(record, exc, stage="kafka_sink produce"),
            log,
        )  # fmt: skip
        run.callback(flush_at_exit, producer)
        run.callback(connector.close)  # the last registered is closed first
        connector.listen()
        host, port = connector.address
        log.info("kafka_sink for connector '%s': listening for the worker on %s:%d, producing "
                 "to topic '%s' at Kafka %s", connector.config.name, host, port,
                 connector.params.topic, brokers)  # fmt: skip
        serve(connector, producer)
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
