"""wallaroo.testing: the ways to name an application, feed it and read it back."""

import struct
import sys
import types

import pytest

import wallaroo
import wallaroo.experimental as wx
from apps import tcp_sink, tcp_source
from wallaroo.errors import ConfigurationError, WallarooParameterError
from wallaroo.testing import Harness, MockClock, run

#: every test here runs on the embedded engine and on Ray (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("engine_backend")


def setup_fn(args):
    return wallaroo.build_application("t", wallaroo.source("p", tcp_source()).to_sink(tcp_sink()))


def test_application_by_function_module_module_name_and_object():
    module = types.ModuleType("harness_app_mod")
    module.application_setup = setup_fn
    sys.modules["harness_app_mod"] = module
    try:
        for target in (setup_fn, module, "harness_app_mod", setup_fn([])):
            assert run(target, inputs={"in": [b"x"]}).output() == [b"x"]
    finally:
        del sys.modules["harness_app_mod"]


def test_args_reach_application_setup():
    seen = []

    def setup(args):
        seen.append(args)
        return setup_fn(args)

    run(setup, args=["--flag", "1"])
    assert seen == [["--flag", "1"]]


def test_bad_targets_give_clear_errors():
    with pytest.raises(ConfigurationError, match="cannot import application module 'nope_nope'"):
        run("nope_nope")
    module = types.ModuleType("no_setup")
    with pytest.raises(ConfigurationError, match="has no application_setup"):
        run(module)
    with pytest.raises(WallarooParameterError, match="must return ab.build()"):
        run(lambda args: 42)


def test_non_bytes_inputs_go_through_the_connector_encoder():
    enc = wx.stream_message_encoder(lambda v: struct.pack(">I", v))
    dec = wx.stream_message_decoder(lambda b: struct.unpack(">I", b)[0])
    out_enc = wx.stream_message_encoder(lambda v: str(v))
    out_dec = wx.stream_message_decoder(lambda b: int(b))
    app = wallaroo.build_application(
        "t",
        wallaroo.source("p", wx.SourceConnectorConfig("feed", enc, dec, 7100))
        .to(wallaroo.computation(name="inc")(lambda x: x + 1))
        .to_sink(wx.SinkConnectorConfig("out", out_enc, out_dec, 7200)),
    )
    result = run(app, inputs={"feed": [1, 2, struct.pack(">I", 3)]})
    assert result.outputs["out"] == [b"2", b"3", b"4"]
    assert result.decoded("out") == [2, 3, 4]


def test_generator_sources_stop_at_none_or_limit():
    class Counter:
        def __init__(self, stop):
            self.stop = stop

        def initial_value(self):
            return 0

        def apply(self, last):
            return None if last + 1 == self.stop else last + 1

    def app(stop):
        return wallaroo.build_application(
            "g",
            wallaroo.source("p", wallaroo.GenSourceConfig("gen", Counter(stop))).to_sink(
                tcp_sink()
            ),
        )

    assert run(app(5)).output() == [b"0", b"1", b"2", b"3", b"4"]
    assert len(run(app(None), gen_limit=2500, batch_size=1000).output()) == 2500
    with pytest.raises(ValueError, match="generator source"):
        run(app(3), inputs={"gen": [1]})


def test_unknown_source_names_list_the_known_ones():
    with pytest.raises(KeyError, match="sources: 'in'"):
        run(setup_fn, inputs={"nope": [b"x"]})


@pytest.mark.embedded_only  # a mock clock drives this process's engine only
def test_mock_clock_timestamps_dead_letters():
    clock = MockClock(start_ns=0)
    clock.advance(1_500_000_000)
    boom = wallaroo.computation(name="boom")(lambda x: 1 / 0)
    h = Harness(
        wallaroo.build_application(
            "t", wallaroo.source("p", tcp_source()).to(boom).to_sink(tcp_sink())
        ),
        clock=clock,
    )
    h.push("in", [b"x"])
    assert h.result().dead_letters[0].time == "1970-01-01T00:00:01.500000Z"
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    clock.set(2_000_000_000)
    assert clock.now_ns() == clock.monotonic_ns() == 2_000_000_000
