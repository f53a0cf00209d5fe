"""The dashboard in headless Chromium (Debian's package), fed by a live worker.

The test waits until the charts' own data series (``window.wallaroo.charts``) hold non-zero
throughput and latency, checks the graph and panels, and saves a screenshot to
``build/dashboard.png`` (``scripts/test`` prints its path).
"""

import os
import shutil
from pathlib import Path

import pytest
from metrics_helpers import ROOT, Feeder
from playwright.sync_api import sync_playwright

pytestmark = pytest.mark.slow

SCREENSHOT = ROOT / "build" / "dashboard.png"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# True once the chart's series holds at least ``n`` points with a value above zero.
NONZERO = """([name, key, n]) => {
    const chart = window.wallaroo && window.wallaroo.charts[name];
    const series = chart && chart.series.find((s) => s.key === key);
    return Boolean(series && series.points.filter(([, v]) => v !== null && v > 0).length >= n);
}"""


def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.fail(
            "Chromium is not installed, and the dashboard test needs it: install Debian's "
            "package with 'apt-get install -y chromium' (scripts/test does this when it is "
            "missing, and stops if it cannot)"
        )
    return path


def test_the_dashboard_charts_live_throughput_in_chromium(worker, tmp_path):
    executable = chromium()
    feeder = Feeder(worker.source_port)
    console: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1300})
                page.on("pageerror", lambda e: console.append(f"page error: {e}"))
                page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
                page.goto(worker.url + "/", wait_until="load")
                for name, key, n in [
                    ("pipeline:Parity:throughput", "in", 3),  # a few points: a readable chart
                    ("pipeline:Parity:throughput", "out", 1),
                    ("pipeline:Parity:latency", "p99", 1),
                    ("stage:0:throughput", "in", 1),
                    ("stage:1:latency", "p50", 1),
                ]:
                    page.wait_for_function(NONZERO, arg=[name, key, n], timeout=30_000)
                charts = page.evaluate(
                    """() => Object.fromEntries(Object.entries(window.wallaroo.charts).map(
                        ([name, c]) => [name, c.series.map((s) => [s.key, s.points])]))"""
                )
                nodes = page.eval_on_selector_all(
                    "#graph g.node", "(gs) => gs.map((g) => g.getAttribute('data-id'))"
                )
                dead = page.text_content("#dead-total")
                page.wait_for_function(
                    "() => document.getElementById('worker').textContent !== '\u2026'"
                )
                title = page.inner_text("div.title")
                Path(SCREENSHOT).parent.mkdir(exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)
            finally:
                browser.close()
    finally:
        feeder.stop()
    assert set(charts) == {
        f"{kind}:{what}"
        for kind in ("pipeline:Parity", "stage:0", "stage:1")
        for what in ("throughput", "latency")
    }
    inflow = dict(charts["pipeline:Parity:throughput"])["in"]
    assert max(v for _, v in inflow if v is not None) > 100  # the feeder sends ~10k msg/s
    p99 = dict(charts["pipeline:Parity:latency"])["p99"]
    assert all(v is None or v + 1 & v == 0 for _, v in p99), "latencies are bin upper bounds"
    assert nodes == ["source:0", "segment:0", "segment:1", f"sink:{0}"]
    assert int(dead.replace(",", "")) > 0  # the feeder sends one bad payload per 20 batches
    assert console == []
    assert title.split() == ["Parity", "Count", "\u00b7", "worker", "\u201cworker\u201d"], title
    assert SCREENSHOT.stat().st_size > 10_000
