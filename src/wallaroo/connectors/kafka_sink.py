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
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import signal
import struct
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, NoReturn

import wallaroo
import wallaroo.experimental
import wallaroo.experimental as wx

log = logging.getLogger("kafka_sink")

EXTRA = "pip install 'wallaroo-py[kafka]'"

SPOOL_MAGIC = b"WKSPOOL1"  # the first bytes of a spool file
TRAILER_MAGIC = b"WKTX"  # the last bytes of a prepared spool file
_FRAME = struct.Struct(">I")
KAFKA_TIMEOUT = 30.0  # seconds for one Kafka operation of a transaction (init, offsets, commit)
CRASH_POINTS = ("before-vote", "after-vote", "after-commit")
#: Delivery errors that a record will always get: it is a dead letter, so that the rest can commit.
POISON_ERRORS = frozenset({
    "MSG_SIZE_TOO_LARGE", "INVALID_MSG", "INVALID_MSG_SIZE", "INVALID_RECORD",
    "RECORD_LIST_TOO_LARGE", "_UNKNOWN_PARTITION", "POLICY_VIOLATION",
})  # fmt: skip
_WORKER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


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
    """A Kafka producer that logs broker outages; a record Kafka refuses, at once or when it
    fails to deliver it, goes to ``reject(value, error)`` (the program's dead letters)."""

    def __init__(
        self, ck: Any, brokers: str, topic: str, reject: Callable[[Any, BaseException], None]
    ) -> None:
        self.ck, self.brokers, self.topic = ck, brokers, topic
        self.reject = reject
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
        """Hand records to librdkafka, waiting while its queue is full; a record it refuses
        at once (too large, say) goes to ``reject`` and the others are produced."""
        for key, value, partition in records:
            while True:
                try:
                    self.producer.produce(self.topic, value, key, partition, self.on_delivery)
                    break
                except BufferError:  # its queue is full: serve deliveries, then try again
                    self.producer.poll(0.1)
                except self.ck.KafkaException as exc:
                    self.failed += 1
                    self.reject((key, value, partition), exc)
                    break
        self.producer.poll(0)

    def on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            if self.down:
                self.down = False
                log.info("the Kafka brokers at %s are back", self.brokers)
            return
        self.failed += 1
        self.reject(
            (msg.key(), msg.value(), msg.partition()),
            self.ck.KafkaException(err),
        )

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
    crash = None
    if params.crash_point:
        point, _, count = params.crash_point.partition(":")
        if point not in CRASH_POINTS or not count.isdigit() or int(count) < 1:
            raise ValueError(
                "crash_point must be before-vote:<n>, after-vote:<n> or after-commit:<n> (n "
                "from 1), got "
                f"{params.crash_point!r}"
            )
        crash = (point, int(count))
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


def spool_paths(spool_dir: str, connector: str, worker: str) -> tuple[str, str]:
    """``(open, prepared)``: the spool files of ``worker``.

    Raises:
        ValueError: the worker's name cannot be part of a file name.
    """
    if not _WORKER_NAME.fullmatch(worker):
        raise ValueError(f"worker name {worker!r} cannot be part of a file name")
    base = os.path.join(spool_dir, f"{connector}.{worker}")
    return f"{base}.open", f"{base}.prepared"


@dataclass(frozen=True, slots=True)
class Spooled:
    """A prepared transaction read back from its spool file."""

    txn: wx.Transaction
    payloads: list[bytes]


class SpoolWriter:
    """The open transaction's spool file: each payload, length-prefixed, as it arrives.

    Nothing is durable until :meth:`seal`. Raises ``OSError`` when the file cannot be written.
    """

    def __init__(self, path: str, start: int) -> None:
        self.path, self.start, self.end = path, start, start
        self.count = 0
        self.crc = 0
        self._file = open(path, "wb")  # noqa: SIM115 - closed by seal() or discard()
        self._file.write(SPOOL_MAGIC)

    def write(self, payloads: Sequence[bytes]) -> None:
        """Append payloads (buffered)."""
        parts: list[bytes] = []
        for payload in payloads:
            parts += (_FRAME.pack(len(payload)), payload)
            self.crc = zlib.crc32(payload, self.crc)
            self.end += len(payload)
        self.count += len(payloads)
        self._file.write(b"".join(parts))

    def seal(self, txn: wx.Transaction, worker: str, prepared: str) -> None:
        """Write the trailer, fsync, rename to ``prepared`` and fsync the directory: from then
        on the transaction survives a crash of this process or of the machine."""
        meta = {"txn": txn.txn_id, "start": txn.start, "end": txn.end, "count": self.count,
                "crc32": self.crc, "worker": worker}  # fmt: skip
        trailer = json.dumps(meta).encode()
        self._file.write(trailer + _FRAME.pack(len(trailer)) + TRAILER_MAGIC)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.path, prepared)
        fsync_dir(prepared)

    def discard(self) -> None:
        """Close and delete the file (its output is not voted on)."""
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


