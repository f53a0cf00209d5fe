"""Reading a process's memory and CPU time from ``/proc`` (Linux), and starting processes."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
_TICK = os.sysconf("SC_CLK_TCK")


def _status(pid: int | str, field: str) -> int:
    """A ``kB`` field of ``/proc/PID/status``, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def rss(pid: int | str = "self") -> int:
    """Resident set size now, in bytes."""
    return _status(pid, "VmRSS")


def peak_rss(pid: int | str = "self") -> int:
    """Peak resident set size (``VmHWM``) since start or :func:`reset_peak`, in bytes."""
    return _status(pid, "VmHWM")


def reset_peak() -> None:
    """Restart this process's peak RSS from its current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def busy_seconds() -> float:
    """CPU time all processes of the machine have used (every CPU, not idle or iowait)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICK


class Others:
    """The share of the machine's CPU that processes other than ours used in an interval:
    the noise indicator of a measurement (0.0 on a quiet machine)."""

    def __init__(self) -> None:
        self.busy = busy_seconds()
        self.wall = time.monotonic()

    def share(self, our_cpu_seconds: float) -> float:
        wall = time.monotonic() - self.wall
        others = busy_seconds() - self.busy - our_cpu_seconds
        return max(0.0, others) / (wall * (os.cpu_count() or 1)) if wall > 0 else 0.0


def private_host() -> str:
    """A random loopback address other than 127.0.0.1 for one run: a process elsewhere on the
    machine that keeps reconnecting to 127.0.0.1:PORT (a test's worker whose peer is gone)
    cannot reach our listeners even when it picked the same port number."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    """This environment with the repository on ``PYTHONPATH`` (for ``bench.apps``)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), e.get("PYTHONPATH")) if p)
    e["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{e.get('PATH', '')}"
    return e


class Procs:
    """The processes of one run; :meth:`stop_all` ends every one still running."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as err:
            p = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        """SIGTERM each process still running, the last started first (the sender, the worker,
        then the receiver, which keeps answering the worker's last checkpoint)."""
        for p in reversed(self.procs):
            terminate(p)
            if p.stdout is not None:
                p.stdout.close()


def terminate(p: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM ``p`` if it still runs and wait for it to exit; SIGKILL it after ``timeout``
    seconds."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def wait_for_text(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until ``text`` appears in the log file ``path`` (or ``proc`` exits: an error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}); see {path}")
        time.sleep(0.02)
    raise TimeoutError(f"{text!r} did not appear in {path} within {timeout} s")


def accept_forever(sock: socket.socket, read: Callable[[socket.socket], None]) -> None:
    """Accept connections on the listening ``sock`` in a daemon thread, each read by
    ``read(conn)`` in a daemon thread of its own, until ``sock`` is closed."""

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=read, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
