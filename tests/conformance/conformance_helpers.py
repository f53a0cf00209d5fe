"""What the conformance tests of the built-in connectors share: the connector's environment,
running a check and the steps a passing check reports, a reader of what a sink wrote, and a
waiting helper."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from conformance_codecs import key_value, pair, payload

from wallaroo.testing import (
    ConformanceReport,
    check_sink_connector,
    check_source_connector,
    python_module_command,
)

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


def numbered(prefix: str, start: int, count: int) -> list[bytes]:
    """The payloads ``<prefix>-<start>`` to ``<prefix>-<start + count - 1>``, for a feed."""
    return [f"{prefix}-{i}".encode() for i in range(start, start + count)]


def sent_pairs(sent: Iterable[bytes]) -> set[tuple[str, str]]:
    """The ``(key, value)`` pairs of payloads made by :func:`conformance_codecs.payload`."""
    return {pair(p) for p in sent}


def check_source(
    connector: str,
    feed: Callable[[int, int], Sequence[bytes]],
    params: Mapping[str, str],
    env: Mapping[str, str] | None = None,
) -> ConformanceReport:
    """The conformance check of the built-in source ``wallaroo.connectors.<connector>``, with
    ``MESSAGES`` records a step, ``TIMEOUT`` and ``env`` (default: :func:`connector_env`)."""
    return check_source_connector(
        python_module_command(f"wallaroo.connectors.{connector}"),
        feed,
        params=params,
        env=connector_env() if env is None else env,
        messages=MESSAGES,
        timeout=TIMEOUT,
        name=connector,
    )


def check_sink(
    connector: str,
    delivered: Callable[[Sequence[bytes]], bool],
    params: Mapping[str, str],
    env: Mapping[str, str] | None = None,
) -> ConformanceReport:
    """The conformance check of the built-in sink ``wallaroo.connectors.<connector>``: as
    :func:`check_source`, sending :func:`conformance_codecs.payload` payloads that the sink
    decodes with :func:`conformance_codecs.key_value`."""
    return check_sink_connector(
        python_module_command(f"wallaroo.connectors.{connector}"),
        delivered,
        payload=payload,
        sink_decoder=key_value,
        params=params,
        env=connector_env() if env is None else env,
        messages=MESSAGES,
        timeout=TIMEOUT,
        name=connector,
    )


def assert_source_conforms(report: ConformanceReport) -> None:
    """A source passed every step, over three connections, with every record of four feeds."""
    assert report.steps == SOURCE_STEPS
    assert report.connections == 3
    assert report.messages >= 4 * MESSAGES


def assert_sink_conforms(report: ConformanceReport) -> None:
    """A sink passed every step, over two connections, with two rounds of payloads."""
    assert report.steps == SINK_STEPS
    assert report.connections == 2
    assert report.messages == 2 * MESSAGES


class PairReader:
    """Collects the ``(key, value)`` pairs that :meth:`read` yields into ``got``, calling it in a
    thread, ``pause`` seconds apart, until :meth:`close`. A subclass sets up what ``read``
    needs before it calls ``super().__init__()`` (which starts the thread)."""

    pause = 0.0

    def __init__(self) -> None:
        self.got: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def read(self) -> Iterable[tuple[str, str]]:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self.pause):
            self.got.update(self.read())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
