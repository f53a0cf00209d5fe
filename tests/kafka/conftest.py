"""Fixtures of the Kafka tests: processes reaped at the end, and the session's Tansu broker
(``kafka_bootstrap``, tests/conftest.py). A missing broker or client library is a failure."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "connectors"))  # connector_helpers: Procs, free_port, ...

from connector_helpers import Procs, reaped  # noqa: E402
from kafka_helpers import Kafka, kafka_procs  # noqa: E402


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Starts processes in ``tmp_path`` with free connector ports in their environment; kills
    whatever is still running at the end."""
    yield from reaped(kafka_procs(tmp_path))


@pytest.fixture
def kafka(kafka_bootstrap: str) -> Kafka:
    """A client of the session's broker; makes uniquely named topics and groups."""
    return Kafka(kafka_bootstrap)
