"""Runs one worker's two-phase commit against a :class:`TransactionalSink` (internal).

:class:`TransactionDriver` keeps the offsets of one worker's output stream across its
connections and checks every event before it calls a hook:

* output must continue exactly where the received output ends (its message id is its byte
  offset). A later offset means output is missing (the worker lost it while disconnected); an
  earlier one is a duplicate. Either makes the next PHASE1 vote abort, after which the worker
  rolls back, sends PHASE2 abort and sends the output again. Output that starts again at the
  last committed offset means the worker rolled back without a PHASE2: the uncommitted output
  is discarded and the new output taken.
* PHASE1 must name the output stream and exactly the range [last committed, received end), with
  no transaction still waiting for its PHASE2; otherwise the vote is abort.
* PHASE2 commit must name the prepared transaction (anything else is logged and ignored);
  PHASE2 abort discards the prepared transaction, or else the uncommitted output.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from wallaroo.experimental.transactional import Transaction, TransactionalSink

__all__ = ["Phase1Outcome", "TransactionDriver"]

log = logging.getLogger("wallaroo.connector")


@dataclass(frozen=True, slots=True)
class Phase1Outcome:
    """The vote on a PHASE1, and whether to close the connection ``"before_reply"`` or
    ``"after_reply"`` (fault injection requested by the sink), or not at all (None)."""

    vote: bool
    close: str | None = None


class TransactionDriver:
    """One worker's transactional output, across its connections.

    Args:
        worker: the worker's name.
        sink: the hooks that store its output.
        label: names the connector in log lines.

    Exceptions raised by the hooks propagate; the caller closes the connection, and the next
    :meth:`connected` starts again from what :meth:`TransactionalSink.recover` returns.
    """

    def __init__(self, worker: str, sink: TransactionalSink, label: str) -> None:
        self.worker = worker
        self.sink = sink
        self._label = label
        self._stream: int | None = None
        self._base: int | None = None  # where the open range starts: committed or prepared end
        self._end: int | None = None  # where the received output ends (None when _base is)
        self._problem: str | None = None
        self._prepared: Transaction | None = None
        self._known = False  # is _base confirmed (by the sink, or by a PHASE1 voted commit)?
        self._begun = False
        self.commits = 0
        self.aborts = 0

    @property
    def prepared(self) -> Transaction | None:
        """The transaction that voted commit and waits for its PHASE2."""
        return self._prepared

    def connected(self) -> None:
        """The worker (re)connected: recover the sink's state, forget uncommitted output."""
        self._stream = None
        self._problem = None
        self._begun = False
        self._prepared = None
        self._base = self._end = None
        recovery = self.sink.recover()
        prepared = recovery.prepared
        self._known = prepared is not None or recovery.committed is not None
        if prepared is not None:
            if recovery.committed is not None and prepared.start != recovery.committed:
                log.warning(
                    "%s: worker '%s': the prepared transaction %s starts at %d but the last "
                    "commit ended at %d",
                    self._label, self.worker, prepared.txn_id, prepared.start, recovery.committed,
                )  # fmt: skip
            self._prepared = prepared
            self._base = prepared.end
        else:
            self._base = recovery.committed
        self._end = self._base

    def notified(self, stream_id: int, point_of_ref: int) -> None:
        """NOTIFY of the output stream; its point of reference is the worker's output offset,
        taken as the start when the sink does not know where the output stands."""
        self._stream = stream_id
        if self._base is None:
            self._base = self._end = point_of_ref

    def uncommitted(self) -> tuple[str, ...]:
        """The answer to LIST_UNCOMMITTED: the prepared transaction, if any."""
        return () if self._prepared is None else (self._prepared.txn_id,)

    def payloads(self, stream_id: int, offsets: Sequence[int], payloads: Sequence[bytes]) -> None:
        """Output MESSAGEs: append what continues the received output, judge the rest."""
        if stream_id != self._stream:
            self._flag(f"output on stream {stream_id}, but the output stream is {self._stream}")
            return
        run: list[bytes] = []
        run_start = 0
        for offset, payload in zip(offsets, payloads, strict=True):
            if self._base is None or self._end is None:
                self._base = self._end = offset
            if offset == self._end and self._problem is None:
                if not run:
                    run_start = offset
                run.append(payload)
                self._end += len(payload)
                continue
            self._append(run_start, run)
            run = []
            if offset == self._base:  # the worker rolled back to its last commit
                self._rewind()
                run_start = offset
                run.append(payload)
                self._end = offset + len(payload)
            elif offset > self._end:
                self._flag(f"missing data: output expected at offset {self._end}, got {offset}")
            else:
                self._flag(
                    f"duplicate data: output at offset {offset} again (received up to "
                    f"{self._end}, committed up to {self._base})"
                )
        self._append(run_start, run)

    def phase1(self, txn_id: str, where: Sequence[tuple[int, int, int]]) -> Phase1Outcome:
        """PHASE1: check the range, call ``prepare`` and return the vote."""
        problem = self._check(where)
        if len(where) == 1:
            txn = Transaction(txn_id, where[0][1], where[0][2])
        else:
            txn = Transaction(txn_id, self._base or 0, self._end or 0)
        if not self._begun:
            self.sink.begin(txn.start)
            self._begun = True
        self.sink._disconnect = None
        vote = bool(self.sink.prepare(txn, problem)) and problem is None
        close, self.sink._disconnect = self.sink._disconnect, None
        if vote:
            self._prepared = txn
            self._base = txn.end
            self._known = True
            self._begun = False
        else:
            log.warning(
                "%s: worker '%s': vote abort on %s: %s",
                self._label, self.worker, txn_id, problem or "the sink voted abort",
            )  # fmt: skip
        return Phase1Outcome(vote, close)

    def phase2(self, txn_id: str, commit: bool) -> None:
        """PHASE2: commit or abort the prepared transaction, or discard uncommitted output."""
        prepared = self._prepared
        if prepared is not None and prepared.txn_id == txn_id:
            if commit:
                self.sink.commit(prepared)
                self.commits += 1
            else:
                end = prepared.end if self._end is None else max(self._end, prepared.end)
                self.sink.abort(Transaction(txn_id, prepared.start, end))
                self._base = self._end = prepared.start
                self.aborts += 1
            self._prepared = None
            self._problem = None
            self._begun = False
        elif commit:
            log.warning(
                "%s: worker '%s': PHASE2 commit of %s, which this sink has not prepared; nothing "
                "to commit (an in-memory sink loses a prepared transaction when it restarts)",
                self._label, self.worker, txn_id,
            )  # fmt: skip
        else:
            if self._base is not None and self._end is not None:
                self.sink.abort(Transaction(txn_id, self._base, self._end))
                self._end = self._base
            self._problem = None
            self._begun = False
            self.aborts += 1

    def close(self) -> None:
        """The connector stops."""
        self.sink.close()

    def _check(self, where: Sequence[tuple[int, int, int]]) -> str | None:
        if self._prepared is not None:
            return f"transaction {self._prepared.txn_id} has not had its phase 2"
        if len(where) != 1 or where[0][0] != self._stream:
            return f"the where list must name the output stream {self._stream} only: {where}"
        _, start, end = where[0]
        if self._base is None or self._end is None:
            self._base = self._end = start
        if start != self._base and not self._known:
            # The start was a guess (the sink lost its state): the worker knows better. The
            # output received so far is discarded by the PHASE2 abort that follows this vote.
            self._flag(f"missing data: the transaction starts at {start}, output from {self._base}")
            self._base = start
        if self._problem is not None:
            return self._problem
        if start != self._base:
            return f"the transaction starts at {start}, but the last commit ended at {self._base}"
        if end > self._end:
            return f"missing data: the transaction ends at {end}, output received up to {self._end}"
        if end < self._end:
            return f"the transaction ends at {end}, but output was received up to {self._end}"
        return None

    def _append(self, start: int, run: list[bytes]) -> None:
        if run:
            if not self._begun:
                self.sink.begin(self._base if self._base is not None else start)
                self._begun = True
            self.sink.append(start, run)

    def _rewind(self) -> None:
        base, end = self._base, self._end
        if base is not None and end is not None and end > base:
            log.info(
                "%s: worker '%s' sends output again from offset %d: %d uncommitted bytes discarded",
                self._label, self.worker, base, end - base,
            )  # fmt: skip
            self.sink.abort(Transaction("", base, end))
        self._end = base
        self._problem = None
        self._begun = False

    def _flag(self, problem: str) -> None:
        if self._problem is None:
            self._problem = problem
            log.warning(
                "%s: worker '%s': %s; the next PHASE1 votes abort",
                self._label, self.worker, problem,
            )  # fmt: skip
