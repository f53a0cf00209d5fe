"""Ray rows of the benchmark suite: W2 on the embedded engine and on 1 and 2 Ray workers.

``python -m bench.ray_rows [--lines N] [--heavy-lines N] [--work-us US] [--json FILE]``

Two workloads, both W2 word count fed by a generator source (``bench/apps/word_count_gen.py``)
and written to a TCP sink that this process reads:

* ``W2 word count``: as cheap as W2 is (Ray's transport cost shows);
* ``W2 heavy``: the count spins about ``--work-us`` microseconds per word (calibrated here), so
  the work is CPU-bound in the keyed step and two workers can use two cores.

Each is run on the embedded engine (in this process, ``wallaroo.testing.Harness``) and on Ray
with 1 and 2 worker actors (a local Ray cluster started here; actors started once per run and
not timed: the rate is taken from the first count received to the last).
Every run checks the final count of every word; a wrong one exits with code 1. The speed-up
printed is the 2-worker rate over the 1-worker rate of the heavy workload, next to the speed-up
two plain processes get on the same work at that moment (the machine's ceiling: on a machine
shared with other jobs, or with CPU steal, it is below 2). Each run is repeated
``--repeats`` times, interleaved, and the median reported; ``others %`` is the machine's CPU use
by other jobs measured just before each run (the noise).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from typing import Any

from bench import proc
from bench.table import Row, render

APP = "bench.apps.word_count_gen"


def calibrate(work_us: float) -> int:
    """Spin rounds that take about ``work_us`` microseconds on a quiet core (the fastest of
    several timings, so that other jobs on the machine do not shrink the work)."""
    from bench.apps.word_count_gen import spin

    rounds = 20000
    best = float("inf")
    for _ in range(7):
        started = time.perf_counter()
        spin(rounds)
        best = min(best, (time.perf_counter() - started) / rounds)
    return max(1, round(work_us * 1e-6 / best))


def _spin_words(args: tuple[int, int]) -> float:
    from bench.apps.word_count_gen import spin

    rounds, words = args
    started = time.perf_counter()
    for _ in range(words):
        spin(rounds)
    return time.perf_counter() - started


def parallel_ceiling(rounds: int, words: int) -> float:
    """How much faster two plain processes do the heavy work than one, on this machine now:
    the speed-up two workers could reach at best (other jobs' load lowers it)."""
    import multiprocessing

    one = _spin_words((rounds, words))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        started = time.perf_counter()
        pool.map(_spin_words, [(rounds, words // 2)] * 2)
        two = time.perf_counter() - started
    return one / two


def others_share(seconds: float = 0.5) -> float:
    """The machine's CPU use while this benchmark idles (other jobs: the noise)."""
    before = proc.busy_seconds()
    time.sleep(seconds)
    return (proc.busy_seconds() - before) / (seconds * (os.cpu_count() or 1))


def expected(lines: int) -> Counter[str]:
    from bench.apps.word_count_gen import make_lines

    return Counter(w for line in make_lines(lines) for w in line.split())


class Collector:
    """Listens for the TCP sink; remembers the highest count of every word."""

    def __init__(self, words: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.words = words
        self.counts: dict[str, int] = {}
        self.received = 0
        self.done = threading.Event()
        self.last = 0.0
        self.first = 0.0
        self.first_count = 0
        proc.accept_forever(self.sock, self._read)

    def _read(self, conn: socket.socket) -> None:
        rest = b""
        with conn:
            while chunk := conn.recv(1 << 16):
                data = rest + chunk
                lines = data.split(b"\n")
                rest = lines.pop()
                for line in lines:
                    word, _, count = line.decode().partition(" ")
                    if int(count) > self.counts.get(word, 0):
                        self.counts[word] = int(count)
                    self.received += 1
                if not self.first:
                    self.first, self.first_count = time.perf_counter(), self.received
                if self.received >= self.words:
                    self.last = time.perf_counter()
                    self.done.set()

    def close(self) -> None:
        self.sock.close()


def embedded(lines: int, spin: int) -> tuple[float, bool]:
    """Words per second on the embedded engine, and whether the counts were right."""
    os.environ["WALLAROO_BENCH_LINES"] = str(lines)
    os.environ["WALLAROO_BENCH_SPIN"] = str(spin)
    import importlib

    import bench.apps.word_count_gen as app
    from wallaroo.testing import Harness

    importlib.reload(app)
    harness = Harness(app)
    started = time.perf_counter()
    harness.generate("lines", lines + 1)
    elapsed = time.perf_counter() - started
    want = expected(lines)
    counts: dict[str, int] = {}
    for payload in harness.result().output():
        word, _, count = payload.decode().strip().partition(" ")
        counts[word] = max(counts.get(word, 0), int(count))
    return sum(want.values()) / elapsed, counts == dict(want)


def on_ray(lines: int, spin: int, workers: int) -> tuple[float, bool]:
    """Words per second on ``workers`` Ray workers, and whether the counts were right."""
    from wallaroo.loader import load_application
    from wallaroo.plan.compiler import compile_application
    from wallaroo.ray_backend.coordinator import Coordinator
    from wallaroo.ray_backend.records import CoordinatorOptions
    from wallaroo.ray_backend.topology import AppSpec

    want = expected(lines)
    collector = Collector(sum(want.values()))
    os.environ["WALLAROO_BENCH_LINES"] = str(lines)
    os.environ["WALLAROO_BENCH_SPIN"] = str(spin)
    os.environ["WALLAROO_BENCH_SINK"] = f"127.0.0.1:{collector.port}"
    plan = compile_application(load_application(APP, ["bench"]).application)
    spec = AppSpec.here(APP, ["bench"], [], name="bench", resilience_dir=None, resilient=False)
    coordinator = Coordinator(spec, plan, CoordinatorOptions(workers=workers))
    try:
        started = time.perf_counter()
        coordinator.start()
        deployed = time.perf_counter()
        if not collector.done.wait(600):
            raise RuntimeError(f"only {collector.received} of {collector.words} counts arrived")
        # From the first count received to the last (the actors' start-up is not timed); a run
        # too short for that is timed from the end of the deployment.
        span = collector.last - collector.first
        if span > 0.05 and collector.first_count < collector.words / 2:
            rate = (collector.words - collector.first_count) / span
        else:
            rate = collector.words / max(collector.last - deployed, 1e-6)
        print(
            f"  ray, {workers} worker(s): deployed in {deployed - started:.1f} s", file=sys.stderr
        )
        return rate, collector.counts == dict(want)
    finally:
        coordinator.shutdown()
        collector.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_rows", description=__doc__)
    parser.add_argument("--lines", type=int, default=50_000, help="lines of W2 (8 words each)")
    parser.add_argument("--heavy-lines", type=int, default=12_500, help="lines of W2 heavy")
    parser.add_argument("--work-us", type=float, default=20.0, help="work per word, heavy")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    from wallaroo.ray_backend._ray import import_ray, set_ray_environment

    set_ray_environment()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray = import_ray()
    ray.init(address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    spin = calibrate(args.work_us)
    rows: list[Row] = []
    results: dict[str, Any] = {"cpus": os.cpu_count(), "spin_rounds": spin}
    ok = True
    heavy = f"W2 heavy ({args.work_us:g} µs/word)"
    workloads = [("W2 word count", args.lines, 0), (heavy, args.heavy_lines, spin)]
    engines = [("embedded", 0), ("ray, 1 worker", 1), ("ray, 2 workers", 2)]
    rates: dict[tuple[str, str], list[float]] = {}
    noise: dict[tuple[str, str], list[float]] = {}
    wrong: dict[tuple[str, str], bool] = {}
    for _ in range(args.repeats):  # interleaved repeats; the median is reported
        for label, lines, rounds in workloads:
            for engine, workers in engines:
                noise.setdefault((label, engine), []).append(others_share())
                if workers:
                    rate, right = on_ray(lines, rounds, workers)
                else:
                    rate, right = embedded(lines, rounds)
                ok = ok and right
                wrong.setdefault((label, engine), not right)
                wrong[(label, engine)] |= not right
                rates.setdefault((label, engine), []).append(rate)
    for label, lines, _ in workloads:
        for engine, _ in engines:
            rate = statistics.median(rates[(label, engine)])
            results[f"{label} | {engine}"] = rate
            rows.append(
                Row(label, engine, 8 * lines, "words", rate, None,
                    others=statistics.median(noise[(label, engine)]),
                    note="WRONG COUNTS" if wrong[(label, engine)] else "counts checked")
            )  # fmt: skip
    speedup = results[f"{heavy} | ray, 2 workers"] / results[f"{heavy} | ray, 1 worker"]
    results["speedup_2_over_1"] = speedup
    ceiling = parallel_ceiling(spin, min(args.heavy_lines * 8, 50_000))
    results["plain_processes_2_over_1"] = ceiling
    ray.shutdown()
    print(render(rows))
    print(f"\nheavy W2: 2 Ray workers run {speedup:.2f}x the rate of 1 (goal: 1.6x); two plain")
    print(f"processes doing the same work run {ceiling:.2f}x one, now (the machine's ceiling)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
