"""End to end: the worker, the prebuilt UDP connectors and custom connectors as real processes."""

from __future__ import annotations

import base64
import json
import signal
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from connector_apps import LATER_CELSIUS, SEED_CELSIUS
from connector_helpers import (
    REPO,
    Proc,
    Procs,
    UdpPeer,
    celsius_ports,
    fahrenheit,
    free_port,
    start_connector,
    write_module,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

CELSIUS = [float(c) for c in range(-50, 150)]  # 200 values


def start_udp_source(procs: Procs, way: str, udp_port: int, *extra: str) -> Proc:
    args = [
        "--application-module",
        "celsius",
        "--connector",
        "celsius_feed",
        "--celsius_feed-host",
        "127.0.0.1",
        "--celsius_feed-port",
        str(udp_port),
        *extra,
    ]
    return start_connector(procs, "udp_source", way, *args)


def start_udp_sink(procs: Procs, way: str, udp_port: int, *extra: str) -> Proc:
    args = [
        "--application-module",
        "celsius",
        "--connector",
        "fahrenheit_conversion",
        "--fahrenheit_conversion-host",
        "127.0.0.1",
        "--fahrenheit_conversion-port",
        str(udp_port),
        *extra,
    ]
    return start_connector(procs, "udp_sink", way, *args)


def run_celsius(procs: Procs, udp: list[UdpPeer], way: str = "executable") -> None:
    """Start udp_source, udp_sink and the worker as the seed's example does, wait until both
    connectors are connected, then send 200 Celsius values and expect every conversion."""
    feed_port = free_port(socket.SOCK_DGRAM)
    results, feed = UdpPeer(), UdpPeer()
    udp.extend([results, feed])
    source = start_udp_source(procs, way, feed_port)
    sink = start_udp_sink(procs, way, results.port)
    worker = procs.machida("celsius")
    source.wait_for("connected to the worker at")
    sink.wait_for("worker 'worker' connected")
    feed.send(feed_port, [struct.pack(">f", c) for c in CELSIUS])
    assert results.receive(len(CELSIUS)) == [fahrenheit(c) for c in CELSIUS]
    assert "ERROR" not in worker.output + source.output + sink.output


def test_the_seed_celsius_example_converts_every_value_in_order(procs, udp):
    write_module(procs.cwd, "celsius", SEED_CELSIUS)
    celsius_ports(procs)
    run_celsius(procs, udp)


def test_the_later_api_with_a_cookie_and_few_credits_converts_every_value(procs, udp):
    write_module(procs.cwd, "celsius", LATER_CELSIUS)
    celsius_ports(procs)
    run_celsius(procs, udp)


def test_first_log_line_names_the_connector_and_the_real_addresses(procs):
    write_module(procs.cwd, "celsius", SEED_CELSIUS)
    source_port, sink_port = celsius_ports(procs)
    source = start_udp_source(procs, "executable", 0)
    sink = start_udp_sink(procs, "executable", 9)
    first = source.wait_for("udp_source")
    assert source.lines[0] == first
    assert "connector 'celsius_feed'" in first
    assert "UDP on 127.0.0.1:" in first and "UDP on 127.0.0.1:0," not in first
    assert f"worker at 127.0.0.1:{source_port}" in first
    first = sink.wait_for("udp_sink")
    assert sink.lines[0] == first
    assert f"listening for the worker on 127.0.0.1:{sink_port}" in first
    assert "sending UDP to 127.0.0.1:9" in first


WAYS = ["executable", "python -m", "wallaroo connector", "copied file"]


def test_each_way_of_running_a_connector_carries_data(procs, udp):
    """One worker; for each way, a fresh udp_source and udp_sink carry 20 values, then stop
    on a signal with exit code 0. The source's stream continues where the last one ended."""
    write_module(procs.cwd, "celsius", SEED_CELSIUS)
    celsius_ports(procs)
    worker = procs.machida("celsius")
    values = [float(c) for c in range(20)]
    for round_, way in enumerate(WAYS):
        feed_port = free_port(socket.SOCK_DGRAM)
        results, feed = UdpPeer(), UdpPeer()
        udp.extend([results, feed])
        source = start_udp_source(procs, way, feed_port)
        sink = start_udp_sink(procs, way, results.port)
        connected = source.wait_for("connected to the worker at")
        assert connected.endswith(f"next message id {round_ * len(values)}"), (way, connected)
        sink.wait_for("worker 'worker' connected")
        feed.send(feed_port, [struct.pack(">f", c) for c in values])
        assert results.receive(len(values)) == [fahrenheit(c) for c in values], way
        sig = signal.SIGINT if round_ % 2 else signal.SIGTERM
        assert source.stop(sig) == 0, source.output
        assert sink.stop(sig) == 0, sink.output
    assert worker.popen.poll() is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("name", ["udp_source", "udp_sink"])
def test_a_signal_stops_a_connector_cleanly(procs, udp, name, sig):
    write_module(procs.cwd, "celsius", SEED_CELSIUS)
    celsius_ports(procs)  # no worker: the source keeps retrying, the sink keeps listening
    peer = UdpPeer()
    udp.append(peer)
    if name == "udp_source":
        proc = start_udp_source(procs, "executable", 0)
        proc.wait_for("waiting for the worker")
    else:
        proc = start_udp_sink(procs, "executable", peer.port)
        proc.wait_for("listening for the worker")
    assert proc.stop(sig) == 0, proc.output
    assert f"stopping ({signal.Signals(sig).name})" in proc.output


def test_a_missing_required_parameter_exits_2_naming_it(procs):
    write_module(procs.cwd, "celsius", SEED_CELSIUS)
    celsius_ports(procs)
    proc = procs.python(
        "udp_source",
        "-m",
        "wallaroo.connectors.udp_source",
        "--application-module",
        "celsius",
        "--connector",
        "celsius_feed",
        "--celsius_feed-host",
        "127.0.0.1",
    )
    assert proc.popen.wait(20) == 2
    proc.kill()
    assert "--celsius_feed-port" in proc.output


def test_an_unknown_connector_name_exits_2_listing_the_names(procs):
    write_module(procs.cwd, "celsius", SEED_CELSIUS)
    celsius_ports(procs)
    proc = procs.start(
        "udp_sink",
        REPO / "connectors" / "udp_sink",
        "--application-module",
        "celsius",
        "--connector",
        "nope",
        "--nope-host",
        "127.0.0.1",
        "--nope-port",
        "9",
    )
    assert proc.popen.wait(20) == 2
    proc.kill()
    assert "no sink connector named 'nope'" in proc.output
    assert "'fahrenheit_conversion'" in proc.output


def test_the_repository_executables_are_executable_scripts():
    for name in ("udp_source", "udp_sink"):
        path = REPO / "connectors" / name
        assert path.stat().st_mode & 0o111, path
        assert path.read_text().startswith("#!/usr/bin/env python3\n")


CUSTOM_APP = """
    import os

    import wallaroo
    import wallaroo.experimental


    def application_setup(args):
        ab = wallaroo.ApplicationBuilder("Who said what")
        ab.source_connector("messages", encoder=encode_message, decoder=decode_message,
                            port=int(os.environ["MESSAGES_PORT"]))
        ab.sink_connector("quotes", encoder=encode_quote, decoder=decode_quote,
                          port=int(os.environ["QUOTES_PORT"]))
        ab.new_pipeline("Quotes", "messages")
        ab.to(attribute)
        ab.to_sink("quotes")
        return ab.build()


    @wallaroo.experimental.stream_message_encoder
    def encode_message(data):
        return data


    @wallaroo.experimental.stream_message_decoder
    def decode_message(data):
        return data.decode()


    @wallaroo.computation(name="attribute")
    def attribute(message):
        return ("Alice", message)


    @wallaroo.experimental.stream_message_encoder
    def encode_quote(data):
        return "{}\\t{}".format(*data)


    @wallaroo.experimental.stream_message_decoder
    def decode_quote(data):
        author, message = data.decode().split("\\t", 1)
        return author, message
"""

# Written as the seed's "Building Your Own Connectors" section shows.
CUSTOM_SOURCE = """
    import wallaroo.experimental

    connector = wallaroo.experimental.SourceConnector(required_params=[], optional_params=[])
    connector.connect()
    connector.write("hello world")
    for i in range(99):
        connector.write("hello {}".format(i))
    connector.close()
"""

CUSTOM_SINK = """
    import wallaroo.experimental

    connector = wallaroo.experimental.SinkConnector(required_params=[], optional_params=[])
    connector.listen()
    while True:
        author, message = connector.read()
        print("{} said {}".format(author, message))
"""


def run_seed_connectors(procs, app: str, source_code: str):
    """The seed's custom sink program, ``app`` on a worker, then ``source_code`` as the source
    program, which must finish with 0; returns the sink program."""
    write_module(procs.cwd, "quotes", app)
    procs.env["MESSAGES_PORT"], procs.env["QUOTES_PORT"] = str(free_port()), str(free_port())
    source_script = write_module(procs.cwd, "my_source", source_code)
    sink_script = write_module(procs.cwd, "my_sink", CUSTOM_SINK)
    common = ["--application-module", "quotes"]
    sink = procs.python("my_sink", sink_script, *common, "--connector", "quotes")
    procs.machida("quotes")
    source = procs.python("my_source", source_script, *common, "--connector", "messages")
    assert source.popen.wait(30) == 0, source.output
    return sink


def test_custom_connectors_written_as_the_seed_shows(procs):
    sink = run_seed_connectors(procs, CUSTOM_APP, CUSTOM_SOURCE)
    sink.wait_for("Alice said hello 98")
    said = [line for line in sink.lines if " said " in line]
    assert said == ["Alice said hello world"] + [f"Alice said hello {i}" for i in range(99)]


def read_dead_letters(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# decode_quote made strict: a message with a tab in it is one field too many (ValueError).
STRICT_APP = CUSTOM_APP.replace('data.decode().split("\\t", 1)', 'data.decode().split("\\t")')

TAB_SOURCE = """
    import wallaroo.experimental

    connector = wallaroo.experimental.SourceConnector(required_params=[], optional_params=[])
    connector.connect()
    for i in range(100):
        connector.write("hello\\tthere" if i == 50 else "hello {}".format(i))
    connector.close()
"""


def test_the_seed_sink_loop_goes_on_past_an_output_its_decoder_rejects(procs):
    assert STRICT_APP != CUSTOM_APP
    sink = run_seed_connectors(procs, STRICT_APP, TAB_SOURCE)
    sink.wait_for("Alice said hello 99")
    time.sleep(0.2)  # room for a duplicate to show
    said = [line for line in sink.lines if " said " in line]
    assert said == [f"Alice said hello {i}" for i in range(100) if i != 50]
    assert sink.popen.poll() is None, sink.output  # the loop goes on
    path = procs.cwd / "wallaroo-deadletter" / "quotes-sink.jsonl"
    (letter,) = read_dead_letters(path)
    assert base64.b64decode(letter["payload"]) == b"Alice\thello\tthere"
    assert (letter["worker"], letter["pipeline"], letter["stage"], letter["error_type"]) == (
        "worker", "Quotes", "sink decoder decode_quote", "ValueError",
    )  # fmt: skip
    assert letter["message_id"] == sum(len(f"Alice\thello {i}") for i in range(50))
    warning = sink.wait_for("dead letter at")
    assert f"kept in {path}" in warning


# decode_conversion rejects the conversion of 100 °C.
REJECTING_CELSIUS = SEED_CELSIUS.replace(
    "    def decode_conversion(data):\n",
    "    def decode_conversion(data):\n"
    "        if data == b'212.0':\n"
    "            raise ValueError('boiling')\n",
)


def test_udp_sink_keeps_an_output_its_decoder_rejects_as_a_dead_letter(procs, udp):
    assert REJECTING_CELSIUS != SEED_CELSIUS
    write_module(procs.cwd, "celsius", REJECTING_CELSIUS)
    celsius_ports(procs)
    feed_port = free_port(socket.SOCK_DGRAM)
    results, feed = UdpPeer(), UdpPeer()
    udp.extend([results, feed])
    path = procs.cwd / "letters" / "udp.jsonl"
    source = start_udp_source(procs, "executable", feed_port)
    sink = start_udp_sink(
        procs, "executable", results.port, "--fahrenheit_conversion-deadletter_path", str(path)
    )
    procs.machida("celsius")
    source.wait_for("connected to the worker at")
    sink.wait_for("worker 'worker' connected")
    values = [float(c) for c in range(95, 106)]
    feed.send(feed_port, [struct.pack(">f", c) for c in values])
    expected = [fahrenheit(c) for c in values if c != 100.0]
    assert results.receive(len(expected)) == expected
    assert results.receive(1, timeout=0.2) == []
    (letter,) = read_dead_letters(path)
    assert base64.b64decode(letter["payload"]) == b"212.0"
    assert (letter["worker"], letter["message"]) == ("worker", "boiling")
    assert sink.wait_for("dead letter at").endswith("(more are summarised every 10 s)")
    assert sink.stop() == 0, sink.output
