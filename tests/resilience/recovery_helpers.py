"""What the recovery tests share: the counting worker's command and environment, the feeder,
the final count per key of what the sink received, waiting for the counts before a clean stop,
and the clean-up and checks at the end."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from endpoint import Endpoint

from diagnostics import give_up

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def final_counts(lines: Iterable[str]) -> dict[str, int]:
    """The highest count the sink received per key (``key:count`` lines)."""
    last: dict[str, int] = {}
    for line in lines:
        key, n = line.split(":")
        last[key] = max(last.get(key, 0), int(n))
    return last


def counting_worker(
    app: str, sink: Endpoint, resilience_dir: Path, interval_ns: int, *flags: str
) -> tuple[list[str], dict[str, str]]:
    """``(command, environment)`` of ``machida`` running ``app`` (from this folder) with
    resilience, its output to ``sink``; the environment also names a free source port."""
    env = {
        "PYTHONPATH": str(HERE),
        "COUNT_SOURCE_PORT": str(free_port()),
        "COUNT_SINK_PORT": str(sink.port),
        "PATH": f"{BIN}:/usr/bin:/bin",
    }
    command = [str(BIN / "machida"), "--application-module", app, "--run-with-resilience",
               "--resilience-dir", str(resilience_dir),
               "--time-between-checkpoints", str(interval_ns), *flags]  # fmt: skip
    return command, env


def start_feeder(
    total: int, keys: int, pause: str, env: dict[str, str], stderr: IO[str]
) -> subprocess.Popen[bytes]:
    """``feeder.py``: ``total`` records over ``keys`` keys to counting_app's ``keys`` source,
    ``pause`` seconds between batches, over a connector that resends what was not acked."""
    command = [sys.executable, str(HERE / "feeder.py"), str(total), str(keys), pause,
               "--application-module", "counting_app", "--connector", "keys"]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def kill_all(procs: Iterable[subprocess.Popen[bytes] | None], files: Iterable[IO[str]]) -> None:
    """SIGKILL each of ``procs`` still running (``None`` stands for one never started), then
    close ``files``."""
    for p in procs:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
    for f in files:
        f.close()


def assert_recovered(tmp_path: Path, sink: Endpoint, expected: dict[str, int], times: int) -> None:
    """The sink's final counts are ``expected`` and the worker logs (``w*.log`` in ``tmp_path``)
    recovered from a checkpoint at least ``times`` times."""
    text = "".join(p.read_text() for p in sorted(tmp_path.glob("w*.log")))
    assert final_counts(sink.lines()) == expected, text[-3000:]
    assert text.count("recovering from checkpoint") >= times, text[-3000:]


RUNNING = "is running application"
"""What the worker logs once its sources listen and its tasks run."""


def wait_running(worker: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    """Wait until ``worker`` logged :data:`RUNNING` in ``log``.

    A worker that does not get there is asked for its stacks (SIGUSR1: they land in its log)
    and killed, and the assertion shows the log.
    """
    deadline = time.monotonic() + timeout
    while RUNNING not in log.read_text(errors="replace"):
        if worker.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {worker.returncode}" if worker.poll() is not None else "hung"
            give_up(worker)
            raise AssertionError(
                f"the worker {state} before it ran ({timeout} s); its log {log}:\n"
                + log.read_text(errors="replace")[-6000:]
            )
        time.sleep(0.05)


def settle_and_stop(
    worker: subprocess.Popen[bytes],
    sink: Endpoint,
    expected: dict[str, int],
    timeout: float,
    log: Path,
) -> None:
    """Wait until ``worker`` runs (:func:`wait_running`), then up to ``timeout`` s for the
    sink's final counts to be ``expected``; then stop the worker with SIGTERM and check that
    it exits with 0 (the caller asserts the counts). A worker that does not stop in 20 s is
    asked for its stacks and killed."""
    wait_running(worker, log)
    deadline = time.monotonic() + timeout
    while final_counts(sink.lines()) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    worker.send_signal(signal.SIGTERM)
    try:
        code = worker.wait(20)
    except subprocess.TimeoutExpired:
        give_up(worker)
        raise AssertionError(
            "the worker did not stop 20 s after SIGTERM; its log:\n"
            + log.read_text(errors="replace")[-6000:]
        ) from None
    assert code == 0, f"the worker exited with {code}; its log:\n" + log.read_text()[-3000:]
