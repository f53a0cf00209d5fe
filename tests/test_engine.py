"""Engine semantics: filtering, fan-out, state, routing, dead letters, key groups."""

import json
import random
import zlib

import pytest

import wallaroo
from apps import Count, count, first_letter, seed_count, split, tcp_sink, tcp_source
from wallaroo.engine.keys import key_group
from wallaroo.engine.state import StateStore
from wallaroo.plan.compiler import compile_application
from wallaroo.testing import Harness, run

#: every test here runs on the embedded engine and on Ray (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("engine_backend")


def app_of(*steps, sink=None):
    p = wallaroo.source("p", tcp_source())
    for step in steps:
        p = step(p)
    return wallaroo.build_application("t", p.to_sink(sink or tcp_sink()))


def to(c):
    return lambda p: p.to(c)


def comp(fn, multi=False, name="c"):
    return (wallaroo.computation_multi if multi else wallaroo.computation)(name=name)(fn)


def test_none_filters_at_every_step():
    dec = wallaroo.decoder(header_length=4, length_fmt=">I")(lambda b: None if b == b"x" else b)
    app = wallaroo.build_application(
        "t",
        wallaroo.source("p", wallaroo.TCPSourceConfig("in", "h", 1, dec))
        .to(comp(lambda b: b.decode()))
        .to(comp(lambda s: None if s == "y" else s))
        .to_sink(tcp_sink()),
    )
    assert run(app, inputs={"in": [b"x", b"y", b"z"]}).output() == [b"z"]


def test_multi_drops_none_elements_and_accepts_empty_and_none():
    fan = comp(
        lambda s: None if s == "none" else [] if s == "empty" else [s, None, s + "2"], multi=True
    )
    result = run(app_of(to(fan)), inputs={"in": [b"none", b"empty", b"a"]})
    assert result.output() == [b"a", b"a2"]
    assert result.dead_letters == ()


def test_multi_returning_a_non_list_is_a_dead_letter():
    fan = comp(lambda s: s if s == "bad" else (s,), multi=True, name="fan")
    result = run(app_of(to(fan)), inputs={"in": [b"ok", b"bad", b"ok2"]})
    assert result.output() == [b"ok", b"ok2"]
    (letter,) = result.dead_letters
    assert letter.stage == "fan"
    assert "must return a list (or None), got str" in letter.message


def test_an_exception_in_user_code_kills_only_that_message():
    def explode(s):
        if s == "boom":
            raise ValueError("no booms")
        return s

    result = run(app_of(to(comp(explode, name="explode"))), inputs={"in": [b"a", b"boom", b"b"]})
    assert result.output() == [b"a", b"b"]
    (letter,) = result.dead_letters
    assert (letter.stage, letter.error_type) == ("explode", "ValueError")
    assert letter.message == "ValueError: no booms"
    assert letter.traceback.startswith("test_engine.py:")
    assert letter.payload_encoding == "pickle"


def test_a_failure_inside_a_fan_out_keeps_the_siblings():
    def picky(s):
        if s == "b":
            raise RuntimeError("not b")
        return s

    result = run(app_of(to(split), to(comp(picky, name="picky"))), inputs={"in": [b"a b c"]})
    assert result.output() == [b"a", b"c"]
    assert [d.stage for d in result.dead_letters] == ["picky"]


def test_seed_state_computation_must_return_a_pair():
    bad = wallaroo.state_computation(name="bad")(lambda d, s: d)
    ab = wallaroo.ApplicationBuilder("t")
    ab.new_pipeline("p", tcp_source()).to_stateful(bad, Count, "s").to_sink(tcp_sink())
    result = run(ab.build(), inputs={"in": [b"x"]})
    assert result.output() == []
    (letter,) = result.dead_letters
    assert "must return a tuple (output, persist), got str" in letter.message


def test_seed_state_computation_output_and_persist():
    ab = wallaroo.ApplicationBuilder("t")
    ab.new_pipeline("p", tcp_source()).to_stateful(seed_count, Count, "s").to_sink(tcp_sink())
    assert run(ab.build(), inputs={"in": [b"x", b"y"]}).output() == [b"x:1", b"y:2"]


def test_state_objects_are_created_by_calling_the_class_with_no_arguments():
    class Tracked:
        made = 0  # per process: the state objects live where their key group does

        def __init__(self):
            type(self).made += 1
            self.n = type(self).made

    c = wallaroo.state_computation(name="tracked", state=Tracked)(lambda d, s: d)
    result = run(
        app_of(to(split), lambda p: p.key_by(first_letter), to(c)),
        inputs={"in": [b"aa ab ba bb ca"]},
    )
    states = result.states["tracked"]
    assert set(states) == {"a", "b", "c"}
    assert all(isinstance(v, Tracked) or type(v).__name__ == "Tracked" for v in states.values())
    assert len({id(v) for v in states.values()}) == 3  # one object per key, each made once


def test_a_failing_state_constructor_is_a_dead_letter():
    class Broken:
        def __init__(self):
            raise OSError("no state today")

    c = wallaroo.state_computation(name="broken", state=Broken)(lambda d, s: d)
    result = run(app_of(to(c)), inputs={"in": [b"x"]})
    (letter,) = result.dead_letters
    assert "creating the state 'broken' of key 'in' failed: OSError" in letter.message


