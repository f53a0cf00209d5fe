"""The Kinesis source's positions, in-process: the state file and where a shard resumes."""

from __future__ import annotations

import json

import pytest

from wallaroo.connectors import kinesis_source as ks
from wallaroo.experimental import kinesis as kx

NONE_SEEN = 2**64 - 1


def test_the_state_file_round_trips_and_is_replaced_whole(tmp_path):
    path = tmp_path / "positions.json"
    state = kx.PositionFile(path, "clicks")
    assert state.load() == {}  # no file yet: every shard from its trim horizon
    big = str(2**100 + 7)  # sequence numbers exceed 2**64
    state.save({"shardId-0": ([(4, "40"), (9, big)], False), "shardId-1": ([], True)})
    assert state.load() == {"shardId-0": ([(4, "40"), (9, big)], False), "shardId-1": ([], True)}
    assert json.loads(path.read_text())["shards"]["shardId-0"]["acked"][-1] == [9, big]
    assert [p.name for p in tmp_path.iterdir()] == ["positions.json"]  # no temporary file left


@pytest.mark.parametrize(
    "content",
    ['{"format": 1, "stream": "other", "shards": {}}', "{not json", '{"format": 1}', "[]"],
    ids=["another stream", "not json", "no shards", "a list"],
)
def test_a_state_file_of_something_else_is_refused(tmp_path, content):
    path = tmp_path / "positions.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="is not a position file of Kinesis stream 'clicks'"):
        kx.PositionFile(path, "clicks").load()


def shard(acked=(), sent=()):
    result = ks.Shard("shardId-0", "records:clicks:shardId-0", list(acked))
    result.sent.extend(sent)
    return result


def test_a_new_shard_starts_at_the_trim_horizon_with_message_id_0():
    assert shard().resume(NONE_SEEN) == (None, 0, -1)


def test_a_worker_that_knows_nothing_gets_what_follows_the_last_acknowledged_position():
    assert shard([(4, "40"), (9, "90")], [(10, "100")]).resume(NONE_SEEN) == ("90", 10, 9)


def test_a_worker_that_has_more_than_was_acknowledged_gets_the_rest_without_repeats():
    # resume after the nearest known position at or before what the worker has; skip up to it
    assert shard([(4, "40")], [(7, "70"), (8, "80")]).resume(8) == ("80", 9, 8)
    assert shard([(4, "40")], [(7, "70"), (8, "80")]).resume(12) == ("80", 9, 12)
    assert shard([(4, "40")]).resume(6) == ("40", 5, 6)
    assert shard().resume(6) == (None, 0, 6)


def test_a_worker_that_went_back_rereads_from_there_and_forgets_later_positions():
    s = shard([(4, "40"), (9, "90")])
    assert s.resume(5) == ("40", 5, 5)
    assert s.acked == [(4, "40")]


def test_an_acknowledgement_moves_sent_positions_to_the_acknowledged_history():
    s = shard([], [(0, "1"), (1, "2"), (2, "3")])
    s.acknowledged(1)
    assert s.acked == [(1, "2")] and list(s.sent) == [(2, "3")] and s.dirty
    for i in range(3, 3 + kx.HISTORY + 5):
        s.sent.append((i, str(i + 1)))
        s.acknowledged(i)
    assert len(s.acked) == kx.HISTORY and s.acked[-1] == (kx.HISTORY + 7, str(kx.HISTORY + 8))
