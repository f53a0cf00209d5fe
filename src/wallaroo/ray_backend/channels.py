"""Channels: batched, bounded, ordered sends from one actor to another.

A :class:`Channel` carries everything one actor sends to one other actor, as typed records:
data for a segment (:class:`Data` ``(segment, values, keys, times)``), data for a sink
(``Data(-1, payloads, None, None)``) and barriers (:class:`Barrier` ``(segment,
checkpoint_id)``). A remote call carries a list of them (an :data:`Items`). Consecutive data for
the same segment is merged; a batch is sent as one remote call when it holds :data:`BATCH`
messages or when the owner flushes (at the end of each call it handles, or a few milliseconds
after a source's first buffered message). Order: one channel per (sender, receiver) pair, and a
synchronous actor runs one caller's calls in the order they were made (Ray's guarantee with
retries off), so every key's messages arrive in the order they were sent.

Backpressure: at most ``window`` calls of a channel are in flight (sent, not yet finished by
the receiver). A *blocking* channel then waits for the oldest; sources and every channel into a
sink block. Channels between workers must not block (two workers waiting on each other would
deadlock), so a full one keeps further batches in a queue, sent by :meth:`Channel.pump` as
calls finish; barriers queue behind the data before them.

A call that fails (the receiver died) marks the channel broken: later sends are dropped and
:attr:`Channel.broken` says why; the coordinator rolls the whole application back anyway.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from wallaroo.engine.keys import key_group
from wallaroo.ray_backend.slots import SlotMap

__all__ = [
    "BATCH",
    "WINDOW",
    "Barrier",
    "Channel",
    "Data",
    "Item",
    "Items",
    "KeyedRoute",
    "SinkChannelPort",
    "Transport",
]


class Data(NamedTuple):
    """Messages for ``segment`` (-1: the receiving sink), with their keys and event times
    (None when the sender has none); the lists grow while the record is buffered."""

    segment: int
    values: list[Any]
    keys: list[Any] | None
    times: list[int] | None


class Barrier(NamedTuple):
    """Checkpoint barrier ``checkpoint_id`` for ``segment`` (-1: the receiving sink)."""

    segment: int
    checkpoint_id: int


Item = Data | Barrier
"""What a channel carries."""
Items = list[Item]
"""One remote call's batch, in the order sent."""

BATCH = 2000
"""Messages per remote call at most."""
WINDOW = 8
"""Calls in flight per channel at most."""
CACHE_LIMIT = 1 << 20
"""Keys whose owner a route remembers at most."""

log = logging.getLogger("wallaroo.ray")


class Transport(Protocol):
    """How a channel learns about its calls (Ray's ``wait``/``get``, or a fake in tests)."""

    def done(self, refs: Sequence[Any]) -> list[Any]:
        """The refs among ``refs`` whose calls have finished (no waiting)."""
        ...

    def wait_oldest(self, ref: Any, timeout: float) -> bool:
        """Wait until ``ref``'s call finished; False after ``timeout`` seconds."""
        ...

    def failure(self, ref: Any) -> str | None:
        """Why the finished call ``ref`` failed, or None when it succeeded."""
        ...