def test_encoders_str_none_and_bad_types():
    enc = wallaroo.encoder(lambda s: None if s == "skip" else 5 if s == "int" else s)
    result = run(
        app_of(sink=wallaroo.TCPSinkConfig("h", 1, enc)),
        inputs={"in": [b"a", b"skip", b"int", b"b"]},
    )
    assert result.output() == [b"a", b"b"]
    (letter,) = result.dead_letters
    assert letter.stage == "encoder of sink h:1"
    assert "must return bytes, str or None, got int" in letter.message


def test_encoder_exception_names_the_sink():
    def enc(s):
        raise KeyError(s)

    result = run(
        app_of(sink=wallaroo.TCPSinkConfig("h", 9, wallaroo.encoder(enc))), inputs={"in": [b"a"]}
    )
    assert result.dead_letters[0].stage == "encoder of sink h:9"


def test_key_extractor_failures_and_int_keys():
    ke = wallaroo.key_extractor(lambda s: 1 / 0 if s == "z" else ord(s[0]))
    result = run(app_of(to(split), lambda p: p.key_by(ke), to(count)), inputs={"in": [b"a z b a"]})
    # per key in order; across keys the order is the embedded engine's only
    assert sorted(result.output()) == [b"a:1", b"a:2", b"b:1"]
    assert [o for o in result.output() if o.startswith(b"a")] == [b"a:1", b"a:2"]
    assert result.dead_letters[0].stage.startswith("key_by(")
    assert set(result.states["count"]) == {"a", "b"}


def test_dead_letters_carry_stream_and_message_ids_and_go_to_a_jsonl_file(tmp_path):
    path = tmp_path / "dl" / "deadletter.jsonl"
    h = Harness(app_of(), dead_letter_path=str(path))
    h.engine.process(0, [b"ok", b"\xff\xfe", b"fine"], stream_id=77, message_ids=[10, 11, 12])
    h.engine.dead_letters.close()
    (line,) = path.read_text().splitlines()
    record = json.loads(line)
    assert set(record) == {
        "time",
        "worker",
        "pipeline",
        "stage",
        "stream_id",
        "message_id",
        "key",
        "error_type",
        "message",
        "traceback",
        "payload",
        "payload_encoding",
    }
    assert (record["stream_id"], record["message_id"]) == (77, 11)
    assert record["stage"] == "decoder text"
    assert record["error_type"] == "UnicodeDecodeError"
    assert record["payload"] == "//4="
    assert record["payload_encoding"] == "raw"
    assert h.result().outputs["127.0.0.1:7002"] == [b"ok", b"fine"]
    assert h.engine.statistics().dead_letters.total == 1


def test_per_key_order_is_kept_across_many_batches_and_keys(engine_backend):
    rng = random.Random(1)
    words = [f"{rng.choice('abcdefghij')}{i}" for i in range(5000)]
    result = run(
        app_of(to(split), lambda p: p.key_by(first_letter), to(count)),
        inputs={"in": [" ".join(words[i : i + 7]).encode() for i in range(0, 5000, 7)]},
        batch_size=13,
    )
    seen = {}
    for out in result.output():
        word, n = out.decode().split(":")
        seen[word[0]] = seen.get(word[0], 0) + 1
        assert int(n) == seen[word[0]]
    got = [o.decode().split(":")[0] for o in result.output()]
    if engine_backend == "embedded":  # one process: the input's order
        assert got == words
    for letter in "abcdefghij":  # every backend: each key's words in the input's order
        assert [w for w in got if w[0] == letter] == [w for w in words if w[0] == letter]


def test_key_groups_use_crc32_of_utf8():
    assert key_group("hello", 256) == zlib.crc32(b"hello") % 256
    assert key_group("€", 7) == zlib.crc32("€".encode()) % 7


def test_state_store_snapshot_restore_and_drop_by_group():
    store = StateStore("s", Count, 8, initial_keys=["a"])
    for k in "abcdefghij":
        if store.get(k) is None:
            store.create(k).n = ord(k)
    group = key_group("c", 8)
    snap = {k: v.n for k, v in store.snapshot_group(group).items()}
    assert "c" in snap and all(key_group(k, 8) == group for k in snap)
    store.drop_group(group)
    assert store.get("c") is None
    restored = {}
    for k, n in snap.items():
        restored[k] = Count()
        restored[k].n = n
    store.restore_group(group, restored)
    assert store.get("c").n == ord("c")
    assert store.statistics().keys == 10
    with pytest.raises(ValueError, match="does not belong"):
        store.restore_group((group + 1) % 8, {"c": Count()})


def test_key_group_count_is_configurable_and_recorded_in_the_plan():
    plan = compile_application(app_of(), key_groups=16)
    assert plan.key_groups == 16
    with pytest.raises(wallaroo.WallarooParameterError):
        compile_application(app_of(), key_groups=0)


def test_stateless_chains_are_fused_into_one_segment():
    plan = compile_application(app_of(to(comp(str.upper, name="u")), to(split)))
    (segment,) = plan.segments
    assert [op.name for op in segment.ops] == ["decoder text", "u", "split"]
    assert "segment 0 [source] decoder text -> u -> split => sinks '127.0.0.1:7002'" in (
        plan.describe()
    )


def test_statistics_count_messages_and_keys():
    result = run(
        app_of(to(split), lambda p: p.key_by(first_letter), to(count)), inputs={"in": [b"ab ac bd"]}
    )
    stats = result.statistics
    assert [(s.messages_in, s.messages_out) for s in stats.segments] == [(1, 3), (3, 3)]
    assert stats.states[0].keys == 2
    assert stats.sinks[0].messages == 3
    assert stats.sinks[0].bytes == len(b"ab:1ac:2bd:1")
