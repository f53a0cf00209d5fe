"""``python -m bench``: run the benchmark suite and print its table.

Every workload checks its outputs (counts and checksums); the command exits with code 1 when
any check or run failed, after printing the rest of the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from bench import connector_latency, e2e, proc
from bench.table import Row, render

GROUPS = ("w1", "w2", "w3", "keys", "e2e", "resilience", "latency", "connectors")


@dataclass(frozen=True)
class Sizes:
    w1: int = 2_000_000
    w2: int = 200_000
    w3: int = 1_000_000
    keys: int = 1_000_000
    write: int = 2_000_000  # W1 through SourceConnector.write, one call per message
    latency_s: float = 10.0
    connector_slow: int = 30  # messages at 10/s through each source connector
    connector_mid: int = 300  # ... at 100/s (the seed's celsius feed rate in issue 13)
    connector_fast: int = 3000  # ... and at 1,000/s
    repeats: int = 5  # in-process (decisions.md: median of 5 interleaved repeats)
    e2e_repeats: int = 3


QUICK = Sizes(
    w1=20_000,
    w2=2_000,
    w3=10_000,
    keys=20_000,
    write=20_000,
    latency_s=1.0,
    connector_slow=3,
    connector_mid=10,
    connector_fast=100,
    repeats=1,
    e2e_repeats=1,
)


class Suite:
    """Runs the selected groups, collecting table rows and failures."""

    def __init__(
        self,
        sizes: Sizes,
        groups: set[str],
        log: Callable[[str], None],
        feeds: list[str] | None = None,
    ) -> None:
        self.sizes = sizes
        self.groups = groups
        self.log = log
        self.feeds = list(connector_latency.FEEDS) if feeds is None else feeds
        self.rows: list[Row] = []
        self.failures: list[str] = []
        self.raw: dict[str, Any] = {}
        self.baseline_cpu: dict[str, float] = {}

    # -- in-process ---------------------------------------------------------------------------
    def inprocess(self, name: str, label: str, size: int) -> None:
        self.log(f"in-process {label}: {size:,}")
        command = [
            proc.PYTHON,
            "-m",
            "bench.inprocess",
            name,
            "--size",
            str(size),
            "--repeats",
            str(self.sizes.repeats),
        ]
        done = subprocess.run(
            command, cwd=proc.ROOT, env=proc.env(), capture_output=True, check=False
        )
        try:
            r = json.loads(done.stdout.decode().strip().splitlines()[-1])
        except (IndexError, ValueError):
            r = {"ok": False, "error": done.stderr.decode(errors="replace")[-2000:]}
        self.raw[f"inprocess {name}"] = r
        if not r.get("ok"):
            self.fail(f"in-process {label}", r.get("error", "failed"))
            return
        if name == "keys":
            self.keys_rows(r)
            return
        self.baseline_cpu[name] = r["base_rate_cpu"]
        self.rows.append(
            Row(
                label,
                "in-process",
                r["n"],
                r["units"],
                r["rate"],
                r["rate_cpu"],
                peak_rss=r["peak_rss"],
                ratio=r["ratio"],
                others=r["others"],
                note=f"plain loop {r['base_rate_cpu']:,.0f}/CPU-s; ratios {r['ratios']}",
            )
        )

    def keys_rows(self, r: dict[str, Any]) -> None:
        growth = [
            f"{(b - a) / max(1, n - m):.0f}"
            for (m, a), (n, b) in zip(r["samples"], r["samples"][1:], strict=False)
        ]
        self.rows.append(
            Row(
                "keyed state",
                "in-process",
                r["n"],
                "keys",
                None,
                r["rate_cpu"],
                peak_rss=r["peak_rss"],
                others=r["others"],
                note=f"{r['bytes_per_key']:.0f} B/key (per quarter: {', '.join(growth)})",
            )
        )
        self.rows.append(
            Row(
                "checkpoint",
                "in-process",
                r["n"],
                "keys",
                None,
                None,
                others=r["others"],
                note=f"snapshot {r['snapshot_s']:.2f} s (event loop blocked), whole checkpoint "
                f"{r['checkpoint_s']:.2f} s, {r['checkpoint_bytes'] / 1e6:.0f} MB; "
                f"recovery {r['recover_s']:.2f} s",
            )
        )

    # -- end to end ---------------------------------------------------------------------------
    def e2e(self, label: str, path: str, scenarios: list[e2e.Scenario]) -> list[dict[str, Any]]:
        """Run ``scenarios`` interleaved, ``e2e_repeats`` times; return the median results."""
        runs: list[list[dict[str, Any]]] = [[] for _ in scenarios]
        for _ in range(self.sizes.e2e_repeats):
            for i, s in enumerate(scenarios):
                self.log(f"end to end {label} ({describe(s)}): {s.messages:,}")
                try:
                    runs[i].append(e2e.run(s))
                except e2e.RunError as exc:
                    self.fail(f"{label} {describe(s)}", str(exc))
                    return []
        medians = [median_result(r) for r in runs]
        for s, m in zip(scenarios, medians, strict=True):
            self.raw[f"{label} {describe(s)}"] = m
            base = self.baseline_cpu.get(s.workload)
            units = "lines" if s.workload == "w2" else "messages"
            note = f"CPU s: worker {m['worker_cpu_s']:.2f}, peers {m['peers_cpu_s']:.2f}"
            if s.workload == "w2":
                note += f"; {m['rate'] * 10:,.0f} outputs/s"
            self.rows.append(
                Row(
                    label,
                    path or describe(s),
                    s.messages,
                    units,
                    m["rate"],
                    m["rate_cpu"],
                    p50=m.get("p50_ms"),
                    p99=m.get("p99_ms"),
                    p999=m.get("p999_ms"),
                    peak_rss=m["peak_rss"],
                    ratio=m["rate_cpu"] / base if base else None,
                    others=m["others"],
                    note=note,
                )
            )
        return medians

    def run_e2e(self) -> None:
        z = self.sizes
        for name, size, write in (("w1", z.w1, z.write), ("w2", z.w2, z.w2)):
            label = f"{name.upper()} " + ("celsius" if name == "w1" else "word count")
            self.e2e(
                label,
                "",
                [
                    e2e.Scenario(name, "tcp", size),
                    e2e.Scenario(name, "connector", size, writer="write_many"),
                    e2e.Scenario(name, "connector", write, writer="write"),
                ],
            )

    def run_resilience(self) -> None:
        n = self.sizes.w2
        scenarios = [
            e2e.Scenario("w2", t, n, resilience=r)
            for t in ("connector", "tcp")
            for r in (True, False)
        ]
        medians = self.e2e("W2 resilience", "", scenarios)
        if medians:
            for i, t in ((0, "connector"), (2, "tcp")):
                on, off = medians[i]["rate"], medians[i + 1]["rate"]
                self.raw[f"resilience ratio {t}"] = on / off
                self.rows[-4 + i].note += f"; on/off {on / off:.2f}"

    def run_latency(self) -> None:
        """W1 with send times in the messages, through TCP: first as fast as possible (the
        maximum), then at a fixed offered load of 50% of it, and at 10% (the same path on a
        machine with CPU to spare: the load generator is Python too)."""
        z = self.sizes
        maximum = self.e2e("W1 timed, max", "tcp", [e2e.Scenario("w1-timed", "tcp", z.w1)])
        if not maximum:
            return
        for share in (0.5, 0.1):
            rate = maximum[0]["rate"] * share
            n = int(rate * z.latency_s)
            paced = e2e.Scenario("w1-timed", "tcp", n, rate=rate, timeout=z.latency_s + 120)
            if self.e2e(f"W1 latency @{share:.0%}", "tcp", [paced]):
                self.rows[-1].note += f"; offered {rate:,.0f} msg/s for {z.latency_s:.0f} s"

    def run_connectors(self) -> None:
        """Latency through each prebuilt source connector at 10, 100 and 1,000 msg/s, against
        its real server, and what it adds to a plain ``SourceConnector``."""
        z = self.sizes
        counts = {10.0: z.connector_slow, 100.0: z.connector_mid, 1000.0: z.connector_fast}
        measured, failures = connector_latency.run_all(self.feeds, counts, self.log)
        self.failures += failures
        for r in connector_latency.summary(measured):
            self.raw[f"connector latency {r.feed} @{r.rate:g}/s"] = asdict(r)
            note = f"max {r.max_ms:.1f} ms"
            if r.added_p50_ms is not None and r.added_p99_ms is not None:
                note = f"added p50 {r.added_p50_ms:+.2f} ms, p99 {r.added_p99_ms:+.2f} ms; {note}"
            self.rows.append(
                Row(
                    "connector latency",
                    f"{r.feed} @{r.rate:g}/s",
                    r.n,
                    "messages",
                    r.achieved,
                    None,
                    p50=r.p50_ms,
                    p99=r.p99_ms,
                    note=note,
                )
            )

    def fail(self, what: str, error: str) -> None:
        self.failures.append(f"{what}: {error}")
        self.log(f"FAILED {what}: {error}")

    def run(self) -> None:
        for name, label, size in (
            ("w1", "W1 celsius", self.sizes.w1),
            ("w2", "W2 word count", self.sizes.w2),
            ("w3", "W3 market spread", self.sizes.w3),
            ("keys", "keys", self.sizes.keys),
        ):
            if name in self.groups:
                self.inprocess(name, label, size)
        if "e2e" in self.groups:
            self.run_e2e()
        if "resilience" in self.groups:
            self.run_resilience()
        if "latency" in self.groups:
            self.run_latency()
        if "connectors" in self.groups:
            self.run_connectors()


def describe(s: e2e.Scenario) -> str:
    text = "tcp" if s.transport == "tcp" else f"connector {s.writer}"
    if s.resilience:
        text += ", resilience on"
    return text


def median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median rate (its latencies and RSS stay together), with the median rate and
    the median noise of all runs."""
    ordered = sorted(runs, key=lambda r: r["rate"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["rates"] = [round(r["rate"]) for r in runs]
    chosen["rate"] = statistics.median(r["rate"] for r in runs)
    chosen["others"] = statistics.median(r["others"] for r in runs)
    return chosen


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run the benchmark suite (docs/performance.md)."
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (a smoke run)")
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma-separated groups to run, of: {', '.join(GROUPS)} (all)",
    )
    parser.add_argument("--repeats", type=int, help="in-process repeats (default 5)")
    parser.add_argument("--e2e-repeats", type=int, help="end-to-end repeats (default 3)")
    parser.add_argument(
        "--connectors",
        help="with the connectors group: comma-separated feeds, of: "
        f"{', '.join(connector_latency.FEEDS)} (all; SourceConnector, the baseline, always)",
    )
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args(argv)
    groups = {g.strip() for g in args.only.split(",") if g.strip()}
    if unknown := groups - set(GROUPS):
        parser.error(f"unknown group(s) {', '.join(sorted(unknown))}; choose from {GROUPS}")
    feeds = None
    if args.connectors:
        feeds = [f.strip() for f in args.connectors.split(",") if f.strip()]
        if unknown := set(feeds) - set(connector_latency.FEEDS):
            parser.error(f"unknown connector feed(s) {', '.join(sorted(unknown))}")
    sizes = QUICK if args.quick else Sizes()
    if args.repeats:
        sizes = replace(sizes, repeats=args.repeats)
    if args.e2e_repeats:
        sizes = replace(sizes, e2e_repeats=args.e2e_repeats)
    # SIGTERM unwinds like Ctrl-C, so every process a run started is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    load0 = os.getloadavg()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    suite = Suite(sizes, groups, log, feeds)
    suite.run()
    print(f"machine: {machine()}")
    print(
        f"load average: {load0[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; "
        f"took {time.monotonic() - started:.0f} s"
    )
    print(render(suite.rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"machine": machine(), "raw": suite.raw, "failures": suite.failures}, f, indent=1
            )
    for failure in suite.failures:
        print(f"FAILED {failure}")
    return 1 if suite.failures else 0
