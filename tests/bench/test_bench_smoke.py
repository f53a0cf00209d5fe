"""The benchmark suite's smoke run: every workload at tiny sizes, every correctness check on.

No timing is asserted: this only keeps ``python -m bench`` from rotting (issue 6).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

ROWS = (
    "| W1 celsius | in-process |",
    "| W2 word count | in-process |",
    "| W3 market spread | in-process |",
    "| keyed state | in-process |",
    "| checkpoint | in-process |",
    "| W1 celsius | tcp |",
    "| W1 celsius | connector write_many |",
    "| W1 celsius | connector write |",
    "| W2 word count | tcp |",
    "| W2 word count | connector write_many |",
    "| W2 word count | connector write |",
    "| W2 resilience | connector write_many, resilience on |",
    "| W2 resilience | tcp, resilience on |",
    "| W1 timed, max | tcp |",
    "| W1 latency @50% | tcp |",
    "| W1 latency @10% | tcp |",
)
# The connector latency rows: every prebuilt source connector against its real server.
sys.path.insert(0, str(ROOT))
from bench.connector_latency import FEEDS, RATES  # noqa: E402

ROWS += tuple(f"| connector latency | {feed} @{rate:g}/s |" for feed in FEEDS for rate in RATES)


def test_quick_suite_completes_and_its_checks_pass(tmp_path):
    raw = tmp_path / "bench.json"
    suite = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--json", str(raw)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = suite.communicate(timeout=100)
    except subprocess.TimeoutExpired:
        suite.terminate()  # the suite stops the processes it started
        out, err = suite.communicate(timeout=20)
        pytest.fail(f"the quick suite took over 100 s:\n{out}\n{err[-4000:]}")
    assert suite.returncode == 0, out + err[-4000:]
    assert json.loads(raw.read_text())["failures"] == []
    for row in ROWS:
        assert row in out, f"missing row {row!r} in:\n{out}"
