"""The checkpoint round (sans-IO) and its manifest, driven directly, with a real store."""

from __future__ import annotations

import base64
import pickle
import struct
import sys
from pathlib import Path

import pytest

from wallaroo.errors import CheckpointError
from wallaroo.resilience.manifest import (
    MANIFEST_VERSION,
    GeneratorPosition,
    Manifest,
    SinkPosition,
    blob_name,
    parse_blob_name,
)
from wallaroo.resilience.round import (
    AbortKind,
    AbortReason,
    Acknowledge,
    Capture,
    CheckpointRound,
    Done,
    Phase,
    Prune,
    RequestVotes,
    Rollback,
    RoundError,
    SendPhase2,
    Snapshot,
    WriteCheckpoint,
)
from wallaroo.resilience.state_codec import decode_group
from wallaroo.resilience.store import CheckpointStore
from wallaroo.testing import Harness

TXN_A = "app-w-w1-id-0:c_id=4"
TXN_B = "app-w-w1-id-1:c_id=4"
BLOBS = ((blob_name("totals", 3), b"three"), (blob_name("totals", 17), b"seventeen"))

# Exactly what the embedded worker wrote before manifests had a version (taken from a checkpoint
# of tests/resilience/test_multisource_replay.py: one connector source, one 2PC file sink),
# without the store's blob table.
LEGACY_EMBEDDED = {
    "app": "Sequence Check",
    "generators": {},
    "hash": "crc32-utf8",
    "id": 2,
    "key_groups": 256,
    "sinks": {"checked": {"offset": 7900, "txn": "Sequence Check-w-worker-id-0:c_id=2"}},
    "sources": {"sequences": {"3166058244093749619": 10900}},
    "states": {"check sequence": [71, 94]},
    "time_ns": 1796697174951834800,
    "worker": "worker",
}
# What the Ray backend wrote (its _manifest): a generator source, a sink without 2PC (absent).
LEGACY_RAY = {
    "id": 9,
    "app": "Word Count",
    "worker": "initializer",
    "key_groups": 8,
    "hash": "crc32-utf8",
    "time_ns": 1796697174951834801,
    "states": {"totals": [0, 5]},
    "sources": {},
    "generators": {"ticks": {"started": True, "next": base64.b64encode(b"41").decode("ascii")}},
    "sinks": {},
    "backend": "ray",
    "workers": 2,
}


def embedded_round(sinks=("a", "b")) -> CheckpointRound:
    return CheckpointRound(app="app", worker="w1", key_groups=32, sinks=sinks)


def capture(**changes) -> Snapshot:
    fields = {
        "blobs": BLOBS,
        "sources": {"words": {7: 120, 8: 3}},
        "generators": {"ticks": GeneratorPosition(True, "NDE=")},
        "sinks": {"a": SinkPosition(100, TXN_A), "b": SinkPosition(0, TXN_B)},
    }
    return Snapshot(0, **{**fields, **changes})


def write(store: CheckpointStore, action: WriteCheckpoint) -> None:
    store.write(action.manifest.to_json(), action.blobs)


# -- the round -------------------------------------------------------------------------------


