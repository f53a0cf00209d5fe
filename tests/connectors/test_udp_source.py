"""udp_source with the seed's celsius example, as real processes: datagrams are sent on at once
(no batch waits for more), empty datagrams are skipped and counted, a port in use is named."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from connector_apps import SEED_CELSIUS
from connector_helpers import (
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


def start_udp_source(procs: Procs, udp_port: int) -> Proc:
    return start_connector(
        procs, "udp_source", "python -m",
        "--application-module", "celsius", "--connector", "celsius_feed",
        "--celsius_feed-host", "127.0.0.1", "--celsius_feed-port", str(udp_port),
    )  # fmt: skip


def start_celsius(procs: Procs, udp: list[UdpPeer]) -> tuple[int, UdpPeer, Proc, Proc]:
    """udp_source, udp_sink and the worker of the seed's celsius app, both connectors
    connected; returns the port to send Celsius datagrams to, the peer the Fahrenheit values
    arrive at, and the source and worker processes."""
    write_module(procs.cwd, "celsius", SEED_CELSIUS)
    celsius_ports(procs)
    feed_port = free_port(socket.SOCK_DGRAM)
    results = UdpPeer()
    udp.append(results)
    source = start_udp_source(procs, feed_port)
    sink = start_connector(
        procs, "udp_sink", "python -m",
        "--application-module", "celsius", "--connector", "fahrenheit_conversion",
        "--fahrenheit_conversion-host", "127.0.0.1",
        "--fahrenheit_conversion-port", str(results.port),
    )  # fmt: skip
    worker = procs.machida("celsius")
    source.wait_for("connected to the worker at")
    sink.wait_for("worker 'worker' connected")
    return feed_port, results, source, worker


class Arrivals:
    """Records when each datagram arrives at ``peer`` (a thread, until ``count`` came)."""

    def __init__(self, peer: UdpPeer, count: int) -> None:
        self.times: dict[bytes, float] = {}
        self._thread = threading.Thread(target=self._run, args=(peer, count), daemon=True)
        self._thread.start()

    def _run(self, peer: UdpPeer, count: int) -> None:
        peer.sock.settimeout(15.0)
        try:
            while len(self.times) < count:
                data = peer.sock.recv(65535)
                self.times.setdefault(data, time.monotonic())
        except TimeoutError:
            return

    def join(self) -> dict[bytes, float]:
        self._thread.join(20.0)
        return self.times


def test_the_seed_celsius_app_through_udp_source_at_100_datagrams_a_second_has_low_latency(
    procs, udp
):
    """At 100 datagrams/s for 2 s every value arrives converted within 150 ms (p99); a batch
    that waited for 1,024 datagrams or 0.2 s of silence held these for seconds."""
    feed_port, results, _, _ = start_celsius(procs, udp)
    values = [float(c) for c in range(200)]
    arrivals = Arrivals(results, len(values))
    sent: dict[bytes, float] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        start = time.monotonic()
        for i, c in enumerate(values):
            time.sleep(max(0.0, start + i / 100 - time.monotonic()))
            sent[fahrenheit(c)] = time.monotonic()
            out.sendto(struct.pack(">f", c), ("127.0.0.1", feed_port))
    got = arrivals.join()
    assert set(got) == set(sent), f"{len(got)} of {len(sent)} values arrived"
    latencies = sorted(got[value] - sent[value] for value in sent)
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    assert p99 < 0.150, f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"


def test_empty_datagrams_are_skipped_counted_and_logged_once(procs, udp):
    """An empty datagram carries no message: nothing reaches the worker for it (no dead
    letter), the values around it go through, and the log has one line for the first and the
    total when the program stops."""
    feed_port, results, source, worker = start_celsius(procs, udp)
    sender = UdpPeer()
    udp.append(sender)
    values = [float(c) for c in range(10)]
    datagrams = [b""] * 5 + [d for c in values for d in (struct.pack(">f", c), b"", b"")]
    sender.send(feed_port, datagrams)
    assert results.receive(len(values)) == [fahrenheit(c) for c in values]
    assert source.stop() == 0, source.output
    lines = [line for line in source.lines if "empty datagram" in line]
    assert len(lines) == 2, source.output
    first, total = lines
    assert "WARNING" in first
    assert f"an empty datagram from 127.0.0.1:{sender.port} to 127.0.0.1:{feed_port}" in first
    assert total.endswith(f"127.0.0.1:{feed_port}: 25 empty datagrams skipped in all"), total
    assert not (procs.cwd / "wallaroo-deadletter").exists(), "an empty datagram was sent on"
    assert "ERROR" not in worker.output


def test_a_port_in_use_is_named_with_its_flags(procs):
    write_module(procs.cwd, "celsius", SEED_CELSIUS)
    celsius_ports(procs)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        source = start_udp_source(procs, port)
        assert source.popen.wait(20) == 1, source.output
    source.kill()
    error = next(line for line in source.lines if "ERROR" in line)
    assert f"127.0.0.1:{port}" in error, error
    assert "--celsius_feed-host" in error and "--celsius_feed-port" in error, error
    assert "Address already in use" in error, error
