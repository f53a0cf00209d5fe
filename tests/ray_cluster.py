"""The session's local Ray cluster: its environment, health checks and the check that Ray is
installed (used by the Ray tier in tests/ray and by the engine tests' Ray mode)."""

from __future__ import annotations

import os

import pytest

RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
}
# Read by Ray when it is imported and started: set before any test imports it.
os.environ.update(RAY_ENV)
# Node deaths are noticed in about a second instead of Ray's default 30 s or so.
HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 300,
    "health_check_timeout_ms": 300,
    "health_check_failure_threshold": 3,
}


def require_ray() -> None:
    """Fail when ray is not installed: the test extras install it, and a missing backend must
    not pass as a skipped test."""
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.fail(
            "ray is not installed; the test extras install it: pip install -e '.[test]'",
            pytrace=False,
        )


def start_ray() -> str:
    """Start a local Ray cluster in this process (2 CPUs, no dashboard); its GCS address."""
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
    return str(ray.get_runtime_context().gcs_address)
