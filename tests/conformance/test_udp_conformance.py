"""The conformance checks of wallaroo.testing, run against the UDP connectors."""

import socket
import threading

import pytest
from conformance_helpers import SOURCE_STEPS, numbered

from wallaroo.testing import (
    ConformanceError,
    check_sink_connector,
    check_source_connector,
    python_module_command,
)


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_udp_source_conforms():
    port = free_udp_port()
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def feed(start, count):
        payloads = numbered("datagram", start, count)
        for p in payloads:
            out.sendto(p, ("127.0.0.1", port))
        return payloads

    try:
        report = check_source_connector(
            python_module_command("wallaroo.connectors.udp_source"),
            feed,
            params={"host": "127.0.0.1", "port": str(port)},
        )
    finally:
        out.close()
    assert report.steps == SOURCE_STEPS
    assert report.connections == 3
    assert report.messages >= 150


@pytest.mark.slow
def test_udp_sink_conforms():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.1)
    got = set()
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            try:
                got.add(receiver.recv(65536))
            except TimeoutError:
                continue

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        report = check_sink_connector(
            python_module_command("wallaroo.connectors.udp_sink"),
            lambda sent: set(sent) <= got,
            params={"host": "127.0.0.1", "port": str(receiver.getsockname()[1])},
        )
    finally:
        stop.set()
        thread.join()
        receiver.close()
    assert "answers two-phase commit" in report.steps
    assert report.connections == 2


@pytest.mark.slow
def test_a_connector_that_never_connects_fails_with_the_step_named(tmp_path):
    silent = tmp_path / "silent.py"
    silent.write_text("import time\ntime.sleep(60)\n")
    with pytest.raises(ConformanceError, match="failed step 'handshake'"):
        check_source_connector(
            ["python3", str(silent)], lambda s, c: [], timeout=1.0, name="silent"
        )
