"""Conformance checks any connector program can run: does it behave like a connector should?

:func:`check_source_connector` plays the worker for a source connector process: it checks the
handshake, that at least one stream opens, that data written to the external system arrives,
that the connector never spends more credits than it was granted and waits while it has none,
that it reconnects and re-notifies after the worker drops the connection, that it replays what
a crashed worker had not acknowledged (the worker restarts from a checkpoint and answers
NOTIFY with the checkpointed position), and that SIGTERM stops it cleanly (exit code 0).
:func:`check_sink_connector` does the same for a sink connector from the worker's side of the
connection: handshake, output delivered to the external system, the
two-phase-commit frames answered, reconnection, SIGTERM.

The connector runs as a real process, configured by an application module the check writes
(connector names ``conformance`` and ``conformance_sink``), so it finds the check's fake worker
exactly as it would find a real one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wallaroo.decorators import Decoder
from wallaroo.testing.fake_peers import FakeSinkWorker, FakeSourceWorker, free_port

__all__ = [
    "ConformanceError",
    "ConformanceReport",
    "check_sink_connector",
    "check_source_connector",
    "python_module_command",
]

COOKIE = "conformance-cookie"
SOURCE_NAME = "conformance"
SINK_NAME = "conformance_sink"
MAX_CREDITS = 8
REFILL_CREDITS = 2

_APP = '''"""Written by wallaroo.testing.conformance for one check."""
import wallaroo
import wallaroo.experimental as wx
{imports}

@wx.stream_message_encoder
def _encode(value):
    return value if isinstance(value, bytes) else str(value).encode()


@wx.stream_message_decoder
def _decode(data):
    return data


def application_setup(args):
    ab = wallaroo.ApplicationBuilder("conformance")
    ab.source_connector({source!r}, encoder=_encode, decoder=_decode, port={source_port},
                        cookie={cookie!r}, max_credits={credits}, refill_credits={refill})
    ab.sink_connector({sink!r}, encoder=_encode, decoder={sink_decoder}, port={sink_port},
                      cookie={cookie!r})
    ab.new_pipeline("conformance", {source!r}).to_sink({sink!r})
    return ab.build()
'''


class ConformanceError(AssertionError):
    """A connector failed a conformance step; the message names the step and what was seen."""


@dataclass(frozen=True, slots=True)
class ConformanceReport:
    """What a passing check saw."""

    connector: str
    steps: tuple[str, ...]
    messages: int
    connections: int
    exit_code: int
    stderr: str


def _reference(fn: Any) -> tuple[str, str]:
    """(import lines, name) of the sink decoder in the generated module: a decorated decoder
    is imported as it is, a plain function is wrapped; None gives the identity decoder."""
    if fn is None:
        return "", "_decode"
    inner = fn.fn if isinstance(fn, Decoder) else fn
    module = getattr(inner, "__module__", None)
    qualname = getattr(inner, "__qualname__", "")
    if not module or "<" in qualname or module == "__main__":
        raise ValueError(
            f"sink_decoder must be defined at the top level of an importable module, got {fn!r}"
        )
    if isinstance(fn, Decoder):
        return f"from {module} import {qualname} as _sink_decoder", "_sink_decoder"
    return (
        f"from {module} import {qualname} as _raw_sink_decoder\n"
        "_sink_decoder = wx.stream_message_decoder(_raw_sink_decoder)",
        "_sink_decoder",
    )


class _Run:
    """The connector process and its generated application module."""

    def __init__(
        self,
        name: str,
        connector: str,
        command: Sequence[str],
        params: Mapping[str, str],
        env: Mapping[str, str] | None,
        *,
        source_port: int,
        sink_port: int,
        sink_decoder: Callable[..., Any] | None,
    ) -> None:
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix="wallaroo-conformance-"))
        module = f"conformance_app_{os.getpid()}_{source_port}_{sink_port}"
        imports, decoder = _reference(sink_decoder)
        (self.dir / f"{module}.py").write_text(
            _APP.format(
                imports=imports,
                source=SOURCE_NAME,
                sink=SINK_NAME,
                source_port=source_port,
                sink_port=sink_port,
                cookie=COOKIE,
                credits=MAX_CREDITS,
                refill=REFILL_CREDITS,
                sink_decoder=decoder,
            )
        )
        args = [*command, "--application-module", module, "--connector", connector]
        for key, value in params.items():
            args += [f"--{connector}-{key}", str(value)]
        full_env = dict(os.environ if env is None else env)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(self.dir), *filter(None, [full_env.get("PYTHONPATH", "")])]
        )
        self.log = (self.dir / "stderr.log").open("w+b")
        self.process = subprocess.Popen(  # noqa: S603 - the caller's own program
            args, env=full_env, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=self.log
        )
        self.steps: list[str] = []

    def alive(self, step: str) -> None:
        code = self.process.poll()
        if code is not None:
            self.fail(step, f"the connector exited early with code {code}")

    def stderr(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def fail(self, step: str, what: str) -> None:
        raise ConformanceError(
            f"connector {self.name!r} failed step '{step}': {what}\n--- its stderr ---\n"
            f"{self.stderr()[-4000:]}"
        )

    def wait_until(self, step: str, ok: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            self.alive(step)
            if time.monotonic() > deadline:
                self.fail(step, what)
            time.sleep(0.02)
        self.steps.append(step)

    def terminate(self, timeout: float) -> int:
        step = "SIGTERM stops it cleanly"
        self.alive(step)
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self.fail(step, f"still running {timeout} s after SIGTERM")
        if code != 0:
            self.fail(step, f"exit code {code} after SIGTERM, wanted 0")
        self.steps.append(step)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


def check_source_connector(
    command: Sequence[str],
    feed: Callable[[int, int], Sequence[bytes]],
    *,
    params: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    messages: int = 50,
    timeout: float = 30.0,
    name: str | None = None,
) -> ConformanceReport:
    """Check a source connector program against a fake worker.

    Args:
        command: how to start the program, without connector arguments, e.g.
            ``[sys.executable, "-m", "wallaroo.connectors.udp_source"]``.
        feed: ``feed(start, count)`` makes the external system produce ``count`` records
            (numbered from ``start``) and returns the payloads the worker should receive for
            them (what the connector writes; the check's encoder passes bytes unchanged and
            encodes ``str`` as UTF-8). It is called four times: while connected, while the
            worker withholds credits, just after the worker dropped the connection (a
            connector may notice the drop only when it next writes; those records must arrive
            once it has reconnected), and before a simulated worker crash (the worker receives
            them but never acknowledges them, as a worker with checkpoints does between two
            checkpoints; the connector must keep them and, after the crash, send them again).
        params: the connector's own parameters, without the ``--conformance-`` prefix.
        env: the program's environment (default: this process's).
        messages: records per step (more than the check's credit window of 8).
        timeout: seconds each step may take.
        name: the connector's name in messages (default: the last part of ``command``).

    Returns:
        What the check saw, when every step passed.

    Raises:
        ConformanceError: a step failed; the message names it and ends with the program's
            stderr.
    """
    label = name or os.path.basename(command[-1])
    worker = FakeSourceWorker(COOKIE, MAX_CREDITS, REFILL_CREDITS)
    run = _Run(
        label,
        SOURCE_NAME,
        command,
        params or {},
        env,
        source_port=worker.port,
        sink_port=free_port(),
        sink_decoder=None,
    )
    try:
        _source_steps(run, worker, feed, messages, timeout)
        if worker.min_credits < 0:
            run.fail(
                "never overspends its credits", f"it overspent its credits by {-worker.min_credits}"
            )
        run.steps.append("never overspends its credits")
        code = run.terminate(timeout)
        return ConformanceReport(
            label, tuple(run.steps), len(worker.payloads), worker.hellos, code, run.stderr()
        )
    finally:
        run.close()
        worker.close()


def _source_steps(
    run: _Run,
    worker: FakeSourceWorker,
    feed: Callable[[int, int], Sequence[bytes]],
    n: int,
    timeout: float,
) -> None:
    run.wait_until(
        "handshake",
        lambda: worker.hellos >= 1,
        timeout,
        "no HELLO with the application's cookie arrived",
    )
    run.wait_until("a stream opens", lambda: worker.opened >= 1, timeout, "no NOTIFY arrived")

    def deliver(step: str, start: int) -> None:
        expected = set(feed(start, n))
        run.wait_until(
            step,
            lambda: expected <= worker.payload_set(),
            timeout,
            f"{len(expected - worker.payload_set())} of {len(expected)} written "
            "records did not arrive",
        )

    deliver("written data arrives", 0)
    worker.hold_acks(True)
    before = len(worker.payloads)
    expected = set(feed(n, n))
    time.sleep(1.0)
    held = len(worker.payloads) - before
    if held > MAX_CREDITS or worker.min_credits < 0:
        run.fail(
            "waits when out of credits",
            f"it sent {held} messages on a window of {MAX_CREDITS} credits",
        )
    run.steps.append("waits when out of credits")
    worker.hold_acks(False)
    run.wait_until(
        "resumes when credits come back",
        lambda: expected <= worker.payload_set(),
        timeout,
        "the messages held back by the credit window never arrived",
    )
    opened = worker.opened
    worker.drop_connection()
    time.sleep(0.2)
    # A connector may only notice the drop when it next writes: records written now must
    # arrive after it reconnects.
    expected = set(feed(2 * n, n))
    run.wait_until(
        "reconnects after the worker drops it",
        lambda: worker.hellos >= 2 and worker.opened > opened,
        timeout,
        "no new HELLO and NOTIFY after the connection was dropped",
    )
    run.wait_until(
        "data written around the drop arrives",
        lambda: expected <= worker.payload_set(),
        timeout,
        "records written while the connection was down never arrived",
    )
    # Crash and replay: records the worker received but never acknowledged are lost with it;
    # the connector must send them again after it reconnects.
    time.sleep(0.3)
    worker.hold_acks(True, grant_credits=True)
    checkpoint = (len(worker.payloads), dict(worker.acked))
    expected = set(feed(3 * n, n))
    run.wait_until(
        "unacknowledged data arrives",
        lambda: expected <= worker.payload_set(),
        timeout,
        "records written before the crash never arrived",
    )
    hellos = worker.hellos
    worker.crash(*checkpoint)
    worker.hold_acks(False)
    run.wait_until(
        "replays what a crashed worker had not acknowledged",
        lambda: worker.hellos > hellos and expected <= worker.payload_set(),
        timeout,
        f"{len(expected - worker.payload_set())} unacknowledged records were not sent again",
    )


def check_sink_connector(
    command: Sequence[str],
    delivered: Callable[[Sequence[bytes]], bool],
    *,
    payload: Callable[[int], bytes] = lambda i: f"conformance-{i}".encode(),
    sink_decoder: Callable[[bytes], Any] | None = None,
    params: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    messages: int = 50,
    timeout: float = 30.0,
    name: str | None = None,
) -> ConformanceReport:
    """Check a sink connector program from the worker's side of the connection.

    Args:
        command: how to start the program, without connector arguments.
        delivered: ``delivered(payloads)`` is True once the external system holds every
            payload sent so far (the check calls it until it is, or the step times out).
        payload: the ``i``-th payload the fake worker sends.
        sink_decoder: how the sink connector decodes payloads: a decoder decorated with
            ``stream_message_decoder`` (or a plain function, which the check decorates),
            defined at the top level of a module the program can import (default: bytes
            unchanged).
        params, env, messages, timeout, name: as for :func:`check_source_connector`.

    Raises:
        ConformanceError: a step failed.
    """
    label = name or os.path.basename(command[-1])
    port = free_port()
    run = _Run(
        label,
        SINK_NAME,
        command,
        params or {},
        env,
        source_port=free_port(),
        sink_port=port,
        sink_decoder=sink_decoder,
    )
    worker = FakeSinkWorker(COOKIE, port)
    try:
        sent: list[bytes] = []

        def send(step: str, start: int) -> None:
            batch = [payload(i) for i in range(start, start + messages)]
            worker.send(batch)
            sent.extend(batch)
            run.wait_until(
                step,
                lambda: delivered(list(sent)),
                timeout,
                f"the external system did not get all {len(sent)} payloads",
            )

        run.wait_until(
            "handshake",
            worker.connect_and_intro,
            timeout,
            "no OK, NOTIFY_ACK and REPLY_UNCOMMITTED for the worker's intro",
        )
        send("output arrives", 0)
        run.wait_until(
            "answers two-phase commit",
            worker.phase1_answered,
            timeout,
            "no TWOPC_REPLY to PHASE1",
        )
        worker.drop_connection()
        run.wait_until(
            "accepts the worker again",
            worker.connect_and_intro,
            timeout,
            "the connector did not accept a new connection of the same worker",
        )
        send("output arrives after reconnecting", messages)
        code = run.terminate(timeout)
        return ConformanceReport(
            label, tuple(run.steps), len(sent), worker.connections, code, run.stderr()
        )
    finally:
        run.close()
        worker.close()


def python_module_command(module: str) -> list[str]:
    """``[python, -m, module]``: the usual ``command`` for a connector module."""
    return [sys.executable, "-m", module]
