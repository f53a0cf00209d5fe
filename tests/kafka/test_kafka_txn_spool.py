"""The transactional kafka_sink's spool files: a sealed transaction reads back exactly, and a
damaged one is refused, never skipped; a payload the decoder rejects is a dead letter once (no
broker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

import wallaroo.experimental as wx
from wallaroo.connectors.kafka_sink import KafkaTransactionalSink, TxnSettings
from wallaroo.experimental.txn_spool import SpoolWriter, read_spool, spool_paths


def sealed(
    tmp_path: Path, batches: list[list[bytes]], start: int = 100
) -> tuple[str, wx.Transaction]:
    open_path, prepared = spool_paths(str(tmp_path), "results", "w1")
    writer = SpoolWriter(open_path, start)
    for batch in batches:
        writer.write(batch)
    txn = wx.Transaction("app-w-w1-id-0:c_id=7", start, writer.end)
    writer.seal(txn, "w1", prepared)
    return prepared, txn


def test_a_sealed_transaction_reads_back_exactly_and_replaces_the_open_file(tmp_path: Path):
    batches = [[b"REC-00001#1", b"x" * 70000], [b"\x00\xff", b"last"]]
    prepared, txn = sealed(tmp_path, batches)
    assert txn.end == 100 + sum(len(p) for batch in batches for p in batch)
    assert not (tmp_path / "results.w1.open").exists()
    assert prepared == str(tmp_path / "results.w1.prepared")
    spooled = read_spool(prepared)
    assert spooled is not None
    assert spooled.txn == txn
    assert spooled.payloads == [p for batch in batches for p in batch]


def test_no_prepared_file_reads_as_none_and_a_discarded_open_file_is_gone(tmp_path: Path):
    open_path, prepared = spool_paths(str(tmp_path), "results", "w1")
    writer = SpoolWriter(open_path, 0)
    writer.write([b"abc"])
    writer.discard()
    assert not Path(open_path).exists()
    assert read_spool(prepared) is None


@pytest.mark.parametrize(
    "damage",
    ["flip a payload byte", "cut the end", "cut a frame", "garbage", "empty"],
)
def test_a_damaged_spool_file_is_refused(tmp_path: Path, damage: str):
    prepared, _ = sealed(tmp_path, [[b"one", b"two", b"three"]])
    data = bytearray(Path(prepared).read_bytes())
    if damage == "flip a payload byte":
        data[len(b"WKSPOOL1") + 4] ^= 0x20
    elif damage == "cut the end":
        data = data[:-3]
    elif damage == "cut a frame":
        del data[len(b"WKSPOOL1") + 4 : len(b"WKSPOOL1") + 6]
    elif damage == "garbage":
        data = bytearray(b"not a spool file at all, just text")
    else:
        data = bytearray()
    Path(prepared).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="is corrupt"):
        read_spool(prepared)


@pytest.mark.parametrize("worker", ["", ".hidden", "-x", "a/b", "a b"])
def test_a_worker_name_that_cannot_name_a_file_is_refused(tmp_path: Path, worker: str):
    with pytest.raises(ValueError, match="cannot be part of a file name"):
        spool_paths(str(tmp_path), "results", worker)


class FakeKafka:
    """The little of ``confluent_kafka`` a transactional commit uses, without a broker: every
    ``commit_transaction`` in ``failing`` (counted from 1) raises, as lost brokers would."""

    class KafkaException(Exception):
        pass

    class _Error:
        def txn_requires_abort(self) -> bool:
            return True

    def __init__(self, failing: set[int]) -> None:
        self.failing = failing
        self.commits = 0
        self.produced: list[bytes] = []

    def TopicPartition(self, *args: object) -> tuple[object, ...]:
        return args

    def Producer(self, _config: object) -> object:
        kafka = self

        class Producer:
            def init_transactions(self, _timeout: float) -> None: ...
            def begin_transaction(self) -> None:
                self.records: list[bytes] = []

            def produce(self, _topic, value, _key, _partition, _report) -> None:
                self.records.append(value)

            def send_offsets_to_transaction(self, *_args: object) -> None: ...
            def abort_transaction(self, _timeout: float) -> None: ...
            def commit_transaction(self, _timeout: float) -> None:
                kafka.commits += 1
                if kafka.commits in kafka.failing:
                    raise kafka.KafkaException(FakeKafka._Error())
                kafka.produced += self.records

        return Producer()

    def Consumer(self, _config: object) -> object:
        class Consumer:
            def consumer_group_metadata(self) -> None: ...

        return Consumer()


class Decoder:
    def decode(self, payload: bytes) -> tuple[bytes, bytes]:
        if payload.startswith(b"\xff"):
            raise ValueError("not a record")
        return b"key", payload


def test_a_rejected_payload_is_a_dead_letter_once_however_often_its_commit_is_tried(
    tmp_path: Path,
):
    prepared, txn = sealed(tmp_path, [[b"one", b"\xffbad", b"two"]])
    kafka = FakeKafka(failing={1})
    letters: list[tuple[bytes, str | None, int | None]] = []
    settings = TxnSettings(
        ck=kafka, brokers="-", topic="t", spool_dir=str(tmp_path), connector="results",
        id_prefix="p", decoder=Decoder(),
        dead_letter=lambda payload, _exc, *, worker, message_id: letters.append(
            (payload, worker, message_id)
        ),
    )  # fmt: skip
    sink = KafkaTransactionalSink("w1", settings)
    with pytest.raises(FakeKafka.KafkaException):
        sink.commit(txn)  # the Kafka transaction fails; the worker commits it again later
    sink.commit(txn)
    assert kafka.produced == [b"one", b"two"]
    assert letters == [(b"\xffbad", "w1", 103)]  # once, at its offset in w1's output
    assert not Path(prepared).exists()
