"""Fixtures of the RabbitMQ connector tests: real servers, real processes, unique names per
test.

``procs``, ``uid``, ``launch``, ``wait_until`` and ``client`` (of the machine's Redis) are shared
with tests/redis and tests/postgres, in tests/connectors/connector_helpers.py."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "connectors"))  # the shared process helpers and fixtures
from connector_helpers import client, launch, procs, uid, wait_until  # noqa: E402, F401