def read_spool(path: str) -> Spooled | None:
    """Read a prepared spool file; None when there is none.

    Raises:
        OSError: the file exists but cannot be read.
        ValueError: the file is corrupt (a bad trailer, frames that do not add up, a CRC-32
            that does not match); it is never ignored, since the worker was promised it.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    body = len(SPOOL_MAGIC)
    if not data.startswith(SPOOL_MAGIC) or not data.endswith(TRAILER_MAGIC) or len(data) < body + 8:
        raise ValueError(f"spool file {path} is corrupt: no header or trailer")
    (size,) = _FRAME.unpack_from(data, len(data) - 8)
    end = len(data) - 8 - size
    try:
        if end < body:
            raise ValueError("the trailer runs into the header")
        meta = json.loads(data[end : len(data) - 8])
        txn = wx.Transaction(str(meta["txn"]), int(meta["start"]), int(meta["end"]))
        count, crc = int(meta["count"]), int(meta["crc32"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"spool file {path} is corrupt: bad trailer ({exc})") from exc
    payloads = []
    pos, check = body, 0
    while pos < end:
        (length,) = _FRAME.unpack_from(data, pos) if pos + 4 <= end else (end,)  # (end,): torn
        if pos + 4 + length > end:
            raise ValueError(f"spool file {path} is corrupt: a frame at {pos} runs past the end")
        payload = data[pos + 4 : pos + 4 + length]
        payloads.append(payload)
        check = zlib.crc32(payload, check)
        pos += 4 + length
    if (count, crc, txn.end - txn.start) != (len(payloads), check, sum(map(len, payloads))):
        raise ValueError(f"spool file {path} is corrupt: its payloads do not match its trailer")
    return Spooled(txn, payloads)


def fsync_dir(path: str) -> None:
    """Make a rename or a deletion in the directory of ``path`` durable."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KafkaTransactionalSink(wx.TransactionalSink):
    """One worker's output to Kafka in transactions (see the module docstring).

    The hooks run in the connector's thread. Every Kafka transaction begins and ends inside
    :meth:`commit`; between hooks there is none. A hook that fails raises, and the connector
    closes the worker's connection with ERROR: on the worker's next connection :meth:`recover`
    starts again from the spool and the commit marker, with a new producer when the old one
    failed.

    Raises:
        ValueError: (constructor) the worker's name cannot be part of a file name.
    """

    def __init__(self, worker: str, settings: TxnSettings) -> None:
        self.worker = worker
        self.settings = settings
        self.transactional_id = f"{settings.id_prefix}.{worker}"
        self._open_path, self._prepared_path = spool_paths(
            settings.spool_dir, settings.connector, worker
        )
        self._writer: SpoolWriter | None = None
        self._prepared: wx.Transaction | None = None  # sealed in the spool, PHASE2 pending
        self._voted_here: set[str] = set()  # prepared by this process (not read back)
        self._producer: Any = None
        self._consumer: Any = None
        self._phase1s = 0  # PHASE1s of ranges with output (the crash points count them)
        self._votes = 0  # commit votes on ranges with output
        self._commits = 0  # non-empty transactions committed to Kafka
        self._die = False
        self.dropped = 0  # records left out (dead letters): refused by Kafka
        self.empty = 0  # empty outputs dropped
        self._dead: set[tuple[str, int]] = set()  # (txn id, index) recorded as dead letters

    # -- the hooks ------------------------------------------------------------------------------
    def recover(self) -> wx.SinkRecovery:
        """Discard the open spool, read the marker and the prepared spool file, and settle a
        prepared transaction that already reached Kafka.

        Returns:
            The marker as the committed offset (None when Kafka has none) and the prepared
            transaction still to be resolved by the worker, if any (its start is then the
            committed offset).

        Raises:
            KafkaException: the brokers did not answer (the producer could not be initialised
                or the marker read); the worker's connection is closed and it retries.
            ValueError: the prepared spool file is corrupt (it is never skipped).
            OSError: a spool file cannot be read or deleted.
        """
        self._enter()
        self._discard_open()
        self._clients()
        marker = self._marker()
        spooled = read_spool(self._prepared_path)
        prepared = None if spooled is None else spooled.txn
        committed = marker
        if prepared is not None and marker is not None and marker >= prepared.end:
            log.info(
                "worker '%s': %s is already in Kafka (the marker is at %d); deleting its spool",
                self.worker, prepared.txn_id, marker,
            )  # fmt: skip
            self._remove_prepared()
            prepared = None
        elif prepared is not None:
            if marker not in (None, prepared.start):
                log.warning(
                    "worker '%s': the Kafka marker is at %s but the spooled %s starts at %d",
                    self.worker, marker, prepared.txn_id, prepared.start,
                )  # fmt: skip
            committed = prepared.start
        self._prepared = prepared
        log.info(
            "worker '%s': %s committed to %s (transactional.id %s)%s",
            self.worker, "nothing yet" if committed is None else f"output up to offset {committed}",
            self.settings.topic, self.transactional_id,
            "" if prepared is None else f"; {prepared.txn_id} waits in the spool for its phase 2",
        )  # fmt: skip
        return wx.SinkRecovery(committed, prepared)

    def append(self, offset: int, payloads: Sequence[bytes]) -> None:
        """Append output to the open spool file (buffered, not durable); empty outputs are
        dropped.

        Raises:
            ValueError: the output does not continue the spool (the connector prevents it).
            OSError: the spool file cannot be written; the worker sends the output again.
        """
        self._enter()
        kept = [payload for payload in payloads if payload]
        if len(kept) < len(payloads):
            # An empty output takes no room in the worker's byte offsets, so whether it was
            # already delivered can never be told: it is dropped (the same way every time).
            if not self.empty:
                log.warning("worker '%s': dropping empty outputs (zero bytes)", self.worker)
            self.empty += len(payloads) - len(kept)
        if not kept:
            return
        payloads = kept
        if self._writer is None:
            self._writer = SpoolWriter(self._open_path, offset)
        elif offset != self._writer.end:
            raise ValueError(f"output at offset {offset}, but the spool ends at {self._writer.end}")
        self._writer.write(payloads)

    def prepare(self, txn: wx.Transaction, problem: str | None) -> bool:
        """PHASE1: seal the open spool file as the prepared transaction (fsync, rename, fsync
        the directory) and vote commit; vote abort on a ``problem`` or a range that does not
        match the spool. An empty range votes commit with nothing to keep.

        Raises:
            OSError: the spool cannot be made durable: no vote is sent and the worker's
                checkpoint aborts.
        """
        self._enter()
        if txn.end > txn.start:
            self._phase1s += 1
            if self.settings.crash == ("before-vote", self._phase1s):
                self._crash(f"at PHASE1 {self._phase1s}, before its vote")
        if problem is not None:
            return False
        writer = self._writer
        if txn.start == txn.end and writer is None:
            return True  # nothing to make durable, nothing to produce
        if writer is None or (writer.start, writer.end) != (txn.start, txn.end):
            log.warning(
                "worker '%s': %s covers [%d, %d) but the spool holds %s; vote abort",
                self.worker, txn.txn_id, txn.start, txn.end,
                "nothing" if writer is None else f"[{writer.start}, {writer.end})",
            )  # fmt: skip
            return False
        writer.seal(txn, self.worker, self._prepared_path)
        self._writer = None
        self._prepared = txn
        self._voted_here.add(txn.txn_id)
        self._votes += 1
        if self.settings.crash == ("after-vote", self._votes):
            self._die = True  # at the next hook: the vote is sent first
        return True

    def commit(self, txn: wx.Transaction) -> None:
        """PHASE2 commit: produce the prepared payloads and the marker in one Kafka
        transaction, then delete the prepared spool file.

        Raises:
            KafkaException: the Kafka transaction failed; the spool file is kept and
                :meth:`recover` (through the marker) settles whether it reached Kafka.
            ValueError: the spool does not hold ``txn`` (it was lost or replaced).
            OSError: the spool file cannot be read or deleted.
        """
        self._enter()
        if txn.start == txn.end:
            return
        spooled = read_spool(self._prepared_path)
        if spooled is None or spooled.txn != txn:
            raise ValueError(
                f"PHASE2 commit of {txn.txn_id} [{txn.start}, {txn.end}), but the spool holds "
                f"{'nothing' if spooled is None else spooled.txn}"
            )
        again = txn.txn_id not in self._voted_here
        if again:
            log.info(
                "worker '%s': producing %s (%d records) from the spool in a new Kafka transaction",
                self.worker, txn.txn_id, len(spooled.payloads),
            )  # fmt: skip
        self._produce(txn, spooled.payloads)
        self._dead = {dead for dead in self._dead if dead[0] != txn.txn_id}
        self._commits += 1
        if self.settings.crash == ("after-commit", self._commits):
            self._crash(f"after the Kafka commit of {txn.txn_id}, before its spool is deleted")
        self._remove_prepared()
        self._voted_here.discard(txn.txn_id)
        self._prepared = None

    def abort(self, txn: wx.Transaction) -> None:
        """PHASE2 abort, or output sent again from the committed offset: delete the spool
        files from ``txn.start`` on (nothing of them reached Kafka).

        Raises:
            OSError: a spool file cannot be deleted; :meth:`recover` retries on the next
                connection, and the worker resolves a prepared transaction again.
        """
        self._enter()
        prepared = self._prepared
        if prepared is not None and txn.start <= prepared.start:
            self._remove_prepared()
            self._voted_here.discard(prepared.txn_id)
            self._prepared = None
        self._discard_open()

    def close(self) -> None:
        """The connector stops: drop the open spool file and the Kafka clients (nothing is
        pending: every Kafka transaction ends inside :meth:`commit`)."""
        if self._writer is not None:
            self._writer.discard()
            self._writer = None
        self._drop_clients()

    # -- Kafka ----------------------------------------------------------------------------------
    def _clients(self) -> Any:
        """The transactional producer, made and initialised on first use (which fences a
        predecessor with the same ``transactional.id`` and settles its open transaction).

        Raises:
            KafkaException: the brokers did not answer within :data:`KAFKA_TIMEOUT`.
        """
        if self._producer is None:
            ck = self.settings.ck
            producer = ck.Producer({
                "bootstrap.servers": self.settings.brokers,
                "transactional.id": self.transactional_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 2000,
                "logger": log,
            })  # fmt: skip
            try:
                producer.init_transactions(KAFKA_TIMEOUT)
            except ck.KafkaException:
                with contextlib.suppress(Exception):
                    producer.purge(blocking=False)
                raise
            self._producer = producer
            if self._consumer is None:
                self._consumer = ck.Consumer({
                    "bootstrap.servers": self.settings.brokers,
                    "group.id": self.transactional_id,
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "logger": log,
                })  # fmt: skip
        return self._producer

    def _marker(self) -> int | None:
        """The end offset (in the worker's output) of the last transaction committed to Kafka,
        from the marker group; None when the group has no offset (nothing committed yet).

        Raises:
            KafkaException: the brokers did not answer.
        """
        ck = self.settings.ck
        partition = ck.TopicPartition(self.settings.topic, 0)
        (found,) = self._consumer.committed([partition], KAFKA_TIMEOUT)
        if found.error is not None:
            raise ck.KafkaException(found.error)
        return int(found.offset) if found.offset >= 0 else None

    def _produce(self, txn: wx.Transaction, payloads: list[bytes]) -> None:
        """Produce ``payloads`` and the marker ``txn.end`` in one Kafka transaction, committed.

        A record the brokers refuse for good (:data:`POISON_ERRORS`) is a dead letter and the
        transaction produced again without it; up to three attempts.

        Raises:
            KafkaException: the transaction could not be committed. The producer is aborted or
                dropped; whether the transaction reached Kafka is settled by :meth:`recover`
                (through the marker) on the worker's next connection.
        """
        ck = self.settings.ck
        skip: set[int] = set()
        for attempt in range(1, 4):
            failed: list[tuple[int, Any]] = []
            try:
                self._attempt(txn, payloads, skip, failed)
                return
            except ck.KafkaException as exc:
                poison = [(i, e) for i, e in failed if e.name() in POISON_ERRORS]
                if not self._abort_kafka(exc) or not poison or attempt == 3:
                    log.error("worker '%s': Kafka transaction of %s failed: %s",
                              self.worker, txn.txn_id, exc)  # fmt: skip
                    raise
                for index, error in poison:
                    self._refused(txn, index, payloads[index], ck.KafkaException(error))
                    skip.add(index)

    def _attempt(
        self, txn: wx.Transaction, payloads: list[bytes], skip: set[int], failed: list[Any]
    ) -> None:
        ck, topic = self.settings.ck, self.settings.topic
        producer = self._clients()
        producer.begin_transaction()
        offset = txn.start
        for index, payload in enumerate(payloads):
            offset += len(payload)
            if index in skip:
                continue
            record = self._record(txn, index, payload, offset - len(payload))
            if record is None:
                skip.add(index)
                continue
            key, value, partition = record
            report = functools.partial(_delivered, failed, index)
            while True:
                try:
                    producer.produce(topic, value, key, partition, report)
                    break
                except BufferError:  # its queue is full: serve deliveries, then try again
                    producer.poll(0.1)
                except ck.KafkaException as exc:  # refused at once: the same every time
                    self._refused(txn, index, payload, exc)
                    skip.add(index)
                    break
        marker = ck.TopicPartition(topic, 0, txn.end)
        metadata = self._consumer.consumer_group_metadata()
        producer.send_offsets_to_transaction([marker], metadata, KAFKA_TIMEOUT)
        producer.commit_transaction(KAFKA_TIMEOUT)  # flushes; raises if a record failed

    def _record(
        self, txn: wx.Transaction, index: int, payload: bytes, offset: int
    ) -> tuple[bytes | None, bytes | None, int] | None:
        """A payload (at byte ``offset`` of the worker's output) as ``(key, value,
        partition)``; None when the decoder rejects it: a dead letter, recorded once per
        transaction (the same payload is rejected every time, so skipping it is
        deterministic)."""
        try:
            return as_record(self.settings.decoder.decode(payload))
        except Exception as exc:  # the application's decoder may raise anything
            if (txn.txn_id, index) not in self._dead:
                self.settings.dead_letter(payload, exc, worker=self.worker, message_id=offset)
                self._dead.add((txn.txn_id, index))
            return None

    def _refused(self, txn: wx.Transaction, index: int, payload: bytes, exc: BaseException) -> None:
        """Kafka refuses record ``index`` of ``txn`` for good: a dead letter (once per
        transaction, however often it is attempted), left out of the transaction."""
        if (txn.txn_id, index) in self._dead:
            return
        self._dead.add((txn.txn_id, index))
        self.dropped += 1
        self.settings.dead_letter(
            payload, exc, worker=self.worker, stage=f"kafka_sink produce to {self.settings.topic}"
        )

    def _abort_kafka(self, exc: Any) -> bool:
        """After a failed transaction: True if it was aborted, so that it surely did not
        commit; else the producer is dropped (a new one settles the transaction)."""
        ck = self.settings.ck
        error = exc.args[0] if exc.args else None
        if error is not None and error.txn_requires_abort():
            try:
                self._producer.abort_transaction(KAFKA_TIMEOUT)
                return True
            except ck.KafkaException:
                pass
        self._drop_clients(keep_consumer=True)
        return False

    def _drop_clients(self, *, keep_consumer: bool = False) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.purge(blocking=False)
        if not keep_consumer and self._consumer is not None:
            with contextlib.suppress(Exception):
                self._consumer.close()
            self._consumer = None

    # -- the spool ------------------------------------------------------------------------------
    def _discard_open(self) -> None:
        if self._writer is not None:
            self._writer.discard()
            self._writer = None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._open_path)

    def _remove_prepared(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._prepared_path)
            fsync_dir(self._prepared_path)

    # -- fault injection ------------------------------------------------------------------------
    def _enter(self) -> None:
        """Every hook starts here: the crash point ``after-vote`` strikes at the first hook
        after the vote (the vote was sent; PHASE2 not yet applied)."""
        if self._die:
            self._crash(f"after commit vote {self._votes}, before its phase 2")

    def _crash(self, where: str) -> NoReturn:
        log.warning("crash_point: killing this process %s", where)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        raise SystemExit(137)  # not reached


def _delivered(failed: list[tuple[int, Any]], index: int, err: Any, _msg: Any) -> None:
    """Delivery report of record ``index`` of a transaction: remember a failure."""
    if err is not None:
        failed.append((index, err))


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
    optional = ["bootstrap_brokers", "transactional", "spool_dir", "transactional_id",
                "crash_point"]  # fmt: skip
    connector: wallaroo.experimental.SinkConnector | None = None
    producer: Producer | None = None
    try:
        params = wx.parse_connector_args(args, ["topic"], optional)
        settings = txn_settings(params, ck)
        brokers = params.bootstrap_brokers or "127.0.0.1:9092"
        if settings is not None:
            connector = wx.SinkConnector(args, ["topic"], optional, sink_factory=settings.make_sink)
            return serve_transactional(connector, settings)
        connector = wallaroo.experimental.SinkConnector(
            args, required_params=["topic"], optional_params=optional
        )
        producer = Producer(
            ck,
            brokers,
            connector.params.topic,
            lambda record, exc: connector.dead_letter(record, exc, stage="kafka_sink produce"),
        )
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


if __name__ == "__main__":
    sys.exit(main())
