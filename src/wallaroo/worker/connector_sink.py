"""The worker's side of a connector sink, with two-phase commit when checkpoints are on.

On every (re)connection the worker sends its intro (HELLO, NOTIFY of the output stream,
LIST_UNCOMMITTED) and starts sending output once the sink has answered all three. A transaction
the sink still holds is resolved: committed if it is the transaction of the last committed
checkpoint, aborted otherwise (always aborted without checkpoints).

With checkpoints, :meth:`ConnectorSinkOutput.barrier` closes the valve: output produced after the
checkpoint's barrier is held back until phase 2. :meth:`prepare` sends PHASE1 once everything
before the barrier has been sent, and returns the sink's vote (False when the sink is gone or
does not answer in time). :meth:`commit` / :meth:`abort` send PHASE2 and reopen the valve.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from wallaroo.errors import FrameError, ProtocolError
from wallaroo.protocol.events import (
    SinkError,
    SinkReady,
    SinkRestarted,
    StreamAccepted,
    UncommittedReported,
    VoteReceived,
)
from wallaroo.protocol.sink_session import WorkerSinkSession
from wallaroo.worker.egress import SinkOutput, batch_size
from wallaroo.worker.flow import Gate

__all__ = ["ConnectorSinkOutput"]

_rtags = itertools.count(1)


class ConnectorSinkOutput(SinkOutput):
    """Speaks the connector protocol to a sink connector (the worker is the client).

    Args:
        resilient: checkpoints are on: resolve uncommitted transactions by the last committed
            checkpoint, and take part in two-phase commit.
    """

    kind = "sink connector"

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        gate: Gate,
        log: logging.Logger,
        session: WorkerSinkSession,
        *,
        resilient: bool = False,
    ) -> None:
        super().__init__(name, host, port, gate, log)
        self.session = session
        self.resilient = resilient
        #: the transaction of the last committed checkpoint (resolves uncommitted ones)
        self.committed_txn: str | None = None
        self._got_ok = self._got_stream = self._got_list = False
        self._held: list[bytes] | None = None
        self._held_bytes = 0
        self._vote: tuple[str, asyncio.Future[bool]] | None = None
        self._in_txn: str | None = None  # PHASE1 sent on this connection, PHASE2 not yet
        # The transaction of the checkpoint in progress, reported uncommitted by the sink on a
        # new connection: its PHASE2 waits for the checkpoint's outcome (commit() / abort()).
        self._deferred: str | None = None

    # -- output -------------------------------------------------------------------------------
    def write_sized(self, payloads: list[bytes], nbytes: int | None) -> None:
        """Queue encoded outputs (``nbytes`` in all, if known); while a two-phase commit round is
        in progress (after :meth:`barrier`), hold them back until phase 2 instead.

        This is the one valve; the session only refuses output a caller failed to hold.
        """
        if self._held is not None:  # the valve is closed: a 2PC round is in progress
            self._held.extend(payloads)
            self._held_bytes += batch_size(payloads, nbytes)
            self._update_water()
            return
        super().write_sized(payloads, nbytes)

    @property
    def buffered_bytes(self) -> int:
        """Bytes waiting to be sent: queued, in the transport, and held back for phase 2."""
        return super().buffered_bytes + self._held_bytes

    def _frame(self, payloads: list[bytes]) -> bytes:
        return self.session.payloads(payloads)

    # -- two-phase commit -----------------------------------------------------------------------
    def barrier(self, checkpoint_id: int) -> dict[str, Any]:
        """The checkpoint's barrier reached this sink: hold later output; return the offsets
        to record in the checkpoint."""
        self._held, self._held_bytes = [], 0
        return {
            "offset": self.session.offset + self._pending_bytes,
            "txn": self.session.txn_id(checkpoint_id),
        }

    async def prepare(self, checkpoint_id: int, timeout: float) -> bool:
        """Phase 1: once all output before the barrier is sent, ask the sink to vote.

        Returns:
            The sink's vote; False when it is not connected or does not answer in ``timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._ready or self._pending or self._writing_paused:
            if loop.time() >= deadline:
                self._log.warning(
                    "sink connector '%s' was not ready for checkpoint %d", self.name, checkpoint_id
                )
                return False
            await asyncio.sleep(0.005)
        txn = self.session.txn_id(checkpoint_id)
        vote: asyncio.Future[bool] = loop.create_future()
        self._vote = (txn, vote)
        self._in_txn = txn
        self._send_control(self.session.phase1(checkpoint_id))
        try:
            return await asyncio.wait_for(vote, max(0.0, deadline - loop.time()))
        except TimeoutError:
            self._log.warning("sink connector '%s' did not vote on %s in time", self.name, txn)
            return False
        finally:
            self._vote = None

    def commit(self, txn_id: str) -> None:
        """Phase 2, commit: the checkpoint is durable. Reopen the valve."""
        self.committed_txn = txn_id
        self._phase2(txn_id, True)

    def abort(self, txn_id: str) -> None:
        """Phase 2, abort: drop the held output (the worker rolls back and replays)."""
        self._phase2(txn_id, False)

    def _phase2(self, txn_id: str, commit: bool) -> None:
        frame = self.session.phase2(txn_id, commit)
        # Sent on the connection that had the PHASE1, or on a new one whose sink reported the
        # transaction; else the sink never saw it and reports it on its next connection.
        if txn_id in (self._in_txn, self._deferred):
            self._send_control(frame)
            self._in_txn = self._deferred = None
        held, nbytes = self._held, self._held_bytes
        self._held, self._held_bytes = None, 0
        if commit and held:
            super().write_sized(held, nbytes)
        self._update_water()

    def restore(self, offset: int, committed_txn: str | None) -> None:
        """Roll back to a checkpoint: the output stream continues at ``offset``.

        A live connection is closed, so the sink sees a new intro and discards what it holds
        beyond its committed output.
        """
        self.session.restore(offset)
        self.committed_txn = committed_txn
        self._deferred = None
        self._pending, self._pending_bytes = [], 0
        self._held, self._held_bytes = None, 0
        self._close(None)
        self._update_water()

    def _send_control(self, frame: bytes) -> None:
        transport = self._transport
        if transport is not None and frame and not transport.is_closing():
            transport.write(frame)

    # -- connection ---------------------------------------------------------------------------
    def _connected(self) -> None:
        self._got_ok = self._got_stream = self._got_list = False
        self._send_control(self.session.intro(next(_rtags)))

    def data_received(self, data: bytes) -> None:
        """Handle the sink's frames; output starts once it has answered the whole intro.

        A frame that breaks the protocol is answered with an ERROR and the connection closed; an
        ERROR or a RESTART from the sink closes it too. Either way the output reconnects.
        """
        try:
            events = self.session.receive(data)
        except (ProtocolError, FrameError) as exc:
            self._log.error(
                "sink connector '%s' broke the protocol: %s; reconnecting", self.name, exc
            )
            self._close(exc)
            return
        for event in events:
            self._handle(event)
        if not self._ready and self._got_ok and self._got_stream and self._got_list:
            self._ready = True
            self._flush()

    def _handle(self, event: Any) -> None:
        if isinstance(event, SinkReady):
            self._got_ok = True
        elif isinstance(event, StreamAccepted):
            self._got_stream = True
        elif isinstance(event, UncommittedReported):
            self._resolve(event.txn_ids)
            self._got_list = True
        elif isinstance(event, VoteReceived):
            if self._vote is not None and self._vote[0] == event.txn_id:
                if not self._vote[1].done():
                    self._vote[1].set_result(event.commit)
            else:
                self._log.warning(
                    "sink connector '%s' voted on %s outside a checkpoint; ignored",
                    self.name,
                    event.txn_id,
                )
        elif isinstance(event, SinkError):
            self._log.error("sink connector '%s' sent an error: %s", self.name, event.message)
            self._close(None)
        elif isinstance(event, SinkRestarted):
            self._log.info("sink connector '%s' asked for a restart", self.name)
            self._close(None)

    def _resolve(self, txn_ids: tuple[str, ...]) -> None:
        for txn_id in txn_ids:
            if self.resilient and txn_id == self.session.pending_txn:
                # The sink voted on it and the connection was lost before the checkpoint was
                # decided (a commit vote may be in hand, the checkpoint being written): only
                # the checkpoint's outcome may settle it. Aborting it now would lose the output
                # of a checkpoint that then completes.
                self._log.warning(
                    "sink connector '%s' holds transaction %s of the checkpoint in progress; "
                    "it gets the checkpoint's outcome",
                    self.name,
                    txn_id,
                )
                self._deferred = txn_id
                continue
            commit = self.resilient and txn_id == self.committed_txn
            self._log.warning(
                "sink connector '%s' holds uncommitted transaction %s; %s it",
                self.name,
                txn_id,
                "committing" if commit else "aborting",
            )
            self._send_control(self.session.phase2(txn_id, commit))

    def _close(self, exc: Exception | None) -> None:
        transport = self._transport
        if transport is not None:
            if exc is not None:
                transport.write(self.session.error(str(exc)))
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the session's connection state; a vote still awaited counts as abort."""
        self.session.connection_lost()
        self._in_txn = self._deferred = None
        if self._vote is not None and not self._vote[1].done():
            self._vote[1].set_result(False)
        super().connection_lost(exc)
