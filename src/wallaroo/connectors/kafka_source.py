#!/usr/bin/env python3
"""kafka_source: read Kafka topics as a consumer-group member and send each record to Wallaroo.

Usage::

    kafka_source --application-module app --connector feed --feed-topics orders \\
        --feed-bootstrap_brokers 127.0.0.1:9092 --feed-consumer_group wallaroo

Parameters (prefixed with the connector's name):
    topics              (required) comma-separated topics to read.
    bootstrap_brokers   Kafka brokers, ``host:port[,host:port...]`` (127.0.0.1:9092).
    consumer_group      the consumer group (wallaroo); several kafka_source processes in one
                        group share the partitions.
    session_timeout_ms  the group session timeout (10000): how soon the partitions of a
                        process that died move to the others.
    auto_offset_reset   where a partition the group never committed starts: earliest
                        (default) or latest.
    fetch_wait_max_ms   how long a broker may hold a fetch that found no record (100). Kafka
                        answers as soon as a record arrives, so this only bounds the idle fetch
                        rate; a broker that polls its log instead (Tansu answers up to about
                        half of it late) adds up to this much latency.
    instance            names this process to the worker (informative).

Each assigned partition is one stream, ``<topic>/<partition>``; a record's offset is its
message id, its value goes through the application's source encoder. Reading resumes after the
offset the worker says it has (for a stream it never saw: the group's committed offset, else
``auto_offset_reset``), and offsets are committed only up to what the worker acknowledged, so a
connector killed and restarted loses nothing (at-least-once; docs/connectors/kafka.md).

Logs go to stderr; the first line names the connector, the brokers and the worker. SIGINT and
SIGTERM end the streams, commit and exit 0. Brokers and worker are reconnected with back-off.

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import wallaroo
import wallaroo.experimental
from wallaroo.experimental import AtLeastOnceSourceConnector, Stream, stream_id_for
from wallaroo.experimental.connector_wire_messages import NONE_SEEN, Message
from wallaroo.experimental.program import (
    ProgramRun,
    UsageError,
    configure_logging,
    import_client,
    to_bytes,
)

log = logging.getLogger("kafka_source")

MAX_QUEUED = 10_000  # records read from Kafka and waiting for the worker's credits
BATCH = 500  # records taken from the consumer at once
IDLE_POLL = 0.1  # seconds the consumer waits for a first record before the loop goes on
COMMIT_EVERY = 1.0  # seconds
MAX_KEY = 65535  # the protocol's limit on a message key


@dataclass(eq=False)
class Partition:
    """One assigned partition, i.e. one stream. ``epoch`` changes whenever the worker opens or
    closes the stream; records read for an older epoch are never sent."""

    topic: str
    number: int
    stream_id: int
    epoch: int = 0
    open: bool = False
    resume: int | None = None  # the worker opened the stream at this point of reference
    ready: int = -1  # the epoch the consumer was positioned for
    paused: bool = True
    acked: int | None = None  # the last offset the worker acknowledged
    last_sent: int | None = None


class KafkaFeed(AtLeastOnceSourceConnector):
    """The connection to the worker. Its thread calls the hooks and pulls :meth:`__next__`;
    the main thread owns the Kafka consumer. They share the partitions and the queue under
    ``guard``; the main thread never calls the connector while holding ``guard``."""

    def __init__(self, config: Any, instance: str, encoder: Any) -> None:
        super().__init__("0.0.1", config.cookie, config.name, instance, config.host, config.port)
        self.encoder = encoder
        self.guard = threading.Condition()
        self.parts: dict[int, Partition] = {}  # by stream id
        self.queue: deque[tuple[Partition, int, Message]] = deque()

    # -- the connector's thread -------------------------------------------------------------
    def stream_opened(self, stream: Stream) -> None:
        with self.guard:
            part = self.parts.get(stream.id)
            if part is not None:
                part.epoch, part.open, part.resume = part.epoch + 1, True, stream.point_of_ref

    def stream_closed(self, stream: Stream) -> None:
        with self.guard:
            part = self.parts.get(stream.id)
            if part is not None:
                part.epoch, part.open, part.resume = part.epoch + 1, False, None

    def stream_acked(self, stream: Stream) -> None:
        with self.guard:
            part = self.parts.get(stream.id)
            if part is not None and stream.point_of_ref != NONE_SEEN:
                part.acked = stream.point_of_ref
                self.guard.notify_all()

    def __next__(self) -> Message | None:
        with self.guard:
            while self.queue:
                part, epoch, message = self.queue.popleft()
                if part.open and epoch == part.epoch:
                    part.last_sent = message.message_id
                    return message
            return None

    # -- the main thread --------------------------------------------------------------------
    def enqueue(self, part: Partition, record: Any) -> None:
        """Queue one record for the worker if its stream is open and positioned."""
        payload: bytes | None = None
        value = record.value()
        if value is not None:
            try:
                payload = to_bytes(self.encoder.encode(value), "the encoder's result")
            except Exception as exc:  # an empty MESSAGE keeps the offset moving
                payload = None
                log.warning("the encoder failed on %s/%d@%d (%r); record skipped",
                            part.topic, part.number, record.offset(), exc)  # fmt: skip
        key = record.key()
        kind, stamp = record.timestamp()
        message = Message(
            part.stream_id,
            record.offset(),
            stamp if kind and stamp > 0 else 0,
            key if key is not None and len(key) <= MAX_KEY else None,
            payload,
        )
        with self.guard:
            if part.open and part.ready == part.epoch:
                self.queue.append((part, part.epoch, message))


class KafkaSource:
    """The main thread's side: the consumer, its group callbacks, positions and commits."""

    def __init__(self, ck: Any, params: Any, feed: KafkaFeed, topics: list[str]) -> None:
        self.ck, self.feed, self.topics = ck, feed, topics
        self.reset = params.auto_offset_reset or "earliest"
        if self.reset not in ("earliest", "latest"):
            raise ValueError(f"--{feed.program_name}-auto_offset_reset must be earliest or latest")
        session_text = params.session_timeout_ms or "10000"
        if not session_text.isdigit() or int(session_text) < 1:
            raise ValueError(
                f"--{feed.program_name}-session_timeout_ms must be a positive number of "
                f"milliseconds, got {session_text!r}"
            )
        session = int(session_text)
        fetch_text = params.fetch_wait_max_ms or "100"
        if not fetch_text.isdigit() or int(fetch_text) < 1:
            raise ValueError(
                f"--{feed.program_name}-fetch_wait_max_ms must be a positive number of "
                f"milliseconds, got {fetch_text!r}"
            )
        self.committed: dict[int, int] = {}
        self.brokers_down = False
        self.consumer = ck.Consumer({
            "bootstrap.servers": params.bootstrap_brokers or "127.0.0.1:9092",
            "group.id": params.consumer_group or "wallaroo",
            "enable.auto.commit": False,
            "auto.offset.reset": self.reset,
            "session.timeout.ms": session,
            "heartbeat.interval.ms": max(100, min(3000, session // 4)),
            "fetch.wait.max.ms": int(fetch_text),
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 2000,
            "error_cb": self.on_error,
            "on_commit": self.on_commit,
            "logger": log,
        })  # fmt: skip

    def run(self) -> NoReturn:
        """Read until interrupted.

        Raises:
            ConnectorError: the connection to the worker failed for good (e.g. a wrong cookie).
        """
        self.consumer.subscribe(self.topics, on_assign=self.on_assign, on_revoke=self.on_revoke)
        next_commit = time.monotonic() + COMMIT_EVERY
        while True:
            self.position()
            self.flow()
            # consume(n, timeout) waits for n records or the whole timeout: wait for one
            # record only, then take those already fetched, so nothing waits for more.
            first = self.consumer.poll(IDLE_POLL)
            if first is not None:
                self.take(first)
                for record in self.consumer.consume(BATCH - 1, 0):
                    self.take(record)
                self.feed.wake()  # the worker's side sends them now, not at its next poll
            if time.monotonic() >= next_commit:
                self.commit(asynchronous=True)
                next_commit = time.monotonic() + COMMIT_EVERY
                error = self.feed.join(0)
                if error is not None:
                    raise wallaroo.experimental.ConnectorError(f"the worker connection: {error}")

    def take(self, record: Any) -> None:
        error = record.error()
        if error is not None:
            if error.code() != self.ck.KafkaError._PARTITION_EOF:
                log.warning("Kafka: %s", error.str())
            return
        if self.brokers_down:
            self.brokers_down = False
            log.info("the Kafka brokers are back")
        part = self.feed.parts.get(stream_id_for(f"{record.topic()}/{record.partition()}"))
        if part is not None:
            self.feed.enqueue(part, record)

    def on_assign(self, consumer: Any, assigned: list[Any]) -> None:
        """New partitions: held (paused) until the worker opens their streams."""
        consumer.assign(assigned)
        consumer.pause(assigned)
        parts = [Partition(tp.topic, tp.partition, stream_id_for(f"{tp.topic}/{tp.partition}"))
                 for tp in assigned]  # fmt: skip
        with self.feed.guard:
            for part in parts:
                self.feed.parts[part.stream_id] = part
        for part in parts:
            self.feed.notify(part.stream_id, f"{part.topic}/{part.number}")
        log.info("assigned %s", ", ".join(f"{p.topic}/{p.number}" for p in parts) or "nothing")

    def on_revoke(self, consumer: Any, revoked: list[Any]) -> None:
        """Partitions moving away: commit what the worker has, end their streams."""
        self.commit(asynchronous=False)
        with self.feed.guard:
            ids = [stream_id_for(f"{tp.topic}/{tp.partition}") for tp in revoked]
            gone = [p for p in map(self.feed.parts.pop, ids, [None] * len(ids)) if p is not None]
            for part in gone:
                part.epoch, part.open = part.epoch + 1, False
                self.committed.pop(part.stream_id, None)
        for part in gone:
            with contextlib.suppress(wallaroo.experimental.ProtocolError):  # not open
                self.feed.end_of_stream(part.stream_id)
            self.feed.remove_stream(part.stream_id)
        consumer.unassign()
        log.info("revoked %s", ", ".join(f"{p.topic}/{p.number}" for p in gone) or "nothing")

    def position(self) -> None:
        """Seek the partitions the worker (re)opened to where it wants them."""
        with self.feed.guard:
            due = [(p, p.epoch, p.resume) for p in self.feed.parts.values() if p.resume is not None]
            for part, _, _ in due:
                part.resume = None
        for part, epoch, resume in due:
            try:
                offset = resume + 1 if resume != NONE_SEEN else self.start_of(part)
                self.consumer.seek(self.ck.TopicPartition(part.topic, part.number, offset))
            except self.ck.KafkaException as exc:  # not fetchable yet: try again next round
                log.debug("seek %s/%d failed (%s); retrying", part.topic, part.number, exc)
                with self.feed.guard:
                    if part.epoch == epoch:
                        part.resume = resume
                continue
            with self.feed.guard:
                if part.epoch == epoch:
                    part.ready = epoch
            where = "the worker has none" if resume == NONE_SEEN else f"the worker has {resume}"
            log.info("stream %s/%d: reading from offset %s (%s)", part.topic, part.number,
                     offset if offset >= 0 else self.reset, where)  # fmt: skip

    def start_of(self, part: Partition) -> int:
        """Where a stream the worker never saw starts: after what an earlier worker
        acknowledged, else the group's committed offset, else the reset policy's end."""
        tp = self.ck.TopicPartition(part.topic, part.number)
        committed = int(self.consumer.committed([tp], timeout=10)[0].offset)
        if part.acked is not None:
            return max(committed, part.acked + 1)
        if committed >= 0:
            return committed
        return int(self.ck.OFFSET_BEGINNING if self.reset == "earliest" else self.ck.OFFSET_END)

    def flow(self) -> None:
        """Pause a partition while its stream is not ready or the queue is full; resume it
        otherwise."""
        full = len(self.feed.queue) >= MAX_QUEUED
        low = len(self.feed.queue) <= MAX_QUEUED // 2
        with self.feed.guard:
            parts = list(self.feed.parts.values())
            ready = {p.stream_id: p.open and p.ready == p.epoch for p in parts}
        pause = [p for p in parts if not p.paused and (full or not ready[p.stream_id])]
        resume = [p for p in parts if p.paused and low and ready[p.stream_id]]
        for batch, action, paused in ((pause, self.consumer.pause, True),
                                      (resume, self.consumer.resume, False)):  # fmt: skip
            if batch:
                action([self.ck.TopicPartition(p.topic, p.number) for p in batch])
                for part in batch:
                    part.paused = paused

    def commit(self, *, asynchronous: bool) -> None:
        """Commit, for each partition, the offset after the last one the worker acknowledged."""
        with self.feed.guard:
            acked = [(p, p.acked + 1) for p in self.feed.parts.values() if p.acked is not None]
        due = {p.stream_id: (p, o) for p, o in acked if self.committed.get(p.stream_id) != o}
        if not due:
            return
        offsets = [self.ck.TopicPartition(p.topic, p.number, o) for p, o in due.values()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=asynchronous)
        except self.ck.KafkaException as exc:
            log.warning("could not commit offsets to Kafka: %s", exc)
            return
        self.committed.update({sid: offset for sid, (_, offset) in due.items()})

    def on_commit(self, err: Any, _partitions: list[Any]) -> None:
        if err is not None:
            log.warning("committing offsets failed (%s); retrying", err)
            self.committed.clear()

    def on_error(self, err: Any) -> None:
        down = err.code() == self.ck.KafkaError._ALL_BROKERS_DOWN
        if down and not self.brokers_down:
            log.warning("the Kafka brokers are unreachable; reconnecting with back-off")
        elif not down and err.code() != self.ck.KafkaError._TRANSPORT:
            log.warning("Kafka: %s", err.str())
        self.brokers_down = self.brokers_down or down

    def close(self, timeout: float) -> None:
        """End every stream, wait up to ``timeout`` s for the worker to acknowledge what it was
        sent, commit that and leave the group."""
        with self.feed.guard:
            parts = [p for p in self.feed.parts.values() if p.open]
            for part in parts:  # nothing more is sent for them
                part.epoch, part.open = part.epoch + 1, False
        for part in parts:
            with contextlib.suppress(wallaroo.experimental.ProtocolError):  # not open
                self.feed.end_of_stream(part.stream_id)
        with self.feed.guard:
            self.feed.guard.wait_for(
                lambda: all(p.last_sent is None or p.acked == p.last_sent for p in parts), timeout
            )
        self.commit(asynchronous=False)
        with self.feed.guard:
            self.feed.parts.clear()  # what on_revoke finds while the consumer closes
        self.consumer.close()


def connect(feed: KafkaFeed) -> None:
    """Connect to the worker, waiting (with back-off) until it is up.

    Raises:
        ConnectorError: the worker refused the connector (a wrong cookie).
    """
    delay, waiting = 0.05, False
    while True:
        try:
            feed.connect()
            return
        except wallaroo.experimental.ConnectorError as exc:
            if "refused the connector" in str(exc):  # an ERROR answer: retrying cannot help
                raise
            if not waiting:
                log.info("waiting for the worker at %s:%d (%s)", feed.host, feed.port, exc)
                waiting = True
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    try:
        ck = import_client(
            "confluent_kafka",
            "kafka",
            "kafka_source needs confluent-kafka, which is not installed: {install}",
        )
    except UsageError as exc:
        log.error("%s", exc)
        return 2
    args = list(sys.argv if argv is None else argv)
    failures = (OSError, ck.KafkaException, wallaroo.experimental.ConnectorError)
    # A signal raises Stop: the streams end, what the worker has is committed, exit code 0.
    with ProgramRun(log, errors=(ck.KafkaException, ValueError), failures=failures) as run:
        found = wallaroo.experimental.SourceConnector(  # finds the connector; never connected
            args, required_params=["topics"],
            optional_params=["bootstrap_brokers", "consumer_group", "session_timeout_ms",
                             "auto_offset_reset", "fetch_wait_max_ms"],
        )  # fmt: skip
        params, config = found.params, found.config
        topics = [t.strip() for t in params.topics.split(",") if t.strip()]
        if not topics:
            raise ValueError(f"--{config.name}-topics names no topic")
        feed = KafkaFeed(config, params.instance or config.name, config.encoder)
        run.callback(feed.shutdown)
        source = KafkaSource(ck, params, feed, topics)
        run.callback(source.close, timeout=2.0)  # the last registered is closed first
        log.info("kafka_source for connector '%s': reading %s from Kafka at %s (consumer group "
                 "'%s'), sending to the worker at %s:%d", config.name, ",".join(topics),
                 params.bootstrap_brokers or "127.0.0.1:9092", params.consumer_group or "wallaroo",
                 config.host, config.port)  # fmt: skip
        connect(feed)
        log.info("connected to the worker at %s:%d", feed.host, feed.port)
        source.run()
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