class Channel:
    """Everything one actor sends to one other actor (see the module docstring).

    Args:
        name: ``sender->receiver``, for logs.
        submit: makes the remote call with a batch; returns its ref.
        transport: checks calls.
        blocking: wait when ``window`` calls are in flight (else queue).
        window: calls in flight at most.
        batch: messages per call at most.

    Attributes:
        on_buffered: called when messages start waiting in an empty buffer (a source actor
            schedules its flush with it); None by default.
    """

    def __init__(
        self,
        name: str,
        submit: Callable[[Items], Any],
        transport: Transport,
        *,
        blocking: bool,
        window: int = WINDOW,
        batch: int = BATCH,
    ) -> None:
        self.name = name
        self._submit = submit
        self._transport = transport
        self.blocking = blocking
        self.window = window
        self.batch = batch
        self._items: Items = []
        self._size = 0
        self._inflight: deque[Any] = deque()
        self._queued: deque[Items] = deque()
        self.broken: str | None = None
        self.calls = 0
        self.messages = 0
        self.waits = 0
        self.on_buffered: Callable[[], None] | None = None

    @property
    def buffered(self) -> int:
        """Messages buffered, not yet sent."""
        return self._size

    @property
    def in_flight(self) -> int:
        """Calls sent and not yet finished by the receiver."""
        return len(self._inflight)

    @property
    def queued(self) -> int:
        """Batches waiting for room in the window (non-blocking channels)."""
        return len(self._queued)

    def data(self, segment: int, values: list[Any], keys: list[Any] | None, times: Any) -> None:
        """Buffer messages for ``segment`` (-1: the receiving sink)."""
        items = self._items
        if items:
            last = items[-1]
            if isinstance(last, Data) and last.segment == segment:
                last.values.extend(values)
                # a segment's messages always have keys (and times), or never
                if keys is not None:
                    last.keys.extend(keys)  # type: ignore[union-attr]
                if times is not None:
                    last.times.extend(times)  # type: ignore[union-attr]
                self._grow(len(values))
                return
        elif self.on_buffered is not None:
            self.on_buffered()
        items.append(
            Data(
                segment,
                list(values),
                None if keys is None else list(keys),
                None if times is None else list(times),
            )
        )
        self._grow(len(values))

    def _grow(self, n: int) -> None:
        self._size += n
        self.messages += n
        if self._size >= self.batch:
            self.flush()

    def barrier(self, segment: int, checkpoint_id: int) -> None:
        """Send a barrier, after everything buffered before it."""
        self._items.append(Barrier(segment, checkpoint_id))
        self.flush()

    def flush(self) -> None:
        """Send what is buffered (or queue it when the channel is full and non-blocking)."""
        if not self._items:
            return
        batch, self._items, self._size = self._items, [], 0
        if self.broken is not None:
            return
        self._reap()
        if self.blocking:
            while len(self._inflight) >= self.window and self.broken is None:
                self._wait_oldest()
            if self.broken is None:
                self._send(batch)
        elif self._queued or len(self._inflight) >= self.window:
            self._queued.append(batch)
        else:
            self._send(batch)

    def pump(self) -> None:
        """Send queued batches while there is room (non-blocking channels)."""
        if not self._queued or self.broken is not None:
            return
        self._reap()
        while self._queued and len(self._inflight) < self.window:
            self._send(self._queued.popleft())

    def drain(self, timeout: float) -> bool:
        """Flush, then wait until every call finished (or ``timeout``); True if they did."""
        self.flush()
        remaining = timeout
        while (self._queued or self._inflight) and self.broken is None and remaining > 0:
            self.pump()
            if self._inflight:
                if not self._transport.wait_oldest(self._inflight[0], min(remaining, 0.5)):
                    remaining -= 0.5
                    continue
                self._reap()
        return not self._queued and not self._inflight

    def _send(self, batch: Items) -> None:
        try:
            self._inflight.append(self._submit(batch))
        except Exception as exc:  # the receiver's handle is unusable: it died
            self._break(f"{type(exc).__name__}: {exc}")
            return
        self.calls += 1

    def _wait_oldest(self) -> None:
        self.waits += 1
        while not self._transport.wait_oldest(self._inflight[0], 1.0):
            pass
        self._reap()

    def _reap(self) -> None:
        inflight = self._inflight
        if not inflight:
            return
        for ref in self._transport.done(list(inflight)):
            inflight.remove(ref)
            why = self._transport.failure(ref)
            if why is not None:
                self._break(why)

    def _break(self, why: str) -> None:
        if self.broken is None:
            self.broken = why
            log.warning("channel %s is broken (%s); dropping what it carries", self.name, why)
        self._inflight.clear()
        self._queued.clear()


class KeyedRoute:
    """A segment's exchange: each message goes to the owner of its key's group.

    Implements the engine's ``Route``. Messages for this worker go to ``local`` (the worker's
    own input, as if sent to itself); the others to that worker's channel.

    Args:
        segment: the keyed segment the messages go to.
        slots: the slot map.
        channels: one channel per worker (this worker's own entry is not used).
        local: delivers messages for this worker, or None in a source actor.
        me: this worker's index (-1 in a source actor).
    """

    def __init__(
        self,
        segment: int,
        slots: SlotMap,
        channels: Sequence[Channel],
        local: Callable[[int, list[Any], list[Any], Any], None] | None,
        me: int = -1,
    ) -> None:
        self.segment = segment
        self.owners = slots.owners
        self.key_groups = slots.key_groups
        self.channels = channels
        self.local = local
        self.me = me
        self._cache: dict[str, int] = {}

    def owner(self, key: str) -> int:
        """The worker owning ``key`` (cached: a key's group never changes)."""
        worker = self._cache.get(key)
        if worker is None:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            worker = self._cache[key] = self.owners[key_group(key, self.key_groups)]
        return worker

    def send(self, values: list[Any], keys: list[str], times: list[int] | None = None) -> None:
        """Send each message (with its event time, when given) to the worker owning its key's
        group: this worker's own through ``local``, the others through their channels.
        """
        cache = self._cache
        owner = self.owner
        if times is None:
            parts: dict[int, tuple[list[Any], list[str]]] = {}
            for value, key in zip(values, keys, strict=True):
                worker = cache.get(key)
                if worker is None:
                    worker = owner(key)
                part = parts.get(worker)
                if part is None:
                    part = parts[worker] = ([], [])
                part[0].append(value)
                part[1].append(key)
            for worker, (vals, ks) in parts.items():
                self._deliver(worker, vals, ks, None)
            return
        timed: dict[int, tuple[list[Any], list[str], list[int]]] = {}
        for value, key, t in zip(values, keys, times, strict=True):
            worker = owner(key)
            tpart = timed.get(worker)
            if tpart is None:
                tpart = timed[worker] = ([], [], [])
            tpart[0].append(value)
            tpart[1].append(key)
            tpart[2].append(t)
        for worker, (vals, ks, ts) in timed.items():
            self._deliver(worker, vals, ks, ts)

    def _deliver(
        self, worker: int, values: list[Any], keys: list[str], times: list[int] | None
    ) -> None:
        if worker == self.me and self.local is not None:
            self.local(self.segment, values, keys, times)
        else:
            self.channels[worker].data(self.segment, values, keys, times)


class SinkChannelPort:
    """A sink's port whose payloads go to the sink's actor (the engine's ``SinkPort``)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def write(self, payloads: list[bytes]) -> None:
        """Buffer the payloads for the sink's actor (the channel into a sink blocks when full)."""
        self.channel.data(-1, payloads, None, None)
