"""Where a ``SinkConnector``'s values wait for :meth:`read`: the bounded :class:`Inbox`, and the
in-memory :class:`MemorySink` that fills it only on commit (transactional mode).

Memory stays bounded by back-pressure: the server thread stops reading a worker's connection
while the inbox is full, and TCP then pushes back on the worker. In transactional mode the
values held in uncommitted transactions count too, except that reading never stops while no
committed value waits: those values could only be released by a PHASE2 that is behind them in
the same connection, so stopping would deadlock (one transaction may thus exceed the bound).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wallaroo.errors import ConnectorError
from wallaroo.experimental.transactional import SinkRecovery, Transaction, TransactionalSink

__all__ = ["Batch", "Inbox", "MemorySink", "Origin"]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where ``count`` consecutive payloads of the inbox came from: the worker, its output
    stream, and their message ids (byte offsets in the worker's output), ``offsets[start]``
    onwards. Kept per run of payloads, not per payload, so that it costs nothing per value; a
    dead letter says which output it was."""

    worker: str | None
    stream_id: int | None
    offsets: Sequence[int]
    start: int
    count: int

    def split(self, count: int) -> tuple[Origin, Origin]:
        """The first ``count`` payloads' origin and the rest's (0 < ``count`` < ``self.count``)."""
        head = Origin(self.worker, self.stream_id, self.offsets, self.start, count)
        tail = Origin(
            self.worker, self.stream_id, self.offsets, self.start + count, self.count - count
        )
        return head, tail


@dataclass(frozen=True, slots=True)
class Batch:
    """Payloads taken from the inbox, with the origins that cover them in order."""

    payloads: list[bytes]
    origins: list[Origin]

    def origin(self, index: int) -> tuple[str | None, int | None, int | None]:
        """``(worker, stream id, message id)`` of payload ``index`` (Nones when unknown)."""
        for origin in self.origins:
            if index < origin.count:
                offsets, at = origin.offsets, origin.start + index
                return origin.worker, origin.stream_id, offsets[at] if at < len(offsets) else None
            index -= origin.count
        return None, None, None

    def rest(self, index: int) -> Batch:
        """The payloads from ``index`` on, with their origins."""
        origins: list[Origin] = []
        skip = index
        for origin in self.origins:
            if skip >= origin.count:
                skip -= origin.count
            elif skip:
                origins.append(origin.split(skip)[1])
                skip = 0
            else:
                origins.append(origin)
        return Batch(self.payloads[index:], origins)


def _origin_of(payloads: Sequence[bytes], worker: str | None, offset: int) -> Origin:
    """The origin of contiguous output starting at byte ``offset`` (message ids follow from the
    payloads' lengths)."""
    offsets = list(itertools.accumulate(map(len, payloads), initial=offset))
    return Origin(worker, None, offsets, 0, len(payloads))


