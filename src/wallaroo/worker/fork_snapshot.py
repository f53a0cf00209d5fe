"""State blobs of a checkpoint serialised by a forked child: processing pauses only for fork().

Serialising every key group on the event loop blocks the worker for as long as pickling takes
(about 1.6 s for 1,000,000 small keys). Instead, at the checkpoint's cut the worker forks: the
child holds a copy-on-write image of every state exactly as it is at that moment, pickles the
key groups and writes them to a temporary file, then exits; the worker goes on processing
at once (fork takes a few milliseconds for a few hundred megabytes) and collects the blobs
in a thread when the child is done. Everything else of the round (positions, votes, the
durable write, PHASE2) is unchanged, so the commit order and exactly-once hold as before.

Memory: while the child runs, pages the worker writes to are copied (by the kernel, once per
page), so a checkpoint of a busy worker can cost up to its state's size again, for the time
the child takes. The child closes every inherited descriptor first (a connection the worker
closes meanwhile is closed at once) and resets the signal handlers (a signal meant for the
worker never reaches its event loop through the child).

Used by the embedded worker that ``machida`` runs, on Linux; ``WALLAROO_FORK_SNAPSHOTS=0``
turns it off (the state is then serialised on the event loop, as in a worker run in-process).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pickle
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wallaroo.engine.state import StateStore
from wallaroo.errors import CheckpointError
from wallaroo.resilience.round import Snapshot
from wallaroo.resilience.state_codec import group_blobs

__all__ = ["ENV", "ForkedBlobs", "capture", "fork_snapshots_available"]

ENV = "WALLAROO_FORK_SNAPSHOTS"
"""Set to ``0`` to serialise checkpoints on the event loop instead."""

Blobs = list[tuple[str, bytes]]
_PREFIX = ".snapshot-"


def fork_snapshots_available() -> bool:
    """True on Linux unless :data:`ENV` is ``0``."""
    return sys.platform == "linux" and hasattr(os, "fork") and os.environ.get(ENV, "1") != "0"


class ForkedBlobs:
    """The blobs of ``stores`` at this moment, serialised by a child process.

    Args:
        stores: the state stores to serialise (every key group holding keys).
        serialize: the application's state serialisation.
        directory: where the child's temporary file goes (the checkpoint directory).

    Raises:
        OSError: the process could not fork, or the file could not be made.
    """

    def __init__(
        self, stores: Sequence[StateStore], serialize: Callable[[Any], bytes], directory: Path
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(f"{_PREFIX}*.tmp"):  # a worker killed while its child ran
            stale.unlink(missing_ok=True)
        fd, path = tempfile.mkstemp(prefix=_PREFIX, suffix=".tmp", dir=directory)
        self.path = Path(path)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child (measured by the fault and resilience suites)
            _child(fd, stores, serialize)
        os.close(fd)
        self.pid = pid

    async def blobs(self) -> Blobs:
        """Wait (in a thread) for the child and return its blobs.

        Raises:
            CheckpointError: a state could not be serialised, or the child failed.
        """
        return await asyncio.get_running_loop().run_in_executor(None, self._collect)

    def _collect(self) -> Blobs:
        try:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                raise CheckpointError(f"the snapshot process {self.pid} exited with {code}")
            with self.path.open("rb") as f:
                error, blobs = pickle.load(f)  # noqa: S301 - written by our own child
        finally:
            self.path.unlink(missing_ok=True)
        if error is not None:
            raise CheckpointError(error)
        return list(blobs)

    def cancel(self) -> None:
        """Stop the child and remove its file (the round failed before the blobs were needed)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self.path.unlink(missing_ok=True)


def _child(fd: int, stores: Sequence[StateStore], serialize: Callable[[Any], bytes]) -> None:
    """In the forked child: write ``(error, blobs)`` to ``fd`` and exit, never returning."""
    code = 1
    try:
        with contextlib.suppress(ValueError):  # only the main thread may touch signals
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
                signal.signal(sig, signal.SIG_DFL)
        os.closerange(3, fd)
        os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)
        result: tuple[str | None, Blobs]
        try:
            result = (None, [b for store in stores for b in group_blobs(store, serialize)])
        except CheckpointError as exc:
            result = (str(exc), [])
        except Exception as exc:
            result = (f"{type(exc).__name__}: {exc}", [])
        with os.fdopen(fd, "wb") as out:
            pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)
        code = 0
    finally:
        os._exit(code)


async def capture(
    snapshot: Callable[[bool], Snapshot],
    stores: Sequence[StateStore],
    serialize: Callable[[Any], bytes],
    directory: Path | None,
    warn: Callable[[str], None],
) -> Snapshot:
    """A checkpoint's capture: ``snapshot(with_blobs)`` takes the positions at the cut; the
    blobs come from a forked child when ``directory`` is given (else ``snapshot`` serialises
    them itself, on the event loop, also when the process cannot fork: ``warn`` says why). A
    state that cannot be serialised, or a child that fails, gives a :class:`Snapshot` with its
    ``error``, as the round expects.
    """
    forked = None
    try:
        if directory is not None:
            try:
                forked = ForkedBlobs(stores, serialize, directory)
            except OSError as exc:
                warn(f"cannot fork for the checkpoint ({exc}); serialising on the event loop")
        taken = snapshot(forked is None)  # no await since the fork: the same cut
        if forked is not None:
            blobs, forked = await forked.blobs(), None
            taken = dataclasses.replace(taken, blobs=tuple(blobs))
        return taken
    except CheckpointError as exc:  # a state that cannot be serialised: try again later
        return Snapshot(error=str(exc))
    finally:
        if forked is not None:
            forked.cancel()
