"""In-process measurements through ``wallaroo.testing.Harness``, one workload per process.

``python -m bench.inprocess WORKLOAD --size N --repeats R`` prints one JSON object. The runner
starts a fresh process for each workload, so each one's peak RSS is its own.

For W1, W2 and W3 the first run of the engine is a warm-up whose peak RSS is reported; then
``R`` repeats alternate the plain-Python baseline and the engine (the order flips every
repeat), each timed with ``time.process_time()`` (CPU) and ``time.perf_counter()`` (wall).
Every run's output is checked; a wrong output exits with code 1. ``--repeats 0`` runs the
engine once and nothing else, for profiling::

    py-spy record -o w1.svg -- python -m bench.inprocess w1 --size 2000000 --repeats 0
"""

from __future__ import annotations

import abc
import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import proc, workloads
from bench.apps import celsius, word_count
from wallaroo.testing import Harness

ARGS = ["bench", "--bench-transport", "tcp"]
BATCH = 1024


class CheckError(Exception):
    """An output was wrong."""


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """``fn()``, its wall and CPU seconds, and the share of the machine others used meanwhile."""
    gc.collect()
    others = proc.Others()
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return result, wall, cpu, others.share(cpu)


class Workload(abc.ABC):
    """One in-process workload: the engine's run, the baseline, and the checks."""

    units = "messages"

    def __init__(self, size: int) -> None:
        self.size = size

    @abc.abstractmethod
    def prepare(self) -> Callable[[], list[bytes]]:
        """Build a harness (not timed); return the timed call, which returns the outputs."""

    @abc.abstractmethod
    def baseline(self) -> Any:
        """The plain-Python baseline's result (timed)."""

    def check(self, ours: list[bytes], base: Any) -> None:
        """Raise :class:`CheckError` unless ``ours`` is what ``base`` says it must be."""
        if ours != base:
            raise CheckError(f"{len(ours)} outputs differ from the baseline's {len(base)}")

    def check_alone(self, ours: list[bytes]) -> None:  # noqa: B027 - optional hook
        """A check that needs no baseline (run once, on the warm-up's outputs)."""


class Celsius(Workload):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.data = workloads.celsius_inputs(size)

    def prepare(self) -> Callable[[], list[bytes]]:
        h = Harness(celsius, ARGS)
        return lambda: _push(h, celsius.SOURCE, self.data)

    def baseline(self) -> list[bytes]:
        return workloads.celsius_baseline(self.data)


class WordCount(Workload):
    units = "lines"

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.data = workloads.word_lines(size)
        self.text = [line.decode() for line in self.data]  # the baseline splits str lines

    def prepare(self) -> Callable[[], list[bytes]]:
        h = Harness(word_count, ARGS)
        return lambda: _push(h, word_count.SOURCE, self.data)

    def baseline(self) -> list[tuple[str, int]]:
        return workloads.word_count_baseline(self.text)

    def check(self, ours: list[bytes], base: list[tuple[str, int]]) -> None:
        expected = "".join([f"{w} {c}\n" for w, c in base]).encode()
        if b"".join(ours) != expected:
            raise CheckError("the word counts differ from the baseline's")

    def check_alone(self, ours: list[bytes]) -> None:
        problem = workloads.WordCountCheck(self.data).check(b"".join(ours))
        if problem:
            raise CheckError(problem)


class MarketSpread(Workload):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        orders, market = workloads.market_inputs(size)
        self.orders = len(orders)
        self.plan = workloads.interleave(orders, market, BATCH)
        sys.path.insert(0, str(proc.ROOT / "examples" / "market_spread"))

    def prepare(self) -> Callable[[], list[bytes]]:
        args = ["bench", "--in", "Orders@127.0.0.1:7010,Market Data@127.0.0.1:7011"]
        h = Harness("market_spread", [*args, "--out", "127.0.0.1:7002"])

        def run() -> list[bytes]:
            for name, batch in self.plan:
                h.push(name, batch, batch_size=BATCH)
            return h.sinks[0].payloads

        return run

    def baseline(self) -> list[bytes]:
        return workloads.market_baseline(self.plan)

    def check_alone(self, ours: list[bytes]) -> None:
        if not 0 < len(ours) < self.orders:
            raise CheckError(f"{len(ours)} rejections of {self.orders} orders")


def _push(h: Harness, source: str, data: list[bytes]) -> list[bytes]:
    h.push(source, data, batch_size=BATCH)
    return h.sinks[0].payloads


WORKLOADS: dict[str, type[Workload]] = {"w1": Celsius, "w2": WordCount, "w3": MarketSpread}


def measure(workload: Workload, repeats: int) -> dict[str, Any]:
    start_rss = proc.rss()
    proc.reset_peak()
    ours, wall, cpu, _ = _timed(workload.prepare())
    peak = proc.peak_rss()
    workload.check_alone(ours)
    del ours
    if repeats == 0:  # one run, no baseline (e.g. under a profiler)
        return {
            "units": workload.units,
            "n": workload.size,
            "rate": workload.size / wall,
            "rate_cpu": workload.size / cpu,
            "peak_rss": peak,
        }
    rows: list[dict[str, float]] = []
    for i in range(repeats):
        row: dict[str, float] = {}
        for kind in ("baseline", "ours") if i % 2 == 0 else ("ours", "baseline"):
            if kind == "baseline":
                base, row["base_wall"], row["base_cpu"], row["base_others"] = _timed(
                    workload.baseline
                )
            else:
                ours, row["wall"], row["cpu"], row["others"] = _timed(workload.prepare())
        workload.check(ours, base)
        del ours, base
        rows.append(row)
    n = workload.size
    med = statistics.median
    return {
        "units": workload.units,
        "n": n,
        "rate": med(n / r["wall"] for r in rows),
        "rate_cpu": med(n / r["cpu"] for r in rows),
        "base_rate_cpu": med(n / r["base_cpu"] for r in rows),
        "ratio": med(r["base_cpu"] / r["cpu"] for r in rows),
        "ratios": [round(r["base_cpu"] / r["cpu"], 3) for r in rows],
        "peak_rss": peak,
        "start_rss": start_rss,
        "others": med([r[k] for r in rows for k in ("others", "base_others")]),
        "load": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess")
    parser.add_argument("workload", choices=[*WORKLOADS, "keys"])
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        if args.workload == "keys":
            from bench.keys import measure_keys

            result = measure_keys(args.size)
        else:
            result = measure(WORKLOADS[args.workload](args.size), args.repeats)
    except CheckError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 1
    print(json.dumps({"ok": True, **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