def test_the_commit_path_in_the_embedded_order(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    r = embedded_round()
    assert r.start(4, time_ns=123) == [Capture(4)]
    assert r.captured(capture()) == [RequestVotes(4, ("a", "b"))]
    assert r.vote("a", True) == []
    (action,) = r.vote("b", True)
    assert isinstance(action, WriteCheckpoint)
    assert r.phase is Phase.WRITING
    assert action.blobs == BLOBS
    write(store, action)
    assert r.written() == [
        SendPhase2(4, True, {"a": TXN_A, "b": TXN_B}),
        Acknowledge(4, {"words": {7: 120, 8: 3}}),
        Prune(4),
        Done(4, committed=True),
    ]
    assert r.phase is Phase.DONE
    assert r.outcome == Done(4, committed=True)

    checkpoint = store.read(4)
    manifest = Manifest.of(checkpoint)
    assert manifest == action.manifest
    assert manifest == Manifest(
        checkpoint_id=4,
        app="app",
        worker="w1",
        key_groups=32,
        time_ns=123,
        states={"totals": (3, 17)},
        sources={"words": {7: 120, 8: 3}},
        generators={"ticks": GeneratorPosition(True, "NDE=")},
        sinks={"a": SinkPosition(100, TXN_A), "b": SinkPosition(0, TXN_B)},
    )
    assert checkpoint.manifest["version"] == MANIFEST_VERSION
    assert checkpoint.blob(blob_name("totals", 17)) == b"seventeen"


def test_on_ray_votes_and_parts_arrive_in_any_order_and_blobs_follow_the_parts(
    tmp_path: Path,
) -> None:
    r = CheckpointRound(
        app="app",
        worker="w1",
        key_groups=32,
        sinks=("out", "tcp"),
        parts=3,
        votes_on_barrier=True,
        backend="ray",
        workers=2,
    )
    assert r.start(5, time_ns=1) == [Capture(5)]
    assert r.captured(Snapshot(0, sources={"words": {1: 2}})) == []
    assert r.vote("out", True, SinkPosition(9, "t5")) == []
    assert r.captured(Snapshot(2, blobs=(("state/s/7", b"7"),))) == []
    assert r.has_part(2) and not r.has_part(1) and r.has_voted("out")
    assert r.vote("tcp", True) == []  # a sink without 2PC: no transaction, not recorded
    (action,) = r.captured(Snapshot(1, blobs=(("state/s/1", b"1"), ("state/a/b/0", b"0"))))
    assert isinstance(action, WriteCheckpoint)
    assert [name for name, _ in action.blobs] == ["state/s/1", "state/a/b/0", "state/s/7"]
    assert action.manifest.states == {"s": (1, 7), "a/b": (0,)}
    assert action.manifest.sinks == {"out": SinkPosition(9, "t5")}
    write(CheckpointStore(tmp_path), action)
    assert r.written()[0] == SendPhase2(5, True, {"out": "t5"})
    data = CheckpointStore(tmp_path).read(5).manifest
    assert (data["backend"], data["workers"]) == ("ray", 2)


def test_a_sink_voting_abort_aborts_every_transaction_and_rolls_back(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    r = embedded_round()
    r.start(4, time_ns=0)
    r.captured(capture())
    assert r.vote("a", True) == []
    reason = AbortReason(AbortKind.REFUSED, ("b",))
    assert r.vote("b", False) == [
        SendPhase2(4, False, {"a": TXN_A, "b": TXN_B}),
        Rollback(4, reason),
        Done(4, committed=False, reason=reason),
    ]
    assert str(reason) == "sinks b voted abort or could not vote"
    assert store.ids() == []
    with pytest.raises(RoundError, match="while done"):
        r.written()


def test_a_timeout_aborts_the_sinks_that_voted(tmp_path: Path) -> None:
    r = CheckpointRound(
        app="app", worker="w1", key_groups=8, sinks=("a", "b"), parts=2, votes_on_barrier=True
    )
    r.start(6, time_ns=0)
    r.captured(Snapshot(0))
    r.vote("a", True, SinkPosition(1, "ta"))
    actions = r.timeout()
    reason = AbortReason(AbortKind.TIMEOUT)
    assert actions == [
        SendPhase2(6, False, {"a": "ta"}),
        Rollback(6, reason),
        Done(6, False, reason),
    ]
    assert CheckpointStore(tmp_path).ids() == []


def test_a_write_is_the_commit_point_and_cannot_time_out() -> None:
    r = embedded_round(sinks=())
    r.start(1, time_ns=0)
    actions = r.captured(capture(sinks={}))
    assert [type(a) for a in actions] == [RequestVotes, WriteCheckpoint]  # no sink to ask
    with pytest.raises(RoundError, match="a timeout while writing"):
        r.timeout()


def test_a_failed_write_aborts_and_rolls_back(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    (tmp_path / "checkpoint-000000000004.tmp").mkdir()  # where the store writes: it fails
    r = embedded_round()
    r.start(4, time_ns=0)
    r.captured(capture())
    r.vote("a", True)
    (action,) = r.vote("b", True)
    assert isinstance(action, WriteCheckpoint)
    with pytest.raises(CheckpointError, match="cannot write checkpoint") as failed:
        write(store, action)
    actions = r.write_failed(str(failed.value))
    assert actions[0] == SendPhase2(4, False, {"a": TXN_A, "b": TXN_B})
    assert isinstance(actions[1], Rollback)
    done = actions[2]
    assert isinstance(done, Done) and not done.committed and done.reason is not None
    assert done.reason.kind is AbortKind.WRITE
    assert "cannot write checkpoint" in done.reason.detail
    assert store.ids() == []


def test_a_failed_capture_before_phase1_has_nothing_to_abort() -> None:
    r = embedded_round()
    r.start(2, time_ns=0)
    reason = AbortReason(AbortKind.CAPTURE, detail="serialize() failed for key 'b'")
    assert r.captured(Snapshot(error="serialize() failed for key 'b'")) == [Done(2, False, reason)]
    with pytest.raises(RoundError):
        r.vote("a", True)


def test_on_ray_a_failed_snapshot_waits_for_the_votes_and_wins_over_refusals() -> None:
    r = CheckpointRound(
        app="app", worker="w1", key_groups=8, sinks=("a",), parts=2, votes_on_barrier=True
    )
    r.start(3, time_ns=0)
    assert r.captured(Snapshot(1, error="ValueError: no")) == []
    assert r.captured(Snapshot(0)) == []
    actions = r.vote("a", False, SinkPosition(0, "ta"))
    reason = AbortReason(AbortKind.CAPTURE, detail="ValueError: no")
    assert actions == [
        SendPhase2(3, False, {"a": "ta"}),
        Rollback(3, reason),
        Done(3, False, reason),
    ]


def test_inputs_out_of_turn_are_refused() -> None:
    r = embedded_round()
    with pytest.raises(RoundError, match="a vote while idle"):
        r.vote("a", True)
    r.start(1, time_ns=0)
    with pytest.raises(RoundError, match="while collecting"):
        r.start(2, time_ns=0)
    with pytest.raises(RoundError, match="vote of sink 'a'"):
        r.vote("a", True)  # PHASE1 not asked yet
    r.captured(capture())
    with pytest.raises(RoundError, match="part 0 is out of range or came before"):
        r.captured(capture())
    with pytest.raises(RoundError, match="no sink 'c'"):
        r.vote("c", True)
    r.vote("a", True)
    with pytest.raises(RoundError, match="vote of sink 'a'"):
        r.vote("a", True)


# -- blob names ------------------------------------------------------------------------------


def test_blob_names_round_trip() -> None:
    assert blob_name("letter state", 7) == "state/letter state/7"
    assert parse_blob_name("state/letter state/7") == ("letter state", 7)
    assert parse_blob_name(blob_name("a/b", 0)) == ("a/b", 0)


@pytest.mark.parametrize(
    "name", ["state/x", "other/x/1", "state//1", "state/x/-1", "state/x/one", "state/x/", "x"]
)
def test_a_bad_blob_name_is_a_checkpoint_error_naming_it(name: str) -> None:
    with pytest.raises(CheckpointError, match=f"checkpoint blob '{name}' is not named"):
        parse_blob_name(name)


def test_a_bad_blob_name_fails_the_capture() -> None:
    r = embedded_round()
    r.start(1, time_ns=0)
    (done,) = r.captured(capture(blobs=(("totals/3", b"x"),)))
    assert isinstance(done, Done) and done.reason is not None
    assert done.reason.kind is AbortKind.CAPTURE
    assert "checkpoint blob 'totals/3' is not named state/<state>/<key group>" in done.reason.detail


def test_blob_name_refuses_what_it_cannot_name() -> None:
    for state, group in [("", 1), ("s", -1)]:
        with pytest.raises(CheckpointError, match="no blob name"):
            blob_name(state, group)


# -- manifests -------------------------------------------------------------------------------


def test_an_unversioned_embedded_manifest_is_read_as_it_is(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.write(
        LEGACY_EMBEDDED, [("state/check sequence/71", b"a"), ("state/check sequence/94", b"b")]
    )
    manifest = Manifest.of(store.read(2))
    assert manifest == Manifest(
        checkpoint_id=2,
        app="Sequence Check",
        worker="worker",
        key_groups=256,
        hash_function="crc32-utf8",
        time_ns=1796697174951834800,
        states={"check sequence": (71, 94)},
        sources={"sequences": {3166058244093749619: 10900}},
        generators={},
        sinks={"checked": SinkPosition(7900, "Sequence Check-w-worker-id-0:c_id=2")},
        backend="embedded",
        workers=None,
        version=0,
    )
    again = manifest.to_json()
    assert again == {**LEGACY_EMBEDDED, "version": MANIFEST_VERSION, "backend": "embedded"}


def test_an_unversioned_ray_manifest_is_read_as_it_is() -> None:
    manifest = Manifest.from_json(LEGACY_RAY)
    assert (manifest.backend, manifest.workers, manifest.version) == ("ray", 2, 0)
    assert manifest.generators == {"ticks": GeneratorPosition(True, "NDE=")}
    assert manifest.to_json() == {**LEGACY_RAY, "version": MANIFEST_VERSION}


def test_a_manifest_round_trips_through_the_store(tmp_path: Path) -> None:
    manifest = Manifest(
        checkpoint_id=12,
        app="a",
        worker="w",
        key_groups=4,
        time_ns=5,
        states={"s": (0, 3)},
        sources={"src": {-1: 4, 2**63: 7}},
        generators={"g": GeneratorPosition(False, None)},
        sinks={"k": SinkPosition(3, None)},
        backend="ray",
        workers=3,
    )
    store = CheckpointStore(tmp_path)
    store.write(manifest.to_json(), [(blob_name("s", 0), b""), (blob_name("s", 3), b"3")])
    assert Manifest.of(store.read(12)) == manifest
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_a_newer_or_damaged_manifest_is_refused_with_the_field_named() -> None:
    with pytest.raises(CheckpointError, match="version 2; this wallaroo reads versions up to 1"):
        Manifest.from_json({**LEGACY_RAY, "version": 2})
    with pytest.raises(CheckpointError, match="a checkpoint: its manifest has no field 'worker'"):
        Manifest.from_json({k: v for k, v in LEGACY_RAY.items() if k != "worker"})
    with pytest.raises(CheckpointError, match="manifest field 'key_groups' is not an integer"):
        Manifest.from_json({**LEGACY_RAY, "key_groups": "8"})
    with pytest.raises(CheckpointError, match="manifest field 'sinks' is not"):
        Manifest.from_json({**LEGACY_RAY, "sinks": {"k": {"offset": 1}}})  # no txn
    with pytest.raises(CheckpointError, match="manifest field 'generators' is not"):
        Manifest.from_json({**LEGACY_RAY, "generators": {"g": {"started": False}}})
    with pytest.raises(CheckpointError, match="'backend' is 'spark'"):
        Manifest.from_json({**LEGACY_RAY, "backend": "spark"})


def test_check_names_what_does_not_match() -> None:
    manifest = Manifest.from_json(LEGACY_RAY)
    manifest.check(app="Word Count", worker="initializer", key_groups=8, where="c", reader="r")
    with pytest.raises(CheckpointError, match="belongs to application 'Word Count', worker"):
        manifest.check(app="x", worker="initializer", key_groups=8, where="c", reader="r")
    with pytest.raises(
        CheckpointError, match="uses 8 key groups hashed with crc32-utf8; r uses 16"
    ):
        manifest.check(app="Word Count", worker="initializer", key_groups=16, where="c", reader="r")


# -- the embedded worker drives it -------------------------------------------------------------


def test_the_embedded_checkpointer_writes_a_versioned_manifest(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "alphabet"))
    import alphabet

    args = ["--in", "127.0.0.1:7010", "--out", "127.0.0.1:7002"]
    h = Harness(alphabet, args)
    h.push(0, [struct.pack(">sI", b"a", 3)])
    assert h.checkpoint(tmp_path) == 1
    checkpoint = CheckpointStore(tmp_path).read(1)
    manifest = Manifest.of(checkpoint)
    assert (manifest.version, manifest.backend, manifest.worker) == (1, "embedded", "testing")
    ((state, groups),) = manifest.states.items()
    found = {}
    for group in groups:
        found.update(decode_group(checkpoint.blob(blob_name(state, group)), pickle.loads))
    assert found["a"].votes == 3
