"""``SpooledSink``: a transactional sink that spools each transaction to disk and delivers it
to an external system at PHASE2.

It is for a system with transactions of its own that cannot outlive a crash of the process
that opened them (Kafka's): the external transaction then exists only while PHASE2 runs, so
nothing the worker rolls back ever reaches it. Per worker W, in the spool directory
(:mod:`wallaroo.experimental.txn_spool` has the format):

* ``<connector>.W.open``: the output of the open transaction, appended as it arrives (not
  durable; discarded whenever the worker reconnects);
* ``<connector>.W.prepared``: at PHASE1, before voting commit, the open file is sealed (trailer,
  fsync, rename, fsync of the directory). It is the promise behind the vote.

PHASE2 commit reads the prepared file and calls :meth:`SpooledSink.deliver`, which must deliver
the payloads *and* a marker (the transaction's end offset) atomically, in one external
transaction; then the file is deleted. PHASE2 abort deletes it. On every connection of the
worker :meth:`SpooledSink.delivered_end` reads the marker: a prepared file the marker has
reached was already delivered (the process died after the external commit) and is deleted;
otherwise its transaction is reported to the worker, which commits it (delivered from the
spool) or aborts it.

For tests, a crash point (:func:`parse_crash_point`) kills the process with SIGKILL before the
n-th vote, right after it, or after the n-th external commit (before the spool is deleted).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from abc import abstractmethod
from collections.abc import Sequence
from typing import NoReturn

from wallaroo.experimental.transactional import SinkRecovery, Transaction, TransactionalSink
from wallaroo.experimental.txn_spool import SpoolWriter, fsync_dir, read_spool, spool_paths

__all__ = ["CRASH_POINTS", "SpooledSink", "parse_crash_point"]

CRASH_POINTS = ("before-vote", "after-vote", "after-commit")
"""The points where a crash point may kill the process (see :func:`parse_crash_point`)."""


def parse_crash_point(value: str | None) -> tuple[str, int] | None:
    """``(point, n)`` from ``before-vote:<n>``, ``after-vote:<n>`` or ``after-commit:<n>``
    (n from 1, counting transactions with output); None for no value.

    Raises:
        ValueError: the value is none of these.
    """
    if not value:
        return None
    point, _, count = value.partition(":")
    if point not in CRASH_POINTS or not count.isdigit() or int(count) < 1:
        raise ValueError(
            "crash_point must be before-vote:<n>, after-vote:<n> or after-commit:<n> (n from 1), "
            f"got {value!r}"
        )
    return point, int(count)


class SpooledSink(TransactionalSink):
    """One worker's output, spooled per transaction and delivered at PHASE2 (see the module
    docstring). Subclass it and implement :meth:`delivered_end` and :meth:`deliver`.

    The hooks run in the connector's thread. A hook that fails raises, and the connector closes
    the worker's connection with ERROR: on the worker's next connection :meth:`recover` starts
    again from the spool and the marker.

    Args:
        worker: the worker's name (part of the spool files' names).
        spool_dir: an existing directory that survives a crash of this process.
        connector: the connector's name (part of the spool files' names).
        log: the program's logger (every line names the worker).
        system: the external system's name in log lines (``"Kafka"``).
        crash: the test-only crash point, ``(point, n)``, or None.

    Raises:
        ValueError: (constructor) the worker's name cannot be part of a file name.
    """

    def __init__(
        self,
        worker: str,
        spool_dir: str,
        connector: str,
        *,
        log: logging.Logger,
        system: str,
        crash: tuple[str, int] | None = None,
    ) -> None:
        self.worker, self.log, self.system, self.crash = worker, log, system, crash
        self._open_path, self._prepared_path = spool_paths(spool_dir, connector, worker)
        self._writer: SpoolWriter | None = None
        self._prepared: Transaction | None = None  # sealed in the spool, PHASE2 pending
        self._voted_here: set[str] = set()  # prepared by this process (not read back)
        self._phase1s = 0  # PHASE1s of ranges with output (the crash points count them)
        self._votes = 0  # commit votes on ranges with output
        self._commits = 0  # non-empty transactions delivered
        self._die = False
        self.empty = 0  # empty outputs dropped
        self._dead: set[tuple[str, int]] = set()  # (txn id, index) recorded as dead letters

    # -- what a subclass implements ---------------------------------------------------------------
    @abstractmethod
    def delivered_end(self) -> int | None:
        """The marker: the end offset (in the worker's output) of the last transaction delivered
        to the external system; None when it has none (nothing delivered yet). Called on every
        connection of the worker, after the open spool is discarded; connecting to the system
        here should also settle a predecessor's unfinished external transaction.

        Raises:
            Exception: the system did not answer; the worker's connection is closed and it
                retries.
        """

    @abstractmethod
    def deliver(self, txn: Transaction, payloads: list[bytes]) -> None:
        """Deliver ``payloads`` (the prepared ``txn``, from the spool) and the marker
        ``txn.end`` in one external transaction, committed before this returns.

        Raises:
            Exception: it could not be committed; the spool file is kept, and :meth:`recover`
                (through the marker) settles whether it was delivered.
        """

    def destination(self) -> str:
        """Where output goes, for the log line of :meth:`recover` (the system's name)."""
        return self.system

    def first_time(self, txn: Transaction, index: int) -> bool:
        """True the first time payload ``index`` of ``txn`` is reported here (until ``txn`` is
        delivered): a dead letter is recorded once, however often a commit is attempted."""
        if (txn.txn_id, index) in self._dead:
            return False
        self._dead.add((txn.txn_id, index))
        return True

    # -- the hooks --------------------------------------------------------------------------------
    def recover(self) -> SinkRecovery:
        """Discard the open spool, read the marker and the prepared spool file, and settle a
        prepared transaction that was already delivered.

        Returns:
            The marker as the committed offset (None when there is none) and the prepared
            transaction still to be resolved by the worker, if any (its start is then the
            committed offset).

        Raises:
            Exception: what :meth:`delivered_end` raises.
            ValueError: the prepared spool file is corrupt (it is never skipped).
            OSError: a spool file cannot be read or deleted.
        """
        self._enter()
        self._discard_open()
        marker = self.delivered_end()
        spooled = read_spool(self._prepared_path)
        prepared = None if spooled is None else spooled.txn
        committed = marker
        if prepared is not None and marker is not None and marker >= prepared.end:
            self.log.info(
                "worker '%s': %s is already in %s (the marker is at %d); deleting its spool",
                self.worker, prepared.txn_id, self.system, marker,
            )  # fmt: skip
            self._remove_prepared()
            prepared = None
        elif prepared is not None:
            if marker not in (None, prepared.start):
                self.log.warning(
                    "worker '%s': the %s marker is at %s but the spooled %s starts at %d",
                    self.worker, self.system, marker, prepared.txn_id, prepared.start,
                )  # fmt: skip
            committed = prepared.start
        self._prepared = prepared
        self.log.info(
            "worker '%s': %s committed to %s%s",
            self.worker, "nothing yet" if committed is None else f"output up to offset {committed}",
            self.destination(),
            "" if prepared is None else f"; {prepared.txn_id} waits in the spool for its phase 2",
        )  # fmt: skip
        return SinkRecovery(committed, prepared)

    def append(self, offset: int, payloads: Sequence[bytes]) -> None:
        """Append output to the open spool file (buffered, not durable); empty outputs are
        dropped.

        Raises:
            ValueError: the output does not continue the spool (the connector prevents it).
            OSError: the spool file cannot be written; the worker sends the output again.
        """
        self._enter()
        kept = [payload for payload in payloads if payload]
        if len(kept) < len(payloads):
            # An empty output takes no room in the worker's byte offsets, so whether it was
            # already delivered can never be told: it is dropped (the same way every time).
            if not self.empty:
                self.log.warning("worker '%s': dropping empty outputs (zero bytes)", self.worker)
            self.empty += len(payloads) - len(kept)
        if not kept:
            return
        if self._writer is None:
            self._writer = SpoolWriter(self._open_path, offset)
        elif offset != self._writer.end:
            raise ValueError(f"output at offset {offset}, but the spool ends at {self._writer.end}")
        self._writer.write(kept)

    def prepare(self, txn: Transaction, problem: str | None) -> bool:
        """PHASE1: seal the open spool file as the prepared transaction and vote commit; vote
        abort on a ``problem`` or a range that does not match the spool. An empty range votes
        commit with nothing to keep.

        Raises:
            OSError: the spool cannot be made durable: no vote is sent and the worker's
                checkpoint aborts.
        """
        self._enter()
        if txn.end > txn.start:
            self._phase1s += 1
            if self.crash == ("before-vote", self._phase1s):
                self._crash(f"at PHASE1 {self._phase1s}, before its vote")
        if problem is not None:
            return False
        writer = self._writer
        if txn.start == txn.end and writer is None:
            return True  # nothing to make durable, nothing to deliver
        if writer is None or (writer.start, writer.end) != (txn.start, txn.end):
            self.log.warning(
                "worker '%s': %s covers [%d, %d) but the spool holds %s; vote abort",
                self.worker, txn.txn_id, txn.start, txn.end,
                "nothing" if writer is None else f"[{writer.start}, {writer.end})",
            )  # fmt: skip
            return False
        writer.seal(txn, self.worker, self._prepared_path)
        self._writer = None
        self._prepared = txn
        self._voted_here.add(txn.txn_id)
        self._votes += 1
        if self.crash == ("after-vote", self._votes):
            self._die = True  # at the next hook: the vote is sent first
        return True

    def commit(self, txn: Transaction) -> None:
        """PHASE2 commit: :meth:`deliver` the prepared payloads, then delete the spool file.

        Raises:
            Exception: what :meth:`deliver` raises; the spool file is kept.
            ValueError: the spool does not hold ``txn`` (it was lost or replaced).
            OSError: the spool file cannot be read or deleted.
        """
        self._enter()
        if txn.start == txn.end:
            return
        spooled = read_spool(self._prepared_path)
        if spooled is None or spooled.txn != txn:
            raise ValueError(
                f"PHASE2 commit of {txn.txn_id} [{txn.start}, {txn.end}), but the spool holds "
                f"{'nothing' if spooled is None else spooled.txn}"
            )
        if txn.txn_id not in self._voted_here:
            self.log.info(
                "worker '%s': producing %s (%d records) from the spool in a new %s transaction",
                self.worker, txn.txn_id, len(spooled.payloads), self.system,
            )  # fmt: skip
        self.deliver(txn, spooled.payloads)
        self._dead = {dead for dead in self._dead if dead[0] != txn.txn_id}
        self._commits += 1
        if self.crash == ("after-commit", self._commits):
            self._crash(f"after the {self.system} commit of {txn.txn_id}, before its spool is "
                        "deleted")  # fmt: skip
        self._remove_prepared()
        self._voted_here.discard(txn.txn_id)
        self._prepared = None

    def abort(self, txn: Transaction) -> None:
        """PHASE2 abort, or output sent again from the committed offset: delete the spool
        files from ``txn.start`` on (nothing of them was delivered).

        Raises:
            OSError: a spool file cannot be deleted; :meth:`recover` retries on the next
                connection, and the worker resolves a prepared transaction again.
        """
        self._enter()
        prepared = self._prepared
        if prepared is not None and txn.start <= prepared.start:
            self._remove_prepared()
            self._voted_here.discard(prepared.txn_id)
            self._prepared = None
        self._discard_open()

    def close(self) -> None:
        """The connector stops: drop the open spool file. A subclass that overrides it calls
        ``super().close()`` and releases its clients."""
        if self._writer is not None:
            self._writer.discard()
            self._writer = None

    # -- the spool and fault injection ----------------------------------------------------------
    def _discard_open(self) -> None:
        if self._writer is not None:
            self._writer.discard()
            self._writer = None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._open_path)

    def _remove_prepared(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._prepared_path)
            fsync_dir(self._prepared_path)

    def _enter(self) -> None:
        """Every hook starts here: the crash point ``after-vote`` strikes at the first hook
        after the vote (the vote was sent; PHASE2 not yet applied)."""
        if self._die:
            self._crash(f"after commit vote {self._votes}, before its phase 2")

    def _crash(self, where: str) -> NoReturn:
        self.log.warning("crash_point: killing this process %s", where)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        raise SystemExit(137)  # not reached
