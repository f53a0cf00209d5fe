"""The checkpoint store: atomic, verified, pruned."""

import pickle

import pytest

import wallaroo.serialization
from wallaroo.engine.state import StateStore
from wallaroo.errors import CheckpointError
from wallaroo.resilience.state_codec import decode_group, encode_group, group_blobs
from wallaroo.resilience.store import CheckpointStore


def test_write_read_round_trip(tmp_path):
    store = CheckpointStore(tmp_path / "ck")
    store.write({"id": 7, "app": "a"}, [("one", b"1" * 10), ("two", b"")])
    ck = store.read(7)
    assert ck.id == 7
    assert ck.manifest["app"] == "a"
    assert ck.blob_names() == ["one", "two"]
    assert ck.blob("one") == b"1" * 10
    assert ck.blob("two") == b""
    with pytest.raises(CheckpointError, match="no blob 'three'"):
        ck.blob("three")


def test_latest_and_prune(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for i in (1, 2, 3, 4):
        store.write({"id": i}, [])
    (tmp_path / "checkpoint-000000000009.tmp").write_bytes(b"half written")
    assert store.latest()[0].id == 4
    removed = store.prune()
    assert [p.name for p in removed] == [
        "checkpoint-000000000001.wck",
        "checkpoint-000000000002.wck",
    ]
    assert store.ids() == [3, 4]
    assert not list(tmp_path.glob("*.tmp"))


def test_truncated_and_corrupt_files_are_detected(tmp_path):
    store = CheckpointStore(tmp_path)
    store.write({"id": 1}, [("b", b"good")])
    path = store.write({"id": 2}, [("b", b"data" * 100)])
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match=r"checkpoint-000000000002.wck is truncated"):
        store.latest()
    flipped = bytearray(data)
    flipped[5] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="failed its SHA-256 check"):
        store.latest()
    ck, notes = store.latest(fall_back=True)
    assert ck.id == 1
    assert "SHA-256" in notes[0]


def test_no_checkpoint_at_all(tmp_path):
    assert CheckpointStore(tmp_path / "none").latest() == (None, [])


class Total:
    def __init__(self):
        self.n = 0


def test_state_groups_round_trip_with_any_serializer():
    store = StateStore("s", Total, 16)
    for k in ("a", "b", "é", "\udcff"):
        store.create(k).n = len(k) + 1
    blobs = dict(group_blobs(store, pickle.dumps))
    restored = StateStore("s", Total, 16)
    for name, blob in blobs.items():
        group = int(name.rsplit("/", 1)[1])
        restored.restore_group(group, decode_group(blob, pickle.loads))
    assert {k: v.n for k, v in restored.states.items()} == {k: v.n for k, v in store.states.items()}
    with pytest.raises(CheckpointError, match="must return bytes"):
        encode_group({"a": Total()}, lambda s: "text")
    with pytest.raises(CheckpointError, match="truncated"):
        decode_group(b"\x00\x00\x00\x05ab", pickle.loads)


def test_the_default_serializer_pickles_a_group_in_one_call():
    """With pickle as the serializer a group is one pickled dict (byte 0x80 first), smaller than
    the key-by-key layout that an application's own serializer gets; both decode alike."""
    states = {f"k{i}": Total() for i in range(100)}
    for i, state in enumerate(states.values()):
        state.n = i
    whole = encode_group(states, wallaroo.serialization.serialize)
    per_key = encode_group(states, pickle.dumps)  # not the default function: key by key
    assert whole[:1] == b"\x80" and per_key[:1] == b"\x00"
    assert len(whole) < len(per_key) / 2
    for blob in (whole, per_key):
        assert {k: v.n for k, v in decode_group(blob, pickle.loads).items()} == {
            k: v.n for k, v in states.items()
        }
    with pytest.raises(CheckpointError, match="not a dict"):
        decode_group(pickle.dumps([1, 2]), pickle.loads)
    with pytest.raises(CheckpointError, match="does not unpickle"):
        decode_group(whole[:-3], pickle.loads)


def test_an_unpicklable_state_is_named_by_its_key():
    states = {"fine": Total(), "bad": Total()}
    states["bad"].n = lambda: 0  # type: ignore[assignment]
    with pytest.raises(Exception, match="lambda"):
        wallaroo.serialization.serialize(states["bad"])
    # the whole-group pickle fails; the key-by-key retry fails on 'bad', and says so
    with pytest.raises(CheckpointError, match="serialize\\(\\) failed for key 'bad'"):
        encode_group(states, wallaroo.serialization.serialize)


def test_a_large_state_round_trips(tmp_path):
    store = StateStore("big", Total, 256)
    for i in range(200_000):
        store.create(f"k{i}").n = i
    ck_store = CheckpointStore(tmp_path)
    ck_store.write({"id": 1}, group_blobs(store, pickle.dumps))
    ck = ck_store.read(1)
    restored = StateStore("big", Total, 256)
    for name in ck.blob_names():
        restored.restore_group(
            int(name.rsplit("/", 1)[1]), decode_group(ck.blob(name), pickle.loads)
        )
    assert len(restored.states) == 200_000
    assert restored.states["k123456"].n == 123456
