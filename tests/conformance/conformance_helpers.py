"""What the conformance tests of the built-in connectors share: the connector's environment,
the steps a passing check reports, and a waiting helper."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
MESSAGES = 30  # records per step: more than the check's credit window of 8
TIMEOUT = 30.0  # seconds a step may take

SOURCE_STEPS = (
    "handshake",
    "a stream opens",
    "written data arrives",
    "waits when out of credits",
    "resumes when credits come back",
    "reconnects after the worker drops it",
    "data written around the drop arrives",
    "unacknowledged data arrives",
    "replays what a crashed worker had not acknowledged",
    "never overspends its credits",
    "SIGTERM stops it cleanly",
)
SINK_STEPS = (
    "handshake",
    "output arrives",
    "answers two-phase commit",
    "accepts the worker again",
    "output arrives after reconnecting",
    "SIGTERM stops it cleanly",
)


def unique(prefix: str) -> str:
    """A fresh name for a topic, stream, channel, queue, table or bucket."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def connector_env(**extra: str) -> dict[str, str]:
    """This process's environment, with tests/conformance on PYTHONPATH (for the sink decoders
    of conformance_codecs) and ``extra`` set."""
    env = dict(os.environ)
    inherited = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *([inherited] if inherited else [])])
    env.update(extra)
    return env


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Wait until ``condition()`` holds.

    Raises:
        AssertionError: it did not within ``timeout`` seconds (the message says ``what``).
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
