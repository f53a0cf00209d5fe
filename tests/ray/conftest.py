"""The Ray tier: a session-scoped local Ray cluster on 127.0.0.1, and the drivers' helpers.

A missing ``ray`` is a failure, never a skip (``decisions.md``): the test extras install
it. Never ``ray stop`` (it would stop every user's Ray on a shared
machine): the session's cluster is ended with ``ray.shutdown()``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))

from ray_helpers import HEALTH_CHECKS, RAY_ENV, require_ray


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The GCS address of a local Ray cluster (2 CPUs, no dashboard) for the session."""
    require_ray()
    import ray

    os.environ.update(RAY_ENV)
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        _system_config=HEALTH_CHECKS,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
