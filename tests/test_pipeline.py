"""The later generation's pipeline API."""

import pytest

import wallaroo
from apps import count, first_letter, split, tcp_sink, tcp_source, text, upper
from wallaroo import WallarooParameterError
from wallaroo.testing import run


def test_each_method_returns_a_new_pipeline():
    p = wallaroo.source("p", tcp_source())
    q = p.to(upper)
    assert q is not p
    assert repr(p) == "<Pipeline 'p' open, 0 steps>"
    assert repr(q) == "<Pipeline 'p' open, 1 steps>"
    closed = q.to_sink(tcp_sink())
    assert closed.is_closed and not q.is_closed


def test_a_partial_pipeline_can_be_reused():
    base = wallaroo.source("p", tcp_source()).to(split)
    a = wallaroo.build_application("a", base.to(upper).to_sink(tcp_sink()))
    b = wallaroo.build_application("b", base.to_sink(tcp_sink()))
    assert run(a, inputs={"in": [b"x y"]}).output() == [b"X", b"Y"]
    assert run(b, inputs={"in": [b"x y"]}).output() == [b"x", b"y"]


def words_by_first_letter():
    """Source ``p``: the words of each input, keyed by their first letter."""
    return wallaroo.source("p", tcp_source()).to(split).key_by(first_letter)


def test_key_by_and_state():
    app = wallaroo.build_application("a", words_by_first_letter().to(count).to_sink(tcp_sink()))
    result = run(app, inputs={"in": [b"ab ac ba ab"]})
    assert result.output() == [b"ab:1", b"ac:2", b"ba:1", b"ab:3"]


def test_collect_sends_everything_to_one_state():
    app = wallaroo.build_application(
        "a", words_by_first_letter().to(upper).collect().to(count).to_sink(tcp_sink())
    )
    result = run(app, inputs={"in": [b"ab cd ef"]})
    assert result.output() == [b"AB:1", b"CD:2", b"EF:3"]
    assert list(result.states["count"]) == [""]


def test_state_without_key_by_uses_the_source_key():
    app = wallaroo.build_application(
        "a", wallaroo.source("p", tcp_source()).to(count).to_sink(tcp_sink())
    )
    result = run(app, inputs={"in": [b"x", b"y"]})
    assert result.output() == [b"x:1", b"y:2"]
    assert list(result.states["count"]) == ["in"]


def test_merge_interleaves_and_shares_downstream_state():
    left = wallaroo.source("L", tcp_source("l", 1)).to(split).key_by(first_letter)
    right = wallaroo.source("R", tcp_source("r", 2)).key_by(first_letter)
    app = wallaroo.build_application("m", left.merge(right).to(count).to_sink(tcp_sink()))
    result = run(app, inputs={"l": [b"a1 a2", b"b1"], "r": [b"a3", b"b2"]}, batch_size=1)
    assert result.output() == [b"a1:1", b"a2:2", b"a3:3", b"b1:1", b"b2:2"]


def test_unkeyed_merge_runs_later_stateless_steps_on_both_inputs():
    left = wallaroo.source("L", tcp_source("l", 1))
    right = wallaroo.source("R", tcp_source("r", 2)).to(split)
    app = wallaroo.build_application("m", left.merge(right).to(upper).to_sink(tcp_sink()))
    result = run(app, inputs={"l": [b"x"], "r": [b"y z"]})
    assert sorted(result.output()) == [b"X", b"Y", b"Z"]


def test_to_sinks_sends_every_output_to_every_sink():
    sinks = [
        wallaroo.TCPSinkConfig("127.0.0.1", 1, wallaroo.encoder(lambda s: s + "!")),
        wallaroo.TCPSinkConfig("127.0.0.1", 2, wallaroo.encoder(lambda s: s + "?")),
    ]
    app = wallaroo.build_application("s", wallaroo.source("p", tcp_source()).to_sinks(sinks))
    assert run(app, inputs={"in": [b"a", b"b"]}).outputs == {
        "127.0.0.1:1": [b"a!", b"b!"],
        "127.0.0.1:2": [b"a?", b"b?"],
    }


# -- misuse ----------------------------------------------------------------------------------


def test_stage_after_to_sink():
    closed = wallaroo.source("p", tcp_source()).to_sink(tcp_sink())
    with pytest.raises(WallarooParameterError, match="you can't add stages after to_sink/s"):
        closed.to(upper)


def test_build_application_on_an_open_pipeline():
    with pytest.raises(
        WallarooParameterError, match="an application must end with to_sink/s.*call .to_sink"
    ):
        wallaroo.build_application("a", wallaroo.source("p", tcp_source()).to(upper))


def test_merge_rules():
    keyed = wallaroo.source("k", tcp_source("k", 1)).key_by(first_letter)
    plain = wallaroo.source("u", tcp_source("u", 2))
    with pytest.raises(WallarooParameterError, match="can't merge a keyed pipeline"):
        keyed.merge(plain)
    with pytest.raises(WallarooParameterError, match="already ends in a sink"):
        plain.merge(keyed.to_sink(tcp_sink()))


def test_key_by_needs_a_key_extractor():
    with pytest.raises(WallarooParameterError, match="@wallaroo.key_extractor"):
        wallaroo.source("p", tcp_source()).key_by(lambda x: x)


def test_two_state_computations_with_one_name_and_two_classes():
    class A:
        pass

    class B:
        pass

    s1 = wallaroo.state_computation(name="same", state=A)(lambda d, s: d)
    s2 = wallaroo.state_computation(name="same", state=B)(lambda d, s: d)
    p = wallaroo.source("p", tcp_source()).to(s1).to(s2).to_sink(tcp_sink())
    with pytest.raises(WallarooParameterError, match="two state classes"):
        wallaroo.build_application("a", p)


def test_duplicate_source_names():
    a = wallaroo.source("a", tcp_source("same", 1))
    b = wallaroo.source("b", tcp_source("same", 2))
    with pytest.raises(WallarooParameterError, match="two sources are named 'same'"):
        wallaroo.build_application("x", a.merge(b).to_sink(tcp_sink()))


def test_source_and_to_argument_types():
    with pytest.raises(WallarooParameterError, match="takes a source config"):
        wallaroo.source("p", "not a config")
    with pytest.raises(WallarooParameterError, match="takes a computation"):
        wallaroo.source("p", tcp_source()).to(text)
