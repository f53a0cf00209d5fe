"""Fixtures of the AWS connector tests: processes reaped at the end, and moto's server (Kinesis,
S3) from the session fixture ``moto_endpoint`` (tests/conftest.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "connectors"))  # connector_helpers: Procs, free_port, ...

from aws_helpers import Aws, aws_procs  # noqa: E402
from connector_helpers import Procs, reaped  # noqa: E402


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Starts processes in ``tmp_path`` with test credentials and free connector ports in their
    environment; kills whatever is still running at the end."""
    yield from reaped(aws_procs(tmp_path))


@pytest.fixture
def aws(moto_endpoint: str) -> Aws:
    """Kinesis and S3 clients of the session's moto server; makes uniquely named streams and
    buckets."""
    return Aws(moto_endpoint)
