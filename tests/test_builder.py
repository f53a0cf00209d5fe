"""The seed generation's ApplicationBuilder: structure, semantics and misuse."""

import pytest

import wallaroo
import wallaroo.experimental as wx
from apps import Count, plain, seed_count, split, text, text_payload, upper
from wallaroo import WallarooParameterError
from wallaroo.testing import run


def builder():
    ab = wallaroo.ApplicationBuilder("app")
    ab.source_connector("in", encoder=wx.stream_message_encoder(lambda x: x), decoder=text_payload)
    ab.sink_connector("out", encoder=plain, decoder=text_payload)
    return ab


def test_methods_chain_and_build_an_application():
    app = builder().new_pipeline("p", "in").to(upper).to_sink("out").build()
    assert app.name == "app"
    assert [c.name for c in app.source_connectors] == ["in"]
    assert [c.port for c in app.sink_connectors] == [7200]


def test_default_ports_follow_declaration_order_and_explicit_ports_stay():
    ab = wallaroo.ApplicationBuilder("app")
    enc = wx.stream_message_encoder(lambda x: x)
    ab.source_connector("a", encoder=enc, decoder=text_payload)
    ab.source_connector("b", encoder=enc, decoder=text_payload, port=9000)
    ab.source_connector("c", encoder=enc, decoder=text_payload)
    ab.sink_connector("d", encoder=enc, decoder=text_payload)
    ab.sink_connector("e", encoder=enc, decoder=text_payload)
    ab.new_pipeline("p", "a").to_sinks(["d", "e"]).new_pipeline("q", "b").done()
    ab.new_pipeline("r", "c").done()
    app = ab.build()
    assert [c.port for c in app.source_connectors] == [7100, 9000, 7102]
    assert [c.port for c in app.sink_connectors] == [7200, 7201]


def test_to_stateful_is_one_shared_state_across_pipelines():
    ab = builder()
    ab.source_connector("in2", encoder=wx.stream_message_encoder(lambda x: x), decoder=text_payload)
    ab.new_pipeline("p1", "in").to_stateful(seed_count, Count, "shared").to_sink("out")
    ab.new_pipeline("p2", "in2").to_stateful(seed_count, Count, "shared").done()
    result = run(ab.build(), inputs={"in": [b"a", b"b"], "in2": [b"c"]})
    # One state object for every message of both pipelines; only p1 has a sink.
    assert result.outputs["out"] == [b"a:1", b"b:2"]
    assert list(result.states["shared"]) == ["shared"]
    assert result.states["shared"]["shared"].n == 3


def test_to_state_partition_with_and_without_key_list():
    for keys in (None, ["a", "b"]):
        ab = builder().new_pipeline("p", "in").to(split)
        ab.to_state_partition(
            seed_count, Count, "by letter", wallaroo.partition(lambda s: s[0]), keys
        )
        result = run(ab.to_sink("out").build(), inputs={"in": [b"ab ac ba zz"]})
        assert result.outputs["out"] == [b"ab:1", b"ac:2", b"ba:1", b"zz:1"]
        assert set(result.states["by letter"]) == {"a", "b", "z"}


def test_to_parallel_is_stateless():
    ab = builder().new_pipeline("p", "in").to_parallel(upper).to_sink("out")
    assert run(ab.build(), inputs={"in": [b"x"]}).outputs["out"] == [b"X"]


def test_tcp_configs_in_the_builder():
    ab = wallaroo.ApplicationBuilder("tcp")
    ab.new_pipeline("p", wallaroo.TCPSourceConfig("127.0.0.1", 7010, text))
    ab.to(upper).to_sink(wallaroo.TCPSinkConfig("127.0.0.1", 7002, plain))
    assert run(ab.build(), inputs={"p": [b"hi"]}).outputs == {"127.0.0.1:7002": [b"HI"]}


# -- misuse ----------------------------------------------------------------------------------


