import sequence_check as sc

from wallaroo.testing import run


def test_in_order_input_passes_and_every_value_comes_out():
    (stream,) = sc.make_input(keys=20, per_key=50)
    result = run("sequence_check", inputs={"sequences": stream})
    assert result.dead_letters == ()
    seqs = sc.per_key(b"".join(result.outputs["checked"]))
    assert seqs == {f"k{k:03d}": list(range(50)) for k in range(20)}


def test_a_gap_and_a_duplicate_fail_loudly():
    result = run("sequence_check", inputs={"sequences": [b"a:0", b"a:1", b"a:1", b"a:3"]})
    assert [d.message for d in result.dead_letters] == [
        "SequenceError: duplicate for key a: got 1 after 1",
        "SequenceError: gap for key a: got 3 after 1",
    ]
    assert result.outputs["checked"] == [b"a:0\n", b"a:1\n"]


def test_make_input_keeps_each_key_in_one_stream_in_order():
    streams = sc.make_input(keys=10, per_key=30, streams=3, seed=4)
    seen = {}
    for i, stream in enumerate(streams):
        for payload in stream:
            key, n = payload.decode().split(":")
            assert seen.setdefault(key, (i, -1))[0] == i
            assert int(n) == seen[key][1] + 1
            seen[key] = (i, int(n))
    assert len(seen) == 10