class Inbox:
    """A bounded FIFO of payloads: the server thread puts, readers take.

    ``put_many`` never blocks; it reports whether the inbox is below capacity, so the producer
    can stop reading until ``on_room`` is called (once the inbox has drained to half).
    :meth:`hold` counts values kept elsewhere (uncommitted) against the same capacity.
    """

    def __init__(self, capacity: int, on_room: Callable[[], None]) -> None:
        self._items: deque[bytes] = deque()
        self._origins: deque[Origin] = deque()  # cover _items exactly, in order
        self._cond = threading.Condition()
        self._capacity = max(1, capacity)
        self._on_room = on_room
        self._want_room = False
        self._closed = False
        self._error: BaseException | None = None
        self._held = 0
        self.received = 0
        self.taken = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def held(self) -> int:
        """Values counted by :meth:`hold`: received, not yet committed."""
        return self._held

    def has_room(self) -> bool:
        """True while waiting and held values are fewer than the capacity, or none waits."""
        return not self._items or len(self._items) + self._held < self._capacity

    def check_room(self) -> bool:
        """Like :meth:`has_room`; when False, ``on_room`` is called once there is room."""
        with self._cond:
            return self._check_room()

    def put_many(self, payloads: Sequence[bytes], origin: Origin | None = None) -> bool:
        """Append ``payloads`` (from ``origin``; None: unknown); return False if the inbox is
        now full (stop reading)."""
        if not payloads:
            return self.check_room()
        with self._cond:
            self._items.extend(payloads)
            self._origins.append(origin or Origin(None, None, (), 0, len(payloads)))
            self.received += len(payloads)
            self._cond.notify_all()
            return self._check_room()

    def hold(self, count: int) -> bool:
        """Count ``count`` more held values (fewer when negative); return False if the inbox
        is now full (stop reading)."""
        with self._cond:
            self._held += count
            return self._check_room()

    def release(self, payloads: Sequence[bytes], origins: Sequence[Origin] = ()) -> None:
        """Move held values into the inbox: a transaction committed. ``origins`` cover
        ``payloads`` (empty: unknown)."""
        with self._cond:
            self._held -= len(payloads)
            self._items.extend(payloads)
            if origins:
                self._origins.extend(origins)
            elif payloads:
                self._origins.append(Origin(None, None, (), 0, len(payloads)))
            self.received += len(payloads)
            self._cond.notify_all()
            self._check_room()

    def push_front(self, batch: Batch) -> None:
        """Put back payloads a reader took but did not use, ahead of everything else."""
        with self._cond:
            self._items.extendleft(reversed(batch.payloads))
            self._origins.extendleft(reversed(batch.origins))
            self.taken -= len(batch.payloads)

    def take(self, max_count: int, timeout: float | None) -> Batch:
        """Remove and return 1 to ``max_count`` payloads (with their origins), waiting up to
        ``timeout`` seconds.

        Raises:
            TimeoutError: nothing arrived in time.
            ConnectorError: the inbox is empty and closed (the cause is chained if the server
                thread failed).
        """
        with self._cond:
            ready = self._cond.wait_for(
                lambda: self._items or self._closed or self._error is not None, timeout
            )
            if not self._items:
                if self._error is not None:
                    raise ConnectorError("the sink connector's server thread failed") from (
                        self._error
                    )
                if self._closed or ready:
                    raise ConnectorError("the sink connector is closed")
                raise TimeoutError(f"no value arrived within {timeout} s")
            count = min(max_count, len(self._items))
            if count == len(self._items):
                payloads = list(self._items)
                self._items.clear()
                origins = list(self._origins)
                self._origins.clear()
            else:
                payloads = [self._items.popleft() for _ in range(count)]
                origins = self._take_origins(count)
            self.taken += count
            wake = self._want_room and (
                not self._items or len(self._items) + self._held <= self._capacity // 2
            )
            if wake:
                self._want_room = False
        if wake:
            self._on_room()
        return Batch(payloads, origins)

    def close(self, error: BaseException | None = None) -> None:
        """No more payloads will come; readers drain what is left, then get ConnectorError."""
        with self._cond:
            self._closed = True
            self._error = error
            self._cond.notify_all()

    def _take_origins(self, count: int) -> list[Origin]:
        taken: list[Origin] = []
        while count:
            head = self._origins[0]
            if head.count <= count:
                taken.append(self._origins.popleft())
                count -= head.count
            else:
                first, self._origins[0] = head.split(count)
                taken.append(first)
                count = 0
        return taken

    def _check_room(self) -> bool:
        if self.has_room():
            return True
        self._want_room = True
        return False


class MemorySink(TransactionalSink):
    """One worker's output in memory: uncommitted values are held, committed ones go to the
    inbox (and so to ``read()``), in order.

    Nothing is durable. After a restart of the process the sink knows no offset (the connector
    takes the worker's) and no prepared transaction: the values of a transaction that voted
    commit and had no PHASE2 yet are lost if the worker completes that checkpoint, and
    committed values not yet read are lost; uncommitted output is sent again by the worker.
    """

    def __init__(self, inbox: Inbox, worker: str | None = None) -> None:
        self._inbox = inbox
        self._worker = worker
        self._open: list[bytes] = []
        self._open_origins: list[Origin] = []
        self._prepared: list[bytes] = []
        self._prepared_origins: list[Origin] = []
        self._prepared_txn: Transaction | None = None
        self._committed: int | None = None

    def recover(self) -> SinkRecovery:
        self._drop_open()
        return SinkRecovery(self._committed, self._prepared_txn)

    def append(self, offset: int, payloads: Sequence[bytes]) -> None:
        if not payloads:
            return
        self._open.extend(payloads)
        self._open_origins.append(_origin_of(payloads, self._worker, offset))
        self._inbox.hold(len(payloads))

    def prepare(self, txn: Transaction, problem: str | None) -> bool:
        if problem is not None:
            return False
        self._prepared, self._open = self._open, []
        self._prepared_origins, self._open_origins = self._open_origins, []
        self._prepared_txn = txn
        return True

    def commit(self, txn: Transaction) -> None:
        values, self._prepared = self._prepared, []
        origins, self._prepared_origins = self._prepared_origins, []
        self._prepared_txn = None
        self._committed = txn.end
        self._inbox.release(values, origins)

    def abort(self, txn: Transaction) -> None:
        self._drop_open()
        prepared = self._prepared_txn
        if prepared is not None and prepared.start >= txn.start:
            self._inbox.hold(-len(self._prepared))
            self._prepared, self._prepared_origins = [], []
            self._prepared_txn = None
            self._committed = prepared.start

    def _drop_open(self) -> None:
        if self._open:
            self._inbox.hold(-len(self._open))
            self._open, self._open_origins = [], []
