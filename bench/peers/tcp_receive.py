"""Play a TCP sink's peer: accept the worker's connection, count its outputs until every one
has arrived, then check them. With ``--workload w1-timed`` each output's latency is its
arrival time minus the send time it carries (arrival = when its chunk was read)."""

from __future__ import annotations

import socket
import struct
import sys
import time

from bench.peers.common import (
    RECORD,
    expected_outputs,
    peer_args,
    ready,
    report,
    usage,
    verify,
)

_TIMES = struct.Struct(">8xQ")


def receive(conn: socket.socket, want: int, record: int | None, timeout: float) -> dict:
    """Read until ``want`` outputs arrived. The arrival time of every chunk read is kept with
    the number of records complete after it; latencies are computed once the last output is
    in (:func:`latencies`), so that this loop takes as little CPU from the worker as it can."""
    data = bytearray()
    got = 0
    arrivals: list[tuple[int, int]] = []  # (time a chunk was read, records complete after it)
    first = last = 0.0
    conn.settimeout(timeout)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while got < want:
        n = conn.recv_into(buf)
        if not n:
            break
        now_ns = time.monotonic_ns()
        last = now_ns / 1e9
        first = first or last
        data += view[:n]
        if record is None:
            got += buf.count(b"\n", 0, n)
            continue
        got = len(data) // record
        arrivals.append((now_ns, got))
    return {"data": data, "got": got, "first": first, "last": last, "arrivals": arrivals}


def latencies(data: bytearray, arrivals: list[tuple[int, int]]) -> list[int]:
    """Each timed output's arrival time (that of the chunk that completed it) less the send
    time it carries, in ns, in arrival order."""
    lat: list[int] = []
    done = 0
    for now_ns, got in arrivals:
        lat += [now_ns - t for (t,) in _TIMES.iter_unpack(data[done * 16 : got * 16])]
        done = got
    return lat


def percentiles(lat: list[int], skip: float) -> dict[str, float]:
    kept = sorted(lat[int(len(lat) * skip) :])
    if not kept:
        return {}

    def at(q: float) -> float:
        return kept[min(len(kept) - 1, int(q * len(kept)))] / 1e6

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "p999_ms": at(0.999), "max_ms": kept[-1] / 1e6}


def main() -> int:
    args = peer_args(sys.argv[1:])
    want = expected_outputs(args)
    record = RECORD.get(args.workload)
    server = socket.create_server((args.bench_host, args.port))
    cpu_ready = ready()
    server.settimeout(60)
    try:
        conn, _ = server.accept()
        got = receive(conn, want, record, args.timeout)
        at_last = usage()
    except TimeoutError:
        report(ok=False, error="timed out waiting for the worker's output")
        return 1
    lat = latencies(got["data"], got["arrivals"]) if record == 16 else []
    problem = verify(args, bytes(got["data"])) if got["got"] == want else f"{got['got']} of {want}"
    fields = {
        "received": got["got"],
        "first": got["first"],
        "last": got["last"],
        "cpu": at_last["cpu"] - cpu_ready,
        "busy": at_last["busy"],
    }
    if lat:
        fields.update(percentiles(lat, args.skip))
    report(ok=problem is None, error=problem, **fields)
    return 0 if problem is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
