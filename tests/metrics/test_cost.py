"""The metrics cost check runs and its correctness checks pass (issue 9).

The ratio itself (metrics on over off, median of 5 interleaved W1 runs, goal >= 0.97) is a
benchmark figure: ``python -m bench.metrics_cost`` prints it; CI does not time it. What CI pins
is structural: with metrics off the engine builds the very runners it built before metrics
existed, so the off path runs no metrics code at all.
"""

import json
import subprocess
import sys

import pytest
from metrics_helpers import ROOT

pytestmark = pytest.mark.slow


def test_metrics_cost_bench_runs_and_metrics_off_is_the_plain_engine():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.metrics_cost",
            "--size",
            "100000",
            "--repeats",
            "1",
            "--min-ratio",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result = json.loads(out.stdout)
    assert result["off_is_plain"], "metrics off must build the plain runners"
    assert result["ok"], result
    assert result["ratio"] > 0
    assert out.returncode == 0
