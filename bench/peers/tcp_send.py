"""Send a workload's messages to a framed TCP source (u32 big-endian length headers).

As fast as possible: every frame is built first, then written with ``sendall``. For
``--workload w1-timed``: W1 messages carrying their send time, written in bursts, and with
``--rate`` in bursts every ``--interval`` seconds (1 ms) so that the offered load stays at
``rate`` messages per second.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from itertools import chain, repeat

from bench.apps.celsius_timed import IN
from bench.peers.common import inputs, peer_args, ready, report

_HEADER = struct.Struct(">I")
_STAMP = struct.Struct(">Q")  # the send time that ends a timed input (">fQ")


def _connect(host: str, port: int) -> socket.socket:
    deadline = time.monotonic() + 30
    while True:
        try:
            return socket.create_connection((host, port))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def send_all(sock: socket.socket, data: list[bytes]) -> float:
    pack = _HEADER.pack
    stream = b"".join([pack(len(p)) + p for p in data])
    ready()
    start = time.monotonic()
    sock.sendall(stream)
    return start


def send_timed(sock: socket.socket, data: list[bytes], rate: float, interval: float) -> float:
    """Send ``data`` stamped with ``time.monotonic_ns()`` at their send time: at ``rate``
    messages/s, what is due every ``interval`` seconds (a burst, then a sleep), or as fast as
    possible in bursts of 4096 when ``rate`` is 0. The frames are built before the clock
    starts, all but the stamp, which each burst appends to each of its frames."""
    heads = [_HEADER.pack(IN.size) + celsius for celsius in data]  # what precedes the stamp
    stamp = _STAMP.pack
    ready()
    start = time.monotonic_ns()
    sent, total = 0, len(heads)
    while sent < total:
        now = time.monotonic_ns()
        due = min(total, int((now - start) * rate / 1e9) + 1 if rate else sent + 4096)
        if due > sent:
            burst = zip(heads[sent:due], repeat(stamp(now)))
            sock.sendall(b"".join(chain.from_iterable(burst)))
            sent = due
        if rate:
            time.sleep(interval)
    return start / 1e9


def main() -> int:
    args = peer_args(sys.argv[1:])
    data = inputs(args)
    sock = _connect(args.bench_host, args.port)
    cpu_before = time.process_time()  # the frames are built and sent from here on
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with sock:
        if args.workload == "w1-timed":
            start = send_timed(sock, data, args.rate, args.interval)
        else:
            start = send_all(sock, data)
        end = time.monotonic()
    cpu = time.process_time()
    report(ok=True, sent=len(data), start=start, end=end, cpu=cpu, cpu_sending=cpu - cpu_before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