def test_step_before_new_pipeline():
    with pytest.raises(WallarooParameterError, match=r"to\(\) must follow new_pipeline"):
        builder().to(upper)


def test_stage_after_to_sink():
    ab = builder().new_pipeline("p", "in").to_sink("out")
    with pytest.raises(
        WallarooParameterError, match=r"to\(\) cannot follow the end of pipeline 'p'.*new_pipeline"
    ):
        ab.to(upper)


def test_no_sink_at_all():
    with pytest.raises(WallarooParameterError, match="no pipeline has a sink.*to_sink"):
        builder().new_pipeline("p", "in").to(upper).done().build()


def test_open_pipeline_at_build():
    with pytest.raises(WallarooParameterError, match="'p' has no end; finish it with to_sink"):
        builder().new_pipeline("p", "in").to(upper).build()


def test_new_pipeline_while_one_is_open():
    with pytest.raises(WallarooParameterError, match="'p' is still open"):
        builder().new_pipeline("p", "in").new_pipeline("q", "in")


def test_state_name_reused_with_another_class():
    class Other:
        pass

    ab = builder().new_pipeline("p", "in").to_stateful(seed_count, Count, "s").done()
    ab.source_connector("in2", encoder=plain, decoder=text_payload)
    ab.new_pipeline("q", "in2").to_stateful(seed_count, Other, "s").to_sink("out")
    with pytest.raises(
        WallarooParameterError, match="state 's' is used with two state classes.*its own name"
    ):
        ab.build()


def test_partition_keys_must_agree_and_be_unique():
    part = wallaroo.partition(lambda s: s)
    with pytest.raises(WallarooParameterError, match="must be unique; repeated: 'a'"):
        builder().new_pipeline("p", "in").to_state_partition(
            seed_count, Count, "s", part, ["a", "a"]
        )
    ab = builder().new_pipeline("p", "in").to_state_partition(seed_count, Count, "s", part, ["a"])
    ab.done()
    ab.source_connector("in2", encoder=plain, decoder=text_payload)
    ab.new_pipeline("q", "in2").to_state_partition(seed_count, Count, "s", part, ["b"])
    with pytest.raises(WallarooParameterError, match="two different key lists"):
        ab.to_sink("out").build()


def test_undecorated_functions_are_refused_with_the_decorator_to_use():
    with pytest.raises(WallarooParameterError, match=r"@wallaroo.computation\(name=...\)"):
        builder().new_pipeline("p", "in").to(lambda x: x)
    with pytest.raises(WallarooParameterError, match="@wallaroo.partition"):
        builder().new_pipeline("p", "in").to_state_partition(seed_count, Count, "s", lambda x: x)
    with pytest.raises(WallarooParameterError, match="state_computation"):
        builder().new_pipeline("p", "in").to_stateful(upper, Count, "s")


def test_unknown_connector_names_list_the_declared_ones():
    with pytest.raises(WallarooParameterError, match="no source connector named 'nope'.*'in'"):
        builder().new_pipeline("p", "nope")
    with pytest.raises(WallarooParameterError, match="no sink connector named 'nope'.*'out'"):
        builder().new_pipeline("p", "in").to_sink("nope")


def test_connector_names_are_unique():
    with pytest.raises(WallarooParameterError, match="already declared"):
        builder().sink_connector("in", encoder=plain, decoder=text_payload)


def test_seed_state_computation_via_to_needs_a_state_class():
    with pytest.raises(WallarooParameterError, match="has no state class"):
        builder().new_pipeline("p", "in").to(seed_count)


def test_wrong_config_types():
    with pytest.raises(WallarooParameterError, match="takes a source config"):
        builder().new_pipeline("p", 42)
    with pytest.raises(WallarooParameterError, match="takes a sink config"):
        builder().new_pipeline("p", "in").to_sink(wallaroo.TCPSourceConfig("h", 1, text))
