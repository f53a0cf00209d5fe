"""The worker's built-in Kafka source (confluent-kafka, polled from the event loop).

It never blocks the loop: it takes what librdkafka has already fetched (``consume(timeout=0)``);
librdkafka's own threads talk to the brokers and reconnect with back-off when they go away (the
log says so). The helpers here are shared with the sink (``kafka_sink.py``).

Delivery (see ``docs/connectors/kafka.md``): the source reads every partition of its topic and
commits, to the consumer group ``wallaroo-<app>-<source>``, only offsets whose records went
through the pipeline *and* whose outputs every sink of the worker has handed on (the Kafka sink:
acknowledged by the brokers). It pauses for that once a second. A worker that crashes therefore
reads again, on restart, what it had not committed: at-least-once, duplicates possible.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from wallaroo.engine.local import LocalEngine
from wallaroo.errors import ConfigurationError
from wallaroo.kafka import CustomKafkaSourceCLIParser
from wallaroo.plan.physical import SourcePlan
from wallaroo.protocol.stream_registry import stream_id_for
from wallaroo.worker.flow import Gate
from wallaroo.worker.ingress import IngressStatistics

if TYPE_CHECKING:
    import confluent_kafka

__all__ = ["BrokerWatch", "KafkaSource", "client_config", "import_confluent_kafka"]

BATCH: Final = 1024
IDLE: Final = 0.01
"""Seconds between polls of an idle consumer or producer."""
COMMIT_INTERVAL: Final = 1.0
DRAIN_TIMEOUT: Final = 2.0
SYSLOG_LEVELS = {"Fine": 7, "Info": 6, "Warn": 4, "Error": 3}


def import_confluent_kafka(what: str) -> Any:
    """Import confluent-kafka for ``what``.

    Raises:
        ConfigurationError: it is not installed; the message names the extra to install.
    """
    try:
        import confluent_kafka
    except ImportError:
        raise ConfigurationError(
            f"{what} needs confluent-kafka, which is not installed: "
            "pip install 'wallaroo-py[kafka]'"
        ) from None
    return confluent_kafka


def client_config(servers: str, log_level: str, log: logging.Logger) -> dict[str, Any]:
    """The librdkafka settings a Kafka source and sink share.

    Args:
        servers: the bootstrap servers, ``host:port[,host:port...]``.
        log_level: a key of :data:`SYSLOG_LEVELS` (``Fine``, ``Info``, ``Warn``, ``Error``).
        log: where librdkafka's own log lines go.
    """
    return {
        "bootstrap.servers": servers,
        "log_level": SYSLOG_LEVELS[log_level],
        "logger": log,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 2000,
    }


class BrokerWatch:
    """Logs, once per outage, that the brokers went away, and when they are back."""

    def __init__(self, ck: Any, what: str, servers: str, log: logging.Logger) -> None:
        self.what, self.servers, self.log = what, servers, log
        self.all_down = ck.KafkaError._ALL_BROKERS_DOWN
        self.transport = ck.KafkaError._TRANSPORT
        self.down = False

    def error(self, err: Any) -> None:
        """librdkafka's ``error_cb``: an all-brokers-down error is logged once per outage,
        transport errors not at all, any other error every time.
        """
        if err.code() == self.all_down:
            if not self.down:
                self.log.warning(
                    "%s: the Kafka brokers at %s are unreachable; reconnecting with back-off",
                    self.what,
                    self.servers,
                )
            self.down = True
        elif err.code() != self.transport:
            self.log.warning("%s: Kafka error: %s", self.what, err.str())

    def alive(self) -> None:
        """A broker answered: log that the brokers are back if an outage was logged."""
        if self.down:
            self.down = False
            self.log.info("%s: the Kafka brokers at %s are back", self.what, self.servers)


class KafkaSource:
    """Reads every partition of one topic into a source's first segment.

    Args:
        plan: the source.
        config: its resolved configuration.
        engine: the engine whose source runner the records go to.
        gate: the worker's backpressure gate (no record is read while it is closed).
        log: where to report.
        group_id: the consumer group the offsets are committed to.
        drain: waits, up to the given seconds, until every sink has handed its output on;
            returns whether it did. Offsets are committed only after it returned True.
        resilient: checkpoints are on: the offsets are the source's position in every
            checkpoint, it restarts from the checkpointed ones, and commits them to the group
            when a checkpoint is committed (instead of after draining the sinks).

    Raises:
        ConfigurationError: confluent-kafka is not installed.
    """

    kind = "Kafka source"

    def __init__(
        self,
        plan: SourcePlan,
        config: CustomKafkaSourceCLIParser,
        engine: LocalEngine,
        gate: Gate,
        log: logging.Logger,
        *,
        group_id: str,
        drain: Callable[[float], Awaitable[bool]],
        resilient: bool = False,
    ) -> None:
        self._ck = import_confluent_kafka(f"Kafka source '{plan.name}'")
        self.plan, self.config, self.gate, self.log = plan, config, gate, log
        self.group_id = group_id
        self._drain = drain
        self._runner = engine.source_runner(plan.index)
        self._watch = BrokerWatch(
            self._ck, f"Kafka source '{plan.name}'", config.bootstrap_servers, log
        )
        self._consumer: confluent_kafka.Consumer | None = None
        self._stream_ids: dict[int, int] = {}
        self._positions: dict[int, int] = {}  # partition -> next offset to read
        self._committed: dict[int, int] = {}
        self._restored: dict[int, int] | None = None
        self._resilient = resilient
        self._next_commit = 0.0
        self.messages = 0
        self.errors = 0

    async def open(self, retry: float = 0.0) -> str:
        """Nothing to bind: the consumer is made by :meth:`run`."""
        return self.plan.name

    def background(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """The consumer's loop (:meth:`run`)."""
        return [(f"kafka {self.plan.name}", self.run())]

    async def stop(self) -> None:
        """Nothing to close before the sinks drained: :meth:`finish` leaves the group."""

    async def finish(self, *, commit: bool) -> None:
        """:meth:`close`, once the sinks drained (``commit``: they handed everything on)."""
        await self.close(commit=commit)

    async def run(self) -> None:
        """Assign the topic's partitions (waiting for the topic to exist), then feed the
        pipeline until cancelled."""
        ck = self._ck
        conf = client_config(self.config.bootstrap_servers, self.config.log_level, self.log)
        conf |= {
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "error_cb": self._watch.error,
        }
        self._consumer = consumer = ck.Consumer(conf)
        partitions = await self._assign(consumer)
        self.log.info(
            "Kafka source '%s' reading topic '%s' (partitions %s) from %s, committing to group "
            "'%s'",
            self.plan.name,
            self.config.topic,
            ",".join(map(str, partitions)),
            self.config.bootstrap_servers,
            self.group_id,
        )
        self._next_commit = time.monotonic() + COMMIT_INTERVAL
        while True:
            await self.gate.wait_open()
            try:
                records = consumer.consume(BATCH, 0)
            except ck.KafkaException as exc:  # librdkafka gave up on something: report, go on
                self.errors += 1
                self.log.warning("Kafka source '%s': %s", self.plan.name, exc)
                await asyncio.sleep(1.0)
                continue
            if records:
                self._deliver(records)
            if not self._resilient and time.monotonic() >= self._next_commit:
                await self._commit_cycle()
            await asyncio.sleep(0 if records else IDLE)

    async def _assign(self, consumer: confluent_kafka.Consumer) -> list[int]:
        ck, topic = self._ck, self.config.topic
        delay, waiting = 0.05, False
        while True:
            try:
                meta = await asyncio.to_thread(consumer.list_topics, topic, 5.0)
                info = meta.topics.get(topic)
                if info is not None and info.error is None and info.partitions:
                    partitions = sorted(info.partitions)
                    wanted = [ck.TopicPartition(topic, p) for p in partitions]
                    committed = await asyncio.to_thread(consumer.committed, wanted, 10.0)
                    break
                reason = str(info.error) if info is not None else "no metadata"
            except ck.KafkaException as exc:
                reason = str(exc)
            if not waiting:
                self.log.info(
                    "Kafka source '%s' waiting for topic '%s' at %s (%s)",
                    self.plan.name,
                    topic,
                    self.config.bootstrap_servers,
                    reason,
                )
                waiting = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        start = []
        for tp in committed:
            if tp.offset >= 0:
                self._committed[tp.partition] = tp.offset
            offset = tp.offset if tp.offset >= 0 else ck.OFFSET_BEGINNING
            if self._restored is not None:  # a checkpoint says where to start
                offset = self._restored.get(tp.partition, ck.OFFSET_BEGINNING)
            start.append(ck.TopicPartition(topic, tp.partition, offset))
            self._stream_ids[tp.partition] = stream_id_for(f"{topic}/{tp.partition}")
        consumer.assign(start)
        return partitions

    def _deliver(self, records: list[confluent_kafka.Message]) -> None:
        """Run the records through the pipeline, one batch per run of a partition."""
        good = []
        for record in records:
            error = record.error()
            if error is None:
                good.append(record)
            elif error.code() != self._ck.KafkaError._PARTITION_EOF:
                self.errors += 1
                self.log.warning("Kafka source '%s': %s", self.plan.name, error.str())
        if not good:
            return
        self._watch.alive()
        start = 0
        for i in range(1, len(good) + 1):
            if i == len(good) or good[i].partition() != good[start].partition():
                self._run(good[start:i])
                start = i

    def _run(self, records: list[confluent_kafka.Message]) -> None:
        partition = int(records[0].partition() or 0)
        values = [r.value() or b"" for r in records]
        offsets = [int(r.offset() or 0) for r in records]
        keys: list[Any] | None = None
        if self._runner.needs_keys:
            keys = [_key(r.key()) for r in records]
        try:
            self._runner.run(
                values, keys, stream_id=self._stream_ids.get(partition), message_ids=offsets
            )
        except Exception:
            self.errors += 1
            self.log.exception("internal error while processing Kafka partition %d", partition)
        self.messages += len(values)
        self._positions[partition] = offsets[-1] + 1

    async def _commit_cycle(self) -> None:
        """Commit what was read, once every sink has handed its output on."""
        self._next_commit = time.monotonic() + COMMIT_INTERVAL
        due = {p: o for p, o in self._positions.items() if self._committed.get(p) != o}
        if not due or not await self._drain(DRAIN_TIMEOUT):
            return
        self._commit(due, asynchronous=True)

    def _commit(self, offsets: dict[int, int], *, asynchronous: bool) -> None:
        consumer = self._consumer
        if consumer is None or not offsets:
            return
        ck = self._ck
        tps = [ck.TopicPartition(self.config.topic, p, o) for p, o in offsets.items()]
        try:
            if asynchronous:
                consumer.commit(offsets=tps, asynchronous=True)
            else:
                consumer.commit(offsets=tps, asynchronous=False)
        except ck.KafkaException as exc:
            self.log.warning("Kafka source '%s' could not commit offsets: %s", self.plan.name, exc)
            return
        self._committed.update(offsets)

    # -- checkpoints (resilient mode) -----------------------------------------------------------
    def positions(self) -> dict[int, int]:
        """The next offset to read of every partition read so far."""
        return dict(self._positions)

    def committed(self, positions: dict[int, int]) -> None:
        """A checkpoint holding ``positions`` is durable: commit them to the consumer group."""
        self._commit(
            {p: o for p, o in positions.items() if self._committed.get(p) != o}, asynchronous=True
        )

    def restore(self, positions: dict[int, int]) -> None:
        """Start reading each partition at its checkpointed offset (the beginning if absent)."""
        self._restored = dict(positions)
        self._positions = dict(positions)

    def rollback(self, positions: dict[int, int]) -> None:
        """Go back to a checkpoint: seek every assigned partition to its offset."""
        self.restore(positions)
        consumer = self._consumer
        if consumer is None:
            return
        ck = self._ck
        for partition in self._stream_ids:
            offset = positions.get(partition, ck.OFFSET_BEGINNING)
            try:
                consumer.seek(ck.TopicPartition(self.config.topic, partition, offset))
            except ck.KafkaException as exc:
                self.log.warning(
                    "Kafka source '%s' could not seek partition %d: %s",
                    self.plan.name,
                    partition,
                    exc,
                )

    async def close(self, *, commit: bool) -> None:
        """Commit what was read (only with ``commit``: the sinks handed everything on), then
        leave. Call after :meth:`run` was cancelled."""
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        due = {p: o for p, o in self._positions.items() if self._committed.get(p) != o}
        if self._resilient:
            due = {}  # checkpoints commit the offsets
        if commit and due:
            self._consumer = consumer
            self._commit(due, asynchronous=False)
            self._consumer = None
        elif due:
            self.log.warning(
                "Kafka source '%s': the sinks did not hand everything on; offsets not committed, "
                "the records will be read again",
                self.plan.name,
            )
        await asyncio.to_thread(consumer.close)

    def statistics(self) -> IngressStatistics:
        """A snapshot of this source's counters."""
        return IngressStatistics(
            self.plan.name,
            self.kind,
            self.config.bootstrap_servers,
            len(self._stream_ids),
            len(self._stream_ids),
            self.messages,
            self.errors,
        )


def _key(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "surrogateescape")
