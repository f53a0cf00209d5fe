"""The suite's table: one row per measurement, rendered as Markdown."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    """One measurement. Rates are per second of wall-clock time (``rate``) and per second of
    CPU time (``rate_cpu``: the process's, or the worker's end to end); ``ratio`` is the
    latter over the plain-Python loop's, measured in the same run; ``others`` is the share of
    the machine's CPU that processes outside the benchmark used meanwhile (the noise)."""

    workload: str
    path: str
    n: int
    units: str
    rate: float | None
    rate_cpu: float | None
    p50: float | None = None
    p99: float | None = None
    p999: float | None = None
    peak_rss: int | None = None
    ratio: float | None = None
    others: float | None = None
    note: str = ""


HEADER = (
    "workload",
    "path",
    "n",
    "msg/s",
    "msg/CPU-s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "peak RSS MB",
    "vs plain",
    "others %",
    "notes",
)


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def render(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        cells = (
            r.workload,
            r.path,
            f"{r.n:,} {r.units}",
            _num(r.rate, ",.0f"),
            _num(r.rate_cpu, ",.0f"),
            _num(r.p50, ".2f"),
            _num(r.p99, ".2f"),
            _num(r.p999, ".2f"),
            _num(None if r.peak_rss is None else r.peak_rss / 2**20, ".0f"),
            _num(r.ratio, ".2f"),
            _num(None if r.others is None else 100 * r.others, ".0f"),
            r.note,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
