"""parse_connector_args, stream ids, and the names the connector modules export."""

from __future__ import annotations

import hashlib

import pytest

import wallaroo.experimental as wx
from wallaroo.errors import WallarooParameterError
from wallaroo.experimental import connector_wire_messages as cwm
from wallaroo.experimental import connectors, program

pytestmark = pytest.mark.timeout(30)


def test_parameters_carry_the_connector_name_as_prefix():
    params = wx.parse_connector_args(
        [
            "--application-module",
            "celsius",
            "--connector",
            "celsius_feed",
            "--celsius_feed-host",
            "127.0.0.1",
            "--celsius_feed-port",
            "6789",
        ],
        ["host", "port"],
        ["instance"],
    )
    assert params.application == "celsius"
    assert params.connector_name == "celsius_feed"
    assert (params.host, params.port, params.instance) == ("127.0.0.1", "6789", None)


def test_unknown_arguments_and_a_program_name_are_ignored():
    params = wx.parse_connector_args(
        [
            "udp_source",
            "--connector=feed",
            "--application-module",
            "app",
            "--metrics",
            "127.0.0.1:5001",
            "--other-host",
            "x",
            "--feed-host",
            "h",
        ],
        ["host"],
    )
    assert (params.connector_name, params.host) == ("feed", "h")


def test_a_missing_required_parameter_exits_2_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        wx.parse_connector_args(
            ["--application-module", "app", "--connector", "feed", "--feed-host", "h"],
            ["host", "port"],
        )
    assert exc.value.code == 2
    assert "--feed-port" in capsys.readouterr().err


def test_application_module_and_connector_are_required(capsys):
    with pytest.raises(SystemExit) as exc:
        wx.parse_connector_args([], [], [])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--application-module" in err and "--connector" in err


@pytest.mark.parametrize(
    ("required", "optional", "match"),
    [
        ("host", (), "list of parameter names"),
        (["-host"], (), "leading '-'"),
        (["application"], (), "reserved"),
        (["host"], ["host"], "listed twice"),
    ],
)
def test_bad_parameter_lists_are_rejected(required, optional, match):
    with pytest.raises(WallarooParameterError, match=match):
        wx.parse_connector_args(
            ["--application-module", "a", "--connector", "c"], required, optional
        )


def test_stream_ids_are_the_first_8_bytes_of_sha256_big_endian():
    digest = hashlib.sha256(b"celsius_feed").digest()
    assert wx.stream_id_for("celsius_feed") == int.from_bytes(digest[:8], "big")
    assert wx.stream_id_for("celsius_feed") == wx.stream_id_for(b"celsius_feed")
    assert wx.stream_id_for("celsius_feed") == 16609366183889133447  # stable across versions


def test_the_experimental_facade_exports_the_connector_library():
    assert set(wx.__all__) == {
        "AtLeastOnceSourceConnector",
        "ConnectorError",
        "ProtocolError",
        "SinkConnector",
        "SinkConnectorConfig",
        "SinkRecovery",
        "SourceConnector",
        "SourceConnectorConfig",
        "Stream",
        "SpooledSink",
        "Transaction",
        "TransactionalSink",
        "UnexpectedSocketError",
        "find_sink_connector",
        "find_source_connector",
        "octet_message_decoder",
        "octet_message_encoder",
        "parse_connector_args",
        "stream_id_for",
        "stream_message_decoder",
        "stream_message_encoder",
        # the toolkit of connector programs (wallaroo.experimental.program)
        "LOG_FORMAT",
        "Backoff",
        "ProgramRun",
        "Stop",
        "UsageError",
        "as_bytes",
        "configure_logging",
        "first_line",
        "import_client",
        "port_number",
        "positive_number",
        "read_outputs",
        "read_remaining",
        "send_forever",
        "to_bytes",
        "wait_for_worker",
        # rate-limited log lines and peer text made safe for them (wallaroo.logsummary)
        "LogSummary",
        "clip",
    }
    for name in program.__all__:  # the toolkit's public names, all re-exported as they are
        assert getattr(wx, name) is getattr(program, name)


def test_the_original_module_paths_are_importable():
    assert set(connectors.__all__) == {
        "BaseIter",
        "BaseSource",
        "FramedFileReader",
        "MultiSourceConnector",
        "ThrottledFileReader",
    }
    assert issubclass(connectors.MultiSourceConnector, wx.AtLeastOnceSourceConnector)
    for name in (
        "Hello",
        "Ok",
        "Error",
        "Notify",
        "NotifyAck",
        "Message",
        "Ack",
        "Restart",
        "EosMessage",
        "ListUncommitted",
        "ReplyUncommitted",
        "TwoPCPhase1",
        "TwoPCReply",
        "TwoPCPhase2",
        "WorkersLeft",
        "Frame",
    ):
        assert name in cwm.__all__, name
    hello = cwm.Hello("0.0.1", "cookie", "program", "instance")
    assert cwm.Frame.decode(cwm.Frame.encode(hello)) == hello
    assert cwm.Frame.decode(hello.encode()) == hello
