"""Fixtures of the RabbitMQ connector tests: real servers, real processes, unique names per
test."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "connectors"))  # the shared process helpers
from connector_helpers import BIN, REPO, Proc, Procs  # noqa: E402

Launch = Callable[..., Proc]


def _launch(procs: Procs, program: str, way: str, *args: str) -> Proc:
    if way == "executable":
        return procs.start(program, REPO / "connectors" / program, *args)
    if way == "python -m":
        return procs.python(program, "-m", f"wallaroo.connectors.{program}", *args)
    if way == "wallaroo connector":
        return procs.start(program, BIN / "wallaroo", "connector", program, *args)
    copy = procs.cwd / f"my_{program}.py"
    copy.write_bytes((REPO / "src" / "wallaroo" / "connectors" / f"{program}.py").read_bytes())
    return procs.python(program, copy, *args)


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Starts processes in ``tmp_path`` with this folder's applications importable; kills
    whatever is still running at the end."""
    runner = Procs(tmp_path)
    runner.env["PYTHONPATH"] = f"{HERE}:{tmp_path}"
    yield runner
    for proc in runner.started:
        proc.kill()


@pytest.fixture
def uid() -> str:
    """A suffix that makes this test's channel, key, queue or table names unique."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def launch(procs: Procs) -> Launch:
    """``launch(program, way, *args)`` starts a prebuilt connector program one of the four
    documented ways: "executable", "python -m", "wallaroo connector" or "copied file"."""
    return lambda program, way, *args: _launch(procs, program, way, *args)


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """``wait_until(condition, what, timeout=20)`` polls ``condition`` every 0.05 s."""
    return _wait_until
