"""The transactional kafka_sink's spool files: a sealed transaction reads back exactly, and a
damaged one is refused, never skipped (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

import wallaroo.experimental as wx
from wallaroo.connectors.kafka_sink import SpoolWriter, read_spool, spool_paths


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
