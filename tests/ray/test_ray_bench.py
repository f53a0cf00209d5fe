"""The Ray rows of the benchmark suite run, tiny, with their count checks on (no timing is
asserted: this only keeps ``python -m bench.ray_rows`` from rotting)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ray_helpers import require_ray

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(180)]


def test_the_ray_rows_run_and_their_checks_pass():
    require_ray()
    out = subprocess.run(
        [sys.executable, "-m", "bench.ray_rows", "--lines", "2000", "--heavy-lines", "500",
         "--work-us", "5", "--repeats", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| W2")]
    assert len(rows) == 6
    assert all("counts checked" in row for row in rows)
    assert "2 Ray workers run" in out.stdout
