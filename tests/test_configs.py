import pytest

import wallaroo
import wallaroo.experimental as wx
from wallaroo.errors import WallarooParameterError


@wallaroo.decoder(header_length=4, length_fmt=">I")
def dec(b):
    return b


@wallaroo.encoder
def enc(x):
    return x


class Gen:
    def initial_value(self):
        return 0

    def apply(self, last):
        return None


def test_tcp_source_config_seed_form():
    c = wallaroo.TCPSourceConfig("127.0.0.1", "7010", dec)
    assert (c.name, c.host, c.port, c.decoder) == (None, "127.0.0.1", 7010, dec)
    assert c.parallelism == 10


def test_tcp_source_config_later_form():
    c = wallaroo.TCPSourceConfig("in", "127.0.0.1", 7010, dec, True, 4, 1024, 7)
    assert (c.name, c.port, c.parallelism, c.max_size, c.max_received_count) == (
        "in",
        7010,
        4,
        1024,
        7,
    )
    c2 = wallaroo.TCPSourceConfig(name="in", host="h", port=1, decoder=dec)
    assert c2.name == "in"
    c3 = wallaroo.TCPSourceConfig("h", 1, dec, name="named")
    assert (c3.name, c3.host, c3.port) == ("named", "h", 1)


def test_tcp_source_config_errors():
    with pytest.raises(WallarooParameterError, match="port must be a number"):
        wallaroo.TCPSourceConfig("127.0.0.1", "http", dec)
    with pytest.raises(WallarooParameterError, match="needs a decoder"):
        wallaroo.TCPSourceConfig("127.0.0.1", 1, enc)
    with pytest.raises(WallarooParameterError, match="missing decoder"):
        wallaroo.TCPSourceConfig(name="x", host="h", port=1)
    with pytest.raises(WallarooParameterError, match="unexpected argument"):
        wallaroo.TCPSourceConfig("h", 1, dec, colour="red")


def test_gen_source_config_both_forms():
    g = Gen()
    assert wallaroo.GenSourceConfig(g).name is None
    assert wallaroo.GenSourceConfig("gen", g).name == "gen"
    with pytest.raises(WallarooParameterError, match="initial_value"):
        wallaroo.GenSourceConfig(object())


def test_connector_configs_defaults():
    src = wx.SourceConnectorConfig("feed", encoder=enc, decoder=dec, port=7100)
    assert (src.cookie, src.max_credits, src.refill_credits, src.host) == (
        "",
        4096,
        1024,
        "127.0.0.1",
    )
    sink = wx.SinkConnectorConfig("out", enc, dec, 7200, "Dragons-Love-Tacos")
    assert (sink.cookie, sink.host) == ("Dragons-Love-Tacos", "127.0.0.1")
    with pytest.raises(WallarooParameterError, match="refill_credits"):
        wx.SourceConnectorConfig("feed", enc, dec, 7100, max_credits=10, refill_credits=10)


def test_tcp_parse_addrs_both_forms():
    args = [
        "prog",
        "--in",
        "Split and Count@127.0.0.1:7010,127.0.0.1:7011",
        "-o",
        "127.0.0.1:7002",
        "--unknown",
        "x",
    ]
    assert wallaroo.tcp_parse_input_addrs(args) == [
        ("Split and Count", "127.0.0.1", "7010"),
        ("127.0.0.1", "7011"),
    ]
    assert wallaroo.tcp_parse_output_addrs(args) == [("127.0.0.1", "7002")]


def test_tcp_parse_addrs_errors_name_the_flag():
    with pytest.raises(WallarooParameterError, match="needs --in"):
        wallaroo.tcp_parse_input_addrs([])
    with pytest.raises(WallarooParameterError, match="--out expects host:port"):
        wallaroo.tcp_parse_output_addrs(["--out", "nohost"])
