"""Probe latency through a large keyed state while checkpoints run: does a checkpoint stall
processing?

``python -m bench.state_probe [--keys N] [--rate R] [--seconds S] [--no-resilience]``

One ``machida`` runs ``bench.apps.probe_state`` with ``--run-with-resilience`` and a checkpoint
every second (the default interval). The benchmark fills ``--keys`` keys through TCP, waits for
the first checkpoints, then sends probes at ``--rate`` per second for ``--seconds``: each
updates a random existing key and comes back through the TCP sink, timed from its send to its
arrival. It prints the probes' p50, p99 and max latency, the checkpoints committed meanwhile,
and the worker's peak RSS. ``--no-resilience`` gives the same run without checkpoints (the
floor).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

from bench import proc
from bench.ray_latency import Sink, _connect, _q
from wallaroo.resilience.store import CheckpointStore

APP = "bench.apps.probe_state"
NUMBER = struct.Struct(">Q")
FILL_CHUNK = 50_000


def _frames(kind: bytes, numbers: range | list[int]) -> bytes:
    return b"".join((9).to_bytes(4, "big") + kind + NUMBER.pack(n) for n in numbers)


def run(keys: int, rate: float, seconds: float, resilient: bool) -> dict[str, float]:
    """One run; its figures (latencies in ms)."""
    sink = Sink()
    port = proc.free_port()
    os.environ.update(
        WALLAROO_BENCH_SOURCE=f"127.0.0.1:{port}",
        WALLAROO_BENCH_SINK=f"127.0.0.1:{sink.port}",
        WALLAROO_BENCH_KEYS=str(keys),
    )
    procs = proc.Procs()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "worker.log"
        flags = ["--run-with-resilience", "--resilience-dir", tmp] if resilient else []
        machida = str(Path(proc.PYTHON).parent / "machida")
        worker = procs.start([machida, "--application-module", APP, *flags], log)
        try:
            sock = _connect(port, worker)
            started = time.monotonic()
            for low in range(0, keys, FILL_CHUNK):
                sock.sendall(_frames(b"f", range(low, min(keys, low + FILL_CHUNK))))
            marker = 1 << 62  # a probe after the fill: back once every key exists
            sock.sendall(_frames(b"p", [marker]))
            while marker not in sink.arrived:
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited; see {log}")
                time.sleep(0.05)
            fill_s = time.monotonic() - started
            time.sleep(3.0)  # let checkpoints of the whole state begin
            committed_before = _committed(Path(tmp))
            rng = random.Random(1)
            sent: dict[int, int] = {}
            period = 1.0 / rate
            begin = time.monotonic()
            for i in range(int(rate * seconds)):
                pause = begin + i * period - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                n = rng.randrange(keys) + (i + 1) * keys  # unique, and n % keys is the key
                sent[n] = time.monotonic_ns()
                sock.sendall(_frames(b"p", [n]))
            deadline = time.monotonic() + 60
            while any(n not in sink.arrived for n in sent) and time.monotonic() < deadline:
                time.sleep(0.02)
            lost = sum(n not in sink.arrived for n in sent)
            if lost:
                raise RuntimeError(f"{lost} probes never came back; see {log}")
            latencies = [(sink.arrived[n] - t) / 1e6 for n, t in sent.items()]
            rss = proc.peak_rss(worker.pid) / 2**20
            sock.close()
        finally:
            procs.stop_all()
            sink.sock.close()
        return {
            "fill_s": fill_s,
            "p50": statistics.median(latencies),
            "p99": _q(latencies, 0.99),
            "max": max(latencies),
            "checkpoints": _committed(Path(tmp)) - committed_before,
            "peak_rss_mb": rss,
        }


def _committed(directory: Path) -> int:
    """The newest checkpoint id in the resilience directory ``directory`` (0 without)."""
    ids = CheckpointStore(directory / "checkpoints").ids()
    return max(ids) if ids else 0


def main(argv: list[str] | None = None) -> int:
    """Print one row per run."""
    parser = argparse.ArgumentParser(prog="python -m bench.state_probe", description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys (default 1,000,000)")
    parser.add_argument("--rate", type=float, default=500.0, help="probes/s (default 500)")
    parser.add_argument("--seconds", type=float, default=10.0, help="probing time (default 10)")
    parser.add_argument("--no-resilience", action="store_true", help="without checkpoints")
    args = parser.parse_args(argv)
    print(
        "| keys | checkpoints | probes/s | p50 ms | p99 ms | max ms | committed | fill s "
        "| peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for resilient in (False,) if args.no_resilience else (False, True):
        r = run(args.keys, args.rate, args.seconds, resilient)
        print(
            f"| {args.keys:,} | {'every 1 s' if resilient else 'none'} | {args.rate:,.0f} | "
            f"{r['p50']:.2f} | {r['p99']:.2f} | {r['max']:.2f} | {r['checkpoints']:.0f} | "
            f"{r['fill_s']:.1f} | {r['peak_rss_mb']:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
