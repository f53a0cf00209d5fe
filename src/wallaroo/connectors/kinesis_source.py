#!/usr/bin/env python3
"""kinesis_source: read the records of an AWS Kinesis stream and send them to Wallaroo, one
connector stream per shard, resuming after what the worker acknowledged.

The whole story is in docs/connectors/kinesis.md.

Usage::

    kinesis_source --application-module app --connector records --records-stream clicks

Parameters (prefixed with the connector's name):
    stream         (required) the Kinesis stream to read.
    shard          (optional) read only this shard (default: every shard).
    region         (optional) the AWS region (default: boto3's, e.g. ``AWS_DEFAULT_REGION``).
    endpoint_url   (optional) a Kinesis-compatible endpoint instead of AWS's.
    state_file     (optional) where the acknowledged positions are kept (default
                   ``./<connector>[-<instance>]-<stream>[-<shard>].kinesis-positions.json``).
    poll_interval  (optional) seconds between two reads of a shard (default 0.2).
    instance       (optional) names the streams ``<connector>-<instance>:<stream>:<shard>``.

Each record's data goes through the application's source encoder; its partition key becomes
the message key, its arrival time the event time. Sequence numbers do not fit the protocol's
u64, so each shard's records are numbered here (0 for the first record after the trim horizon)
and the state file keeps the sequence numbers of the positions the worker acknowledged. A
stream resumes after the nearest known position at or before the id the worker says it has,
skipping up to that id: a restarted connector loses and repeats nothing while the worker lives;
a new worker that knows nothing gets what follows the last acknowledged position
(at-least-once). A closed shard read to its end gets an end of stream, and its children are
looked up then. Kinesis failures and a lost worker are retried with back-off and logged.

Logs go to stderr; the first line names the connector and the addresses it uses. SIGINT and
SIGTERM stop it cleanly (exit code 0) after up to 2 s waiting for the last acknowledgements.

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wallaroo.experimental
import wallaroo.experimental.connector_wire_messages as cwm
from wallaroo.experimental.kinesis import (
    Position,
    PositionFile,
    ShardPositions,
    kinesis_client,
    list_shards,
)
from wallaroo.experimental.program import (
    Backoff,
    ProgramRun,
    configure_logging,
    import_client,
    positive_number,
    wait_for_worker,
)

log = logging.getLogger("kinesis_source")

READ_LIMIT = 1000  # records per GetRecords call
READ_AHEAD = 5000  # records queued per shard before reading pauses


@dataclass(slots=True)
class Item:
    """A record read from a shard (``seq`` None marks the end of a closed shard)."""

    epoch: int
    message_id: int
    seq: str | None
    payload: bytes = b""
    key: bytes | None = None
    event_time: int = 0


class Shard(ShardPositions):
    """One shard: its connector stream, its read-ahead queue and its positions
    (:class:`~wallaroo.experimental.kinesis.ShardPositions`). The fields are guarded by
    ``cond``; ``epoch`` grows whenever the stream is (re)opened or closed, so the reader drops
    what it read for an earlier connection."""

    def __init__(self, shard_id: str, stream_name: str, acked: list[Position]) -> None:
        super().__init__(acked)
        self.id = shard_id
        self.stream_name = stream_name
        self.stream_id = wallaroo.experimental.stream_id_for(stream_name)
        self.cond = threading.Condition()
        self.queue: deque[Item] = deque()
        self.epoch = 0
        self.start: tuple[str | None, int, int] | None = None  # after seq, next id, skip through
        self.open = False

    def acknowledged(self, point_of_ref: int) -> None:
        """The worker acknowledged up to ``point_of_ref`` (takes ``cond``)."""
        with self.cond:
            super().acknowledged(point_of_ref)


class ShardReader(threading.Thread):
    """Reads one shard into its queue (a daemon thread), from where ``Shard.start`` says;
    calls ``wake`` when it queued records, so that they are sent at once. It waits ``poll``
    seconds between two reads, except after a full one (more records are waiting)."""

    def __init__(
        self,
        client: Any,
        stream: str,
        shard: Shard,
        encoder: Any,
        poll: float,
        wake: Callable[[], None],
    ) -> None:
        super().__init__(name=f"kinesis-{shard.id}", daemon=True)
        self.client, self.stream, self.shard = client, stream, shard
        self.encoder, self.poll, self.wake = encoder, poll, wake
        self.backoff = Backoff(log, f"reading shard {shard.id} of Kinesis stream '{stream}'")
        self.stopping = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                with self.shard.cond:
                    self.shard.cond.wait_for(lambda: self.shard.start is not None, timeout=0.5)
                    if self.shard.start is None:
                        continue
                    epoch, (after, next_id, skip) = self.shard.epoch, self.shard.start
                    self.shard.start = None
                self.read(epoch, after, next_id, skip)
        except Exception as exc:  # a bug or an unexpected answer: the program stops, exit 1
            log.exception("shard %s: reading stopped on an unexpected error", self.shard.id)
            self.error = exc

    def read(self, epoch: int, after: str | None, next_id: int, skip: int) -> None:
        """Read from after ``after`` until the stream closes (the epoch changes)."""
        iterator = None
        while self.shard.epoch == epoch and not self.stopping.is_set():
            try:
                if iterator is None:
                    iterator = self.iterator(after)
                response = self.client.get_records(ShardIterator=iterator, Limit=READ_LIMIT)
            except Exception as exc:
                iterator = None  # a new one, after the last record read, on the next try
                response = getattr(exc, "response", None) or {}
                if response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                    self.stopping.wait(self.backoff.failed(exc))
                continue
            self.backoff.succeeded()
            items = []
            for record in response["Records"]:
                message_id, after, next_id = next_id, record["SequenceNumber"], next_id + 1
                if message_id > skip and (item := self.item(epoch, message_id, record)):
                    items.append(item)
            iterator = response.get("NextShardIterator")
            if iterator is None:  # closed and read to its end
                items.append(Item(epoch, next_id, None))
            if not self.enqueue(epoch, items) or iterator is None:
                return
            if items:
                self.wake()
            if len(response["Records"]) < READ_LIMIT:  # else more are waiting: read them now
                self.stopping.wait(self.poll)

    def iterator(self, after: str | None) -> str:
        where: dict[str, str] = {"ShardIteratorType": "TRIM_HORIZON"}
        if after is not None:
            where = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
        answer = self.client.get_shard_iterator(
            StreamName=self.stream, ShardId=self.shard.id, **where
        )
        return str(answer["ShardIterator"])

    def item(self, epoch: int, message_id: int, record: dict[str, Any]) -> Item | None:
        """The message for a record, or None when the encoder gives nothing or fails (logged;
        the record's message id is used up, so numbering stays the same on every read)."""
        try:
            payload = self.encoder.encode(record["Data"])
        except Exception as exc:
            what = f"{type(exc).__name__}: {exc}"
            log.warning("shard %s: the encoder failed on record %s (%s); skipped",
                        self.shard.id, record["SequenceNumber"], what)  # fmt: skip
            return None
        if payload is None:
            return None
        arrival = record.get("ApproximateArrivalTimestamp")
        event_time = int(arrival.timestamp() * 1000) if arrival is not None else 0
        key = record["PartitionKey"].encode("utf-8")
        return Item(epoch, message_id, record["SequenceNumber"], payload, key, event_time)

    def enqueue(self, epoch: int, items: list[Item]) -> bool:
        """Queue ``items``, waiting while the queue is full; False if the epoch ended."""
        with self.shard.cond:
            self.shard.cond.wait_for(
                lambda: (
                    len(self.shard.queue) < READ_AHEAD
                    or self.shard.epoch != epoch
                    or self.stopping.is_set()
                )
            )
            if self.shard.epoch != epoch or self.stopping.is_set():
                return False
            self.shard.queue.extend(items)
            return True


class KinesisSource(wallaroo.experimental.AtLeastOnceSourceConnector):
    """Sends the shards' queued records to the worker while it grants credits."""

    def __init__(self, config: Any, instance_name: str) -> None:
        super().__init__("0.0.1", config.cookie, "kinesis_source", instance_name,
                         config.host, config.port)  # fmt: skip
        self.shards: dict[int, Shard] = {}
        self.order: list[Shard] = []
        self.turn = 0
        self.draining = False

    def add(self, shard: Shard) -> None:
        """Start sending ``shard`` (NOTIFY now, or once connected)."""
        self.shards[shard.stream_id] = shard
        self.order.append(shard)
        latest = shard.acked[-1][0] if shard.acked else cwm.NONE_SEEN
        self.notify(shard.stream_id, shard.stream_name, latest)

    def stream_opened(self, stream: wallaroo.experimental.Stream) -> None:
        shard = self.shards[stream.id]
        with shard.cond:
            after, next_id, skip = shard.start = shard.resume(stream.point_of_ref)
            shard.epoch += 1
            shard.sent.clear()
            shard.queue.clear()
            shard.open, shard.ending, shard.dirty = True, False, True
            shard.cond.notify_all()
        has = "nothing" if stream.point_of_ref == cwm.NONE_SEEN else stream.point_of_ref
        where = f"after sequence number {after}" if after else "from the trim horizon"
        log.info("shard %s: the worker has %s; reading %s (message id %d on)",
                 shard.id, has, where, next_id)  # fmt: skip
        if skip >= next_id:
            log.info("shard %s: skipping message ids %d to %d, which the worker has",
                     shard.id, next_id, skip)  # fmt: skip

    def stream_closed(self, stream: wallaroo.experimental.Stream) -> None:
        shard = self.shards[stream.id]
        with shard.cond:  # ``sent`` stays: it places the worker's next NOTIFY_ACK exactly
            shard.open, shard.start = False, None
            shard.epoch += 1
            shard.queue.clear()
            shard.cond.notify_all()

    def stream_acked(self, stream: wallaroo.experimental.Stream) -> None:
        shard = self.shards[stream.id]
        shard.acknowledged(stream.point_of_ref)
        if shard.ended:  # not NOTIFYed again after a reconnection
            self.remove_stream(stream.id)

    def __next__(self) -> cwm.Message | None:
        count = len(self.order)
        for _ in range(0 if self.draining else count):
            shard = self.order[self.turn % count]
            self.turn += 1
            with shard.cond:
                while shard.open and shard.queue and shard.queue[0].epoch != shard.epoch:
                    shard.queue.popleft()
                if not (shard.open and shard.queue):
                    continue
                item = shard.queue.popleft()
                shard.cond.notify_all()
                if item.seq is None:
                    log.info("shard %s is closed and read to its end", shard.id)
                    shard.open = False
                    shard.ending = shard.dirty = True
                    self.end_of_stream(shard.stream_id)
                    continue
                shard.sent.append((item.message_id, item.seq))
            return cwm.Message(shard.stream_id, item.message_id, item.event_time, item.key,
                               item.payload)  # fmt: skip
        return None

    def unacknowledged(self) -> int:
        return sum(len(shard.sent) for shard in self.order if shard.open)


class Program:
    """The running connector: its shards, their readers, the connection and the state file."""

    def __init__(self, args: list[str], boto3: Any) -> None:
        """Read the command line and the application; nothing is contacted yet.

        Raises:
            SystemExit: a required parameter is missing (argparse's usage, exit code 2).
            WallarooError: the application cannot be loaded or has no such source connector.
            UsageError: a bad ``poll_interval``.
            ValueError: no AWS region.
        """
        settings = wallaroo.experimental.SourceConnector(  # reads argv and the application
            args, required_params=["stream"],
            optional_params=["shard", "region", "endpoint_url", "state_file", "poll_interval"],
        )  # fmt: skip
        self.params, self.config, self.base = settings.params, settings.config, settings.stream_name
        self.stream: str = self.params.stream
        poll, flag = self.params.poll_interval, f"--{self.config.name}-poll_interval"
        self.poll = 0.2 if poll is None else positive_number(flag, poll, "a positive number of "
                                                             "seconds")  # fmt: skip
        self.client = kinesis_client(
            boto3, self.params.region, self.params.endpoint_url, max_pool_connections=64
        )
        default = f"{self.base}-{self.stream}{'-' + self.params.shard if self.params.shard else ''}"
        path = Path(self.params.state_file or f"{default}.kinesis-positions.json").absolute()
        self.state = PositionFile(path, self.stream)
        self.source = KinesisSource(self.config, self.base)
        self.shards: dict[str, Shard] = {}
        self.saved: dict[str, tuple[list[Position], bool]] = {}
        self.readers: list[ShardReader] = []

    def describe(self) -> str:
        which = f"shard {self.params.shard}" if self.params.shard else "all shards"
        return (f"kinesis_source for connector '{self.config.name}': reading Kinesis stream "
                f"'{self.stream}' ({which}) at {self.client.meta.endpoint_url} (region "
                f"{self.client.meta.region_name}), positions in {self.state.path}, sending to the "
                f"worker at {self.config.host}:{self.config.port}")  # fmt: skip

    def add_shards(self) -> None:
        """Start reading the shards not seen yet (not ended ones).

        Raises:
            ValueError: the ``shard`` parameter names a shard the stream does not have.
        """
        listed = list_shards(self.client, self.stream, log)
        wanted = self.params.shard
        if wanted and wanted not in listed:
            raise ValueError(f"Kinesis stream '{self.stream}' has no shard {wanted!r} "
                             f"(its shards: {', '.join(listed)})")  # fmt: skip
        for shard_id in listed:
            if shard_id in self.shards or (wanted and shard_id != wanted):
                continue
            acked, ended = self.saved.get(shard_id, ([], False))
            shard = self.shards[shard_id] = Shard(shard_id, f"{self.base}:{self.stream}:{shard_id}",
                                                  acked)  # fmt: skip
            shard.ended = ended
            if not ended:
                reader = ShardReader(
                    self.client,
                    self.stream,
                    shard,
                    self.config.encoder,
                    self.poll,
                    self.source.wake,
                )
                self.readers.append(reader)
                reader.start()
                self.source.add(shard)

    def save(self, force: bool = False) -> None:
        snapshot, dirty = dict(self.saved), force  # shards not read (yet) keep their positions
        for shard in list(self.shards.values()):
            with shard.cond:
                snapshot[shard.id] = (list(shard.acked), shard.ended)
                dirty, shard.dirty = dirty or shard.dirty, False
        if dirty:
            self.state.save(snapshot)

    def run(self) -> None:
        """Read, send and record positions until interrupted.

        Raises:
            ConnectorError: the worker refused the connector, or it stopped on an error.
            ValueError: a bad parameter or state file.
            OSError: the state file cannot be written.
        """
        self.saved = self.state.load()
        self.add_shards()
        self.save(force=True)  # a state file that cannot be written fails now, not later
        wait_for_worker(self.config.host, self.config.port, log)
        self.source.connect()
        log.info("connected to the worker at %s:%d: %d shard(s)", self.config.host,
                 self.config.port, len(self.source.order))  # fmt: skip
        ended = sum(shard.ended for shard in self.shards.values())
        while True:
            time.sleep(0.2)
            error = self.source.join(0) or next((r.error for r in self.readers if r.error), None)
            if error is not None:
                raise wallaroo.experimental.ConnectorError(f"stopped on an error: {error}")
            self.save()
            now_ended = sum(shard.ended for shard in self.shards.values())
            if now_ended > ended and not self.params.shard:  # resharded: look for the children
                self.add_shards()
            ended = now_ended

    def stop(self) -> None:
        """Wait up to 2 s for the worker's last acknowledgements, close, save the positions."""
        self.source.draining = True
        deadline = time.monotonic() + 2.0
        while self.source.unacknowledged() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.source.shutdown()
        for reader in self.readers:
            reader.stopping.set()
        try:
            self.save(force=bool(self.shards))
        except OSError as exc:
            log.error("cannot save the positions in %s: %s", self.state.path, exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    logging.getLogger("botocore").setLevel(logging.WARNING)  # its INFO lines are noise here
    with ProgramRun(log, errors=(ValueError, ImportError)) as run:  # a signal raises Stop
        boto3 = import_client(
            "boto3", "kinesis", "kinesis_source needs boto3, which is not installed: {install}"
        )
        program = Program(list(sys.argv if argv is None else argv), boto3)
        run.callback(program.stop)
        log.info("%s", program.describe())
        program.run()
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
