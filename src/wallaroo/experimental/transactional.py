"""The contract of a transactional sink: the hooks a ``SinkConnector`` calls to commit output.

A worker with resilience runs a two-phase commit with every connector sink at each checkpoint:
it streams output (each payload's message id is its byte offset in the worker's output), asks
PHASE1 "may the range [start, end) commit?", and after the checkpoint sends PHASE2 with the
outcome. A sink that implements :class:`TransactionalSink` and is plugged into
``SinkConnector(..., sink_factory=...)`` gets exactly-once output: the connector checks the
offsets, answers the protocol, and calls the hooks in this order for each worker::

    recover()                        on every (re)connection of the worker, before anything else
    begin(start)                     before the first append (or prepare) of a transaction
    append(offset, payloads) ...     contiguous output of the open transaction
    prepare(txn, problem) -> vote    PHASE1: make [start, end) durable and record the vote
    commit(txn) | abort(txn)         PHASE2 (or the resolution of an uncommitted transaction)

Every hook runs in the connector's thread, one at a time for all workers. A hook that raises
closes that worker's connection with ERROR (the error is logged); the worker reconnects and
:meth:`TransactionalSink.recover` runs again, so a sink that records each step durably before it
returns recovers from any failure, including a crash of its process. See
``docs/connectors/file_sink.md`` for the contract in prose and ``wallaroo.connectors.file_sink``
for a complete durable implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SinkRecovery", "Transaction", "TransactionalSink"]


@dataclass(frozen=True, slots=True)
class Transaction:
    """A range of one worker's output: the bytes from offset ``start`` up to ``end`` (excluded).

    Attributes:
        txn_id: the worker's transaction id, ``<app>-w-<worker>-id-<sink>:c_id=<checkpoint>``;
            empty when the range never had a PHASE1 (output the worker took back).
        start: the offset of the range's first byte (the end of the last committed range).
        end: the offset just past its last byte.
    """

    txn_id: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class SinkRecovery:
    """What a sink holds for a worker, as :meth:`TransactionalSink.recover` found it.

    Attributes:
        committed: the end offset of the last committed transaction (0 for a sink that never
            committed anything), or None when the sink does not know it (an in-memory sink
            after a restart): the connector then takes the offset the worker announces.
        prepared: the transaction that voted commit and has had no PHASE2 yet, if any. Its
            ``start`` must equal ``committed`` when both are known. It is reported to the
            worker, which resolves it with PHASE2 (commit if its checkpoint completed).
    """

    committed: int | None
    prepared: Transaction | None = None


class TransactionalSink(ABC):
    """The storage side of a transactional sink, for one worker: subclass it and implement
    :meth:`recover`, :meth:`append`, :meth:`prepare`, :meth:`commit` and :meth:`abort`.

    The connector creates one instance per worker name (the ``sink_factory(worker_name)``
    argument of ``SinkConnector``) when that worker first connects, and keeps it for the
    connector's lifetime. It validates the protocol before calling a hook: offsets are
    contiguous, PHASE1 covers exactly the bytes appended since the last commit, PHASE2 names
    the prepared transaction. Data the connector cannot accept (a gap, a duplicate, a PHASE1
    that does not match) makes the next vote abort, and ``problem`` says why.

    The guarantee a subclass must give: after any crash, :meth:`recover` returns the last
    committed offset and the prepared transaction exactly as they were last returned from
    :meth:`prepare`, :meth:`commit` or :meth:`abort`. Output that was only appended is not
    protected; it is discarded and the worker sends it again.
    """

    _disconnect: str | None = None  # a per-instance request, set by disconnect()

    @abstractmethod
    def recover(self) -> SinkRecovery:
        """The worker (re)connected: discard everything past the prepared transaction (or past
        the last commit when none is prepared) and return the durable state.

        Returns:
            the last committed offset and the prepared transaction, if any.

        Raises:
            Exception: the state cannot be read (e.g. a corrupt file). The worker's connection
                is closed with ERROR; it retries, and ``recover`` is called again.
        """

    def begin(self, start: int) -> None:  # noqa: B027 - an optional hook, empty by default
        """A new transaction starts at offset ``start`` (called before its first
        :meth:`append`, or before :meth:`prepare` when it is empty). Does nothing by default."""

    @abstractmethod
    def append(self, offset: int, payloads: Sequence[bytes]) -> None:
        """Add output of the open transaction: ``payloads`` are contiguous and the first starts
        at ``offset``, which is where the previous append ended.

        It need not be durable yet. Raising closes the connection (the worker sends it again).
        """

    @abstractmethod
    def prepare(self, txn: Transaction, problem: str | None) -> bool:
        """PHASE1: make every byte of ``txn`` durable, record the vote durably, return it.

        Args:
            txn: the range to prepare, exactly the bytes appended since the last commit.
            problem: why the connector must vote abort (missing or duplicate output, a range
                that does not match what was appended), or None. When it is not None the vote
                is abort whatever this returns; record it as such.

        Returns:
            True to vote commit: the sink promises it can still commit ``txn`` after any crash,
            until PHASE2 says otherwise. False to vote abort.

        Call :meth:`disconnect` here to close the connection around the reply (fault
        injection). If this raises, no vote is sent and the connection is closed: the worker
        aborts the checkpoint, and on reconnection a transaction recorded as prepared is
        reported and resolved.
        """

    @abstractmethod
    def commit(self, txn: Transaction) -> None:
        """PHASE2 commit of the prepared ``txn``: make it visible and record it durably.

        If this raises, the connection is closed; ``recover`` must then still report ``txn`` as
        prepared (the worker resolves it again, with commit).
        """

    @abstractmethod
    def abort(self, txn: Transaction) -> None:
        """Discard ``txn``: the output goes back to offset ``txn.start``, where the next
        transaction begins. Called for a PHASE2 abort (of the prepared transaction, or of output
        that never voted commit), and when the worker sends output again from the last committed
        offset (it rolled back), with ``txn.txn_id`` then empty. Record it before discarding.
        """

    def close(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """The connector stops: release files and connections. Does nothing by default."""

    def disconnect(self, *, after_reply: bool = False) -> None:
        """Ask the connector to close this worker's connection around the current vote: before
        the vote is sent (the worker never sees it), or just after. Only honoured from
        :meth:`prepare`; meant for fault injection in tests."""
        self._disconnect = "after_reply" if after_reply else "before_reply"
