"""Fixtures of the PostgreSQL connector tests: real servers, real processes, unique names per
test.

``procs``, ``uid`` and ``wait_until`` are shared with tests/rabbitmq and tests/redis, in
tests/connectors/connector_helpers.py; ``launch`` knows one more way here, "template"."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "connectors"))  # the shared process helpers and fixtures
from connector_helpers import REPO, Proc, Procs, procs, start_connector, uid, wait_until  # noqa: E402, F401


@pytest.fixture
def launch(procs: Procs) -> Callable[..., Proc]:  # noqa: F811 (the shared fixture ``procs``)
    """``launch(program, way, *args)`` starts a prebuilt connector program one of the four
    documented ways: "executable", "template" (``connectors/templates/``), "python -m",
    "wallaroo connector" or "copied file"."""

    def start(program: str, way: str, *args: str) -> Proc:
        if way == "template":  # where the seed kept the Postgres connectors
            return procs.start(program, REPO / "connectors" / "templates" / program, *args)
        return start_connector(procs, program, way, *args)

    return start
