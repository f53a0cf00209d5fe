"""``wallaroo top``: a live table of a worker's metrics in the terminal.

    wallaroo top 127.0.0.1:8080            # redraws every second until Ctrl-C
    wallaroo top 8080 --once               # one table (also what a pipe gets)

It reads the worker's ``/api/stats`` (start the worker with ``--metrics-http``) and shows the
numbers the dashboard shows: per pipeline and stage the rates, counts, dead letters and latency
percentiles of the last interval, then sources (connections, credits), sinks (link, buffered
bytes), state, checkpoints and backpressure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

__all__ = ["fetch", "main", "render", "stats_url"]

CLEAR = "\x1b[H\x1b[2J"


def stats_url(address: str) -> str:
    """``/api/stats`` of ``HOST:PORT``, ``PORT`` (127.0.0.1) or an ``http://`` URL."""
    base = address.strip().rstrip("/")
    if base.isdigit():
        base = f"127.0.0.1:{base}"
    if not base.startswith(("http://", "https://")):
        base = "http://" + base
    return base if base.endswith("/api/stats") else base + "/api/stats"


def fetch(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """The stats document at ``url``.

    Raises:
        OSError: no answer, or not a stats document (the message says which).
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http only
            doc = json.loads(response.read())
    except (urllib.error.URLError, ValueError) as exc:
        raise OSError(f"no stats from {url}: {getattr(exc, 'reason', exc)}") from exc
    if not isinstance(doc, dict) or "pipelines" not in doc:
        raise OSError(f"{url} did not answer with a wallaroo stats document")
    return doc


def _rate(v: float | None) -> str:
    if v is None:
        return "-"
    for size, unit in ((1e6, "M"), (1e3, "k")):
        if v >= size:
            return f"{v / size:.1f}{unit}"
    return f"{v:.0f}"


def _ns(v: int | None) -> str:
    if v is None:
        return "-"
    for size, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
        if v >= size:
            return f"{v / size:.3g}{unit}"
    return f"{v}ns"


def _int(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def _table(head: list[str], rows: list[list[str]], width: int, left: int = 1) -> list[str]:
    """Columns sized to their content, the first ``left`` ones aligned left (text) and the
    others right (numbers); the first one is cut to make the table fit ``width``."""
    sizes = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    rest = sum(sizes[1:]) + 2 * (len(head) - 1)
    sizes[0] = max(8, min(sizes[0], width - rest))

    def line(cells: list[str]) -> str:
        first = cells[0] if len(cells[0]) <= sizes[0] else cells[0][: sizes[0] - 1] + "~"
        cells = [first, *cells[1:]]
        parts = [
            c.ljust(s) if i < left else c.rjust(s)
            for i, (c, s) in enumerate(zip(cells, sizes, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(head)] + [line(r) for r in rows]


def _latency(window: dict[str, Any] | None) -> list[str]:
    w = window or {}
    return [_ns(w.get(k)) for k in ("p50", "p95", "p99", "p999")]


def render(doc: dict[str, Any], width: int = 100) -> str:
    """The table for one stats document, fitted to ``width`` columns."""
    when = time.strftime("%H:%M:%S", time.localtime(doc.get("time", 0)))
    title = (
        f"wallaroo top - {doc['application']} - worker '{doc['worker']}' - {when} - "
        f"rates over {doc.get('window_s', 0):.1f} s"
    )
    blocks = [[title], _pipelines(doc, width), _stages(doc, width), _io(doc, width), _footer(doc)]
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"


_LATENCY = ["P50", "P95", "P99", "P99.9"]


def _pipelines(doc: dict[str, Any], width: int) -> list[str]:
    rows = [
        [
            p["name"],
            _rate(p["rate_in"]),
            _rate(p["rate_out"]),
            _int(p["messages_in"]),
            _int(p["messages_out"]),
            _int(p["dead_letters"]),
            *_latency(p["window"]),
        ]
        for p in doc["pipelines"]
    ]
    return _table(["PIPELINE", "IN/S", "OUT/S", "IN", "OUT", "DEAD", *_LATENCY], rows, width)


def _stages(doc: dict[str, Any], width: int) -> list[str]:
    rows = [
        [
            " > ".join(s["steps"]) + (" (keyed)" if s["keyed"] else ""),
            _rate(s["rate_in"]),
            _int(s["messages_in"]),
            _int(s["messages_out"]),
            _int(s["dead_letters"]),
            *_latency(s["window"]),
        ]
        for s in doc["stages"]
    ]
    return _table(["STAGE", "IN/S", "IN", "OUT", "DEAD", *_LATENCY], rows, width)


def _io(doc: dict[str, Any], width: int) -> list[str]:
    sources = [
        [
            s["name"],
            s["kind"],
            s["address"],
            str(s["connections"]),
            _int(s["messages"]),
            _rate(s["rate"]),
            _int(s["credits"]),
            str(s["errors"]),
        ]
        for s in doc["sources"]
    ]
    sinks = [
        [
            s["name"],
            "up" if s["connected"] else "down",
            _int(s["messages"]),
            _rate(s["rate"]),
            _int(s["buffered_bytes"]),
            str(s["connects"]),
        ]
        for s in doc["sinks"]
    ]
    head = ["SOURCE", "KIND", "ADDRESS", "CONN", "MESSAGES", "MSG/S", "CREDITS", "ERRORS"]
    return [
        *_table(head, sources, width, left=3),
        "",
        *_table(["SINK", "LINK", "MESSAGES", "MSG/S", "BUFFERED", "CONNECTS"], sinks, width, 2),
    ]


def _footer(doc: dict[str, Any]) -> list[str]:
    lines = [f"state {s['name']}: {s['keys']:,} keys" for s in doc.get("states", [])]
    dead = doc["dead_letters"]
    stages = ", ".join(f"{d['stage']} {d['count']:,}" for d in dead["by_stage"])
    lines.append(f"dead letters: {dead['total']:,}" + (f" ({stages})" if stages else ""))
    cp = doc.get("checkpoints")
    if cp:
        lines.append(
            f"checkpoints: {cp['taken']:,} taken, {cp['aborted']} aborted, last "
            f"{_ns(int(cp['last_duration_s'] * 1e9))}, committed {cp['last_committed']}"
        )
    gate = doc["gate"]
    lines.append("backpressure: " + ("none" if gate["open"] else ", ".join(gate["blockers"])))
    return lines


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wallaroo top",
        description="Show a worker's metrics (from its --metrics-http endpoint) as a live table.",
    )
    p.add_argument("address", help="HOST:PORT, PORT (127.0.0.1) or URL of the metrics endpoint")
    p.add_argument("--interval", "-i", type=float, default=1.0, help="seconds between redraws")
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.add_argument("--count", "-n", type=int, default=None, help="exit after N tables")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``wallaroo top HOST:PORT``: print the metrics table; return 0, or 1 when the endpoint
    cannot be read.
    """
    args = _parser().parse_args(argv)
    url = stats_url(args.address)
    tty = sys.stdout.isatty()
    live = tty and not args.once
    count = 1 if args.once or (not live and args.count is None) else args.count
    shown = 0
    try:
        while count is None or shown < count:
            try:
                width = shutil.get_terminal_size().columns if tty else 1000  # a pipe: no cuts
                text = render(fetch(url), width)
            except OSError as exc:
                if not live:
                    print(f"wallaroo top: error: {exc}", file=sys.stderr)
                    return 1
                text = f"wallaroo top: {exc}; retrying\n"
            sys.stdout.write(CLEAR + text if live else text)
            sys.stdout.flush()
            shown += 1
            if count is None or shown < count:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    return 0
