"""What the metrics code path costs: W1 in-process with the engine's metrics off and on.

``python -m bench.metrics_cost --size 2000000 --repeats 5`` prints one JSON object and exits
with code 1 when an output is wrong or the ratio is below ``--min-ratio`` (0.97, issue 9).

Both variants run the same driver over the same data (W1 celsius, batches of 1,024, like
``bench.inprocess``): ``off`` is ``LocalEngine(plan, sinks)``, the engine every run without
``--metrics``/``--metrics-http`` uses; ``on`` is ``LocalEngine(..., metrics=True)``, which
times every batch per segment and from source to sink, as a worker with metrics does. The
repeats alternate the two (the order flips every repeat), each timed in CPU seconds;
``ratio`` is the median over the repeats of (rate on) / (rate off). With metrics off the
engine builds the very runner class it built before metrics existed (``off_is_plain``), so
the off path runs no metrics code at all; this measures the price of turning them on.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import proc, workloads
from bench.apps import celsius
from wallaroo.engine.local import LocalEngine
from wallaroo.engine.segment import SegmentRunner
from wallaroo.loader import load_application
from wallaroo.plan.compiler import compile_application
from wallaroo.testing import ListSink

ARGS = ["bench", "--bench-transport", "tcp"]
BATCH = 1024
VARIANTS = ("off", "on")


def prepare(data: list[bytes], *, metrics: bool) -> tuple[LocalEngine, Callable[[], list[bytes]]]:
    """A fresh engine for W1 and the call that pushes ``data`` through it (not timed)."""
    plan = compile_application(load_application(celsius, ARGS).application)
    sink = ListSink()
    engine = LocalEngine(plan, [sink], metrics=metrics)
    run = engine.source_runner(0).run

    def push() -> list[bytes]:
        for i in range(0, len(data), BATCH):
            run(data[i : i + BATCH])
        return sink.payloads

    return engine, push


def _cpu(fn: Callable[[], list[bytes]]) -> tuple[list[bytes], float, float]:
    gc.collect()
    others = proc.Others()
    c0 = time.process_time()
    out = fn()
    cpu = time.process_time() - c0
    return out, cpu, others.share(cpu)


def measure(size: int, repeats: int) -> dict[str, Any]:
    """Run the comparison; raise ValueError when an output differs from the baseline's."""
    data = workloads.celsius_inputs(size)
    expected = workloads.celsius_baseline(data)
    engine, warm = prepare(data, metrics=False)
    off_is_plain = all(type(r) is SegmentRunner for r in engine.segments.values())
    if warm() != expected:
        raise ValueError("W1 outputs differ from the baseline's (metrics off)")
    rows: list[dict[str, float]] = []
    for i in range(repeats):
        row: dict[str, float] = {}
        for variant in VARIANTS if i % 2 == 0 else VARIANTS[::-1]:
            engine, push = prepare(data, metrics=variant == "on")
            out, row[variant], row[f"{variant}_others"] = _cpu(push)
            if out != expected:
                raise ValueError(f"W1 outputs differ from the baseline's (metrics {variant})")
            if variant == "on":
                seen = engine.statistics().segments[0].latency
                if seen is None or seen.count != size:
                    raise ValueError("metrics on, but the latency histogram missed messages")
        rows.append(row)
    med = statistics.median
    return {
        "units": "messages",
        "n": size,
        "repeats": repeats,
        "rate_cpu_off": med(size / r["off"] for r in rows),
        "rate_cpu_on": med(size / r["on"] for r in rows),
        "ratio": med(r["off"] / r["on"] for r in rows),
        "ratios": [round(r["off"] / r["on"], 4) for r in rows],
        "off_is_plain": off_is_plain,
        "others": med([r[k] for r in rows for k in ("off_others", "on_others")]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_cost")
    parser.add_argument("--size", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-ratio", type=float, default=0.97)
    args = parser.parse_args(argv)
    try:
        result = measure(args.size, args.repeats)
    except ValueError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 1
    ok = result["ratio"] >= args.min_ratio and result["off_is_plain"]
    print(json.dumps({"ok": ok, "min_ratio": args.min_ratio, **result}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
