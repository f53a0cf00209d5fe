"""A connector program's ``--help``: its own name in the usage line however it was started, and
a line of help for every parameter."""

from __future__ import annotations

import subprocess
import sys

import pytest
from connector_helpers import BIN, REPO

WAYS = {
    "executable": [sys.executable, str(REPO / "connectors" / "udp_source")],
    "python -m": [sys.executable, "-m", "wallaroo.connectors.udp_source"],
    "wallaroo connector": [str(BIN / "wallaroo"), "connector", "udp_source"],
}


@pytest.mark.parametrize("way", sorted(WAYS))
def test_the_usage_line_names_the_program_and_every_flag_has_help(way):
    out = subprocess.run(
        [*WAYS[way], "--connector", "celsius_feed", "--help"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: udp_source "), out.stdout
    assert "udp_source.py" not in out.stdout
    text = " ".join(out.stdout.split())  # argparse wraps the help lines
    assert "--celsius_feed-host HOST the address to listen on for UDP" in text
    assert "--celsius_feed-port PORT the UDP port to listen on" in text
    assert "--celsius_feed-instance INSTANCE names the stream" in text


def test_a_sink_program_gets_the_common_help_texts():
    out = subprocess.run(
        [sys.executable, "-m", "wallaroo.connectors.udp_sink", "--connector", "c", "--help"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert out.stdout.startswith("usage: udp_sink "), out.stdout
    text = " ".join(out.stdout.split())
    assert (
        "--c-host HOST the host" in text and "--c-deadletter_path DEADLETTER_PATH the JSON" in text
    )
    assert "--c-port PORT the port of that address" in text
