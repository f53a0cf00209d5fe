"""Make a hang diagnosable: before a test gives up on a process it started, ask it for its
stacks.

``machida`` and every connector program register :mod:`faulthandler` on SIGUSR1: the signal
writes every thread's stack to the process's stderr (its log) and the process goes on.
:func:`dump_stacks` sends it and waits a moment for the stacks to land; :func:`give_up` then
kills the process. Every helper that waits for a process to come up, or to stop, calls one of
them when the wait fails, so the failure message shows where the process was stuck.
"""

from __future__ import annotations

import signal
import subprocess
import time

__all__ = ["START_LINE", "dump_stacks", "error_lines", "give_up"]


def dump_stacks(popen: subprocess.Popen[bytes] | subprocess.Popen[str], wait: float = 1.0) -> None:
    """SIGUSR1 to a process that still runs, then ``wait`` seconds for it to write its stacks."""
    if popen.poll() is not None:
        return
    try:
        popen.send_signal(signal.SIGUSR1)
    except ProcessLookupError:
        return
    time.sleep(wait)


def give_up(popen: subprocess.Popen[bytes] | subprocess.Popen[str], wait: float = 1.0) -> None:
    """:func:`dump_stacks`, then SIGKILL and reap the process."""
    dump_stacks(popen, wait)
    if popen.poll() is None:
        popen.kill()
    popen.wait(10)


START_LINE = " worker starting: pid "
"""What the first line of a worker's log holds (the version, the pid and the command)."""


def error_lines(stderr: str) -> list[str]:
    """A worker's stderr without its start-up line: what it said about the error."""
    return [line for line in stderr.splitlines() if START_LINE not in line]
