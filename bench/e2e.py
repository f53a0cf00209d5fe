"""End-to-end runs through real processes: sender -> ``machida`` worker -> receiver.

The receiver starts first, then the worker (``--resilience-dir`` in a temporary directory, so
dead letters and checkpoints never land in the work tree), then the sender once the worker
logs that it runs. The rate is the inputs over the time from the sender's first write to the
receiver's last output; the worker's CPU time and peak RSS are read from ``/proc``. The peers
stay up after reporting until they are stopped, so their CPU time can be read too: the CPU the
rest of the machine used from the sender's start to the last output is the run's noise
indicator (``others``). The peers' CPU time reported is the sender's from its first frame
built to its last sent, and the receiver's up to its last output.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import proc

APPS = {
    "w1": "bench.apps.celsius",
    "w2": "bench.apps.word_count",
    "w1-timed": "bench.apps.celsius_timed",
}
CONNECTORS = {
    "w1": ("celsius", "fahrenheit"),
    "w2": ("lines", "counts"),
    "w1-timed": ("celsius", "fahrenheit"),
}


@dataclass(frozen=True)
class Scenario:
    """One end-to-end run.

    Attributes:
        workload: ``w1``, ``w2`` or ``w1-timed``.
        transport: ``tcp`` or ``connector``.
        messages: inputs to send (W2: lines).
        writer: the source connector's call, ``write`` or ``write_many``.
        resilience: run the worker with checkpoints every ``checkpoint_ns``.
        rate: offered load in messages/s (0: as fast as possible).
    """

    workload: str
    transport: str
    messages: int
    writer: str = "write_many"
    resilience: bool = False
    checkpoint_ns: int = 1_000_000_000
    rate: float = 0.0
    timeout: float = 120.0


class RunError(Exception):
    """A process failed, timed out, or an output was wrong."""


def run(s: Scenario) -> dict[str, Any]:
    """Run ``s``; RunError if a process failed or an output was wrong (the processes' logs are
    then kept in a directory the message names)."""
    with tempfile.TemporaryDirectory(prefix="wallaroo-bench-") as tmp:
        procs = proc.Procs()
        try:
            return _run(s, Path(tmp), procs)
        except (RunError, RuntimeError, TimeoutError) as exc:
            procs.stop_all()
            kept = tempfile.mkdtemp(prefix="wallaroo-bench-failed-")
            for log in Path(tmp).glob("*.log"):
                shutil.copy(log, kept)
            raise RunError(f"{exc} (logs in {kept})") from exc
        finally:
            procs.stop_all()


def _run(s: Scenario, tmp: Path, procs: proc.Procs) -> dict[str, Any]:
    host = proc.private_host()
    src_port, sink_port = proc.free_port(host), proc.free_port(host)
    app = APPS[s.workload]
    app_flags = [
        "--bench-transport",
        s.transport,
        "--bench-host",
        host,
        "--bench-source-port",
        str(src_port),
        "--bench-sink-port",
        str(sink_port),
    ]
    peer = [
        "--workload",
        s.workload,
        "--messages",
        str(s.messages),
        "--timeout",
        str(s.timeout),
        *app_flags,
    ]
    source_name, sink_name = CONNECTORS[s.workload]
    if s.transport == "tcp":
        receiver = [proc.PYTHON, "-m", "bench.peers.tcp_receive", "--port", str(sink_port)]
        sender = [proc.PYTHON, "-m", "bench.peers.tcp_send", "--port", str(src_port)]
    else:
        conn = ["--application-module", app]
        receiver = [
            proc.PYTHON,
            "-m",
            "bench.peers.connector_sink",
            *conn,
            "--connector",
            sink_name,
        ]
        sender = [
            proc.PYTHON,
            "-m",
            "bench.peers.connector_source",
            *conn,
            "--connector",
            source_name,
            "--writer",
            s.writer,
        ]
    if s.rate:
        sender += ["--rate", str(s.rate)]
    recv = procs.start([*receiver, *peer], tmp / "receiver.log")
    proc.wait_for_text(tmp / "receiver.log", "ready", recv, 30)
    worker = procs.start(_worker_command(s, app, tmp, app_flags), tmp / "worker.log")
    proc.wait_for_text(tmp / "worker.log", "is running application", worker, 30)
    t0, busy0 = time.monotonic(), proc.busy_seconds()
    cpu0 = proc.cpu_seconds(worker.pid)
    send = procs.start([*sender, *peer], tmp / "sender.log")
    received = _result(recv, tmp / "receiver.log", s.timeout * 2)
    cpu = proc.cpu_seconds(worker.pid) - cpu0
    peak = proc.peak_rss(worker.pid)
    sent = _result(send, tmp / "sender.log", s.timeout)
    # what the machine did from the sender's start to the last output, less our processes
    ours = cpu + received["cpu"] + sent["cpu"]
    others = (received["busy"] - busy0 - ours) / ((received["last"] - t0) * (os.cpu_count() or 1))
    elapsed = received["last"] - sent["start"]
    result = {
        "n": s.messages,
        "rate": s.messages / elapsed,
        "rate_cpu": s.messages / cpu if cpu > 0 else 0.0,
        "worker_cpu_s": cpu,
        "peak_rss": peak,
        "elapsed_s": elapsed,
        "peers_cpu_s": received["cpu"] + sent["cpu_sending"],
        "others": max(0.0, others),
        "load": os.getloadavg()[0],
    }
    result.update({k: v for k, v in received.items() if k.endswith("_ms")})
    if "written" in sent:
        result["write_s"] = sent["written"] - sent["start"]
    return result


def _worker_command(s: Scenario, app: str, tmp: Path, app_flags: list[str]) -> list[str]:
    command = [
        str(Path(proc.PYTHON).parent / "machida"),
        "--application-module",
        app,
        "--resilience-dir",
        str(tmp / "resilience"),
        *app_flags,
    ]
    if s.resilience:
        command += ["--run-with-resilience", "--time-between-checkpoints", str(s.checkpoint_ns)]
    return command


def _result(p: subprocess.Popen[bytes], log: Path, timeout: float) -> dict[str, Any]:
    """The JSON line a peer printed (it may go on running); RunError if it failed, timed out
    or reported a wrong output."""
    assert p.stdout is not None
    deadline = time.monotonic() + timeout
    line, ready, eof = b"", True, False
    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        while ready and not eof and not line.startswith(b"{"):  # skip a wrapper's lines
            ready = bool(sel.select(max(0.0, deadline - time.monotonic())))
            line = p.stdout.readline() if ready else b""
            eof = ready and not line
    name = next((a for a in p.args if str(a).startswith("bench.")), p.args[0])
    try:
        fields = json.loads(line)
    except ValueError as exc:
        tail = log.read_text(errors="replace")[-2000:]
        why = f"exited {p.wait(5)} without a result" if eof else "did not finish in time"
        raise RunError(f"{name} {why}:\n{tail}") from exc
    if not fields.get("ok", False):
        raise RunError(f"{name}: {fields.get('error') or 'failed'}")
    return fields
