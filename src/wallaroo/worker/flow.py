"""Backpressure between sinks and sources.

Every sink reports when its output buffer crosses its high-water mark. While any sink is over it,
the :class:`Gate` is closed: ingress transports stop reading (so TCP pushes back on the senders,
and connectors run out of credits) and generator sources wait. Memory stays bounded whatever the
sources do. :class:`WaterMarks` is the one rule every sink follows for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = ["HIGH_WATER", "LOW_WATER", "Gate", "GateStatistics", "WaterMarks"]

HIGH_WATER: Final = 8 * 1024 * 1024
"""Bytes a sink may buffer before it closes the gate."""
LOW_WATER: Final = 1024 * 1024
"""Bytes a sink that closed the gate must be down to before it opens it again."""


class Pausable(Protocol):
    """A transport the gate can pause (an :class:`asyncio.ReadTransport`)."""

    def pause_reading(self) -> None:
        """Stop calling the protocol's ``data_received``."""
        ...

    def resume_reading(self) -> None:
        """Call ``data_received`` again."""
        ...

    def is_closing(self) -> bool:
        """True when the transport is closed or closing."""
        ...


@dataclass(frozen=True, slots=True)
class GateStatistics:
    """A snapshot of the :class:`Gate`.

    Attributes:
        open: no sink is over its high-water mark.
        blockers: names of the sinks over it, sorted.
        paused_transports: input transports paused until the gate opens.
        times_closed: how many times the gate went from open to closed.
    """

    open: bool
    blockers: tuple[str, ...]
    paused_transports: int
    times_closed: int


class Gate:
    """Open while no sink is over its high-water mark."""

    def __init__(self) -> None:
        self._blockers: set[str] = set()
        self._paused: set[Pausable] = set()
        self._opened = asyncio.Event()
        self._opened.set()
        self._times_closed = 0

    @property
    def is_open(self) -> bool:
        """True while no sink is over its high-water mark."""
        return not self._blockers

    def block(self, who: str) -> None:
        """``who`` is over its high-water mark."""
        if not self._blockers:
            self._opened.clear()
            self._times_closed += 1
        self._blockers.add(who)

    def unblock(self, who: str) -> None:
        """``who`` drained below its low-water mark."""
        self._blockers.discard(who)
        if not self._blockers:
            self._opened.set()
            paused, self._paused = self._paused, set()
            for transport in paused:
                if not transport.is_closing():
                    transport.resume_reading()

    def hold(self, transport: Pausable) -> None:
        """Pause ``transport`` until the gate opens (no-op while it is open)."""
        if self._blockers and transport not in self._paused:
            transport.pause_reading()
            self._paused.add(transport)

    def forget(self, transport: Pausable) -> None:
        """Stop tracking ``transport`` (its connection is gone); it is not resumed."""
        self._paused.discard(transport)

    async def wait_open(self) -> None:
        """Return once the gate is open (at once if it is)."""
        await self._opened.wait()

    def statistics(self) -> GateStatistics:
        """A snapshot of the gate."""
        return GateStatistics(
            self.is_open, tuple(sorted(self._blockers)), len(self._paused), self._times_closed
        )


class WaterMarks:
    """One sink's hold on the :class:`Gate`: closed past :data:`HIGH_WATER` buffered bytes,
    open again at :data:`LOW_WATER` or less (the gap keeps it from flapping).

    Args:
        gate: the worker's gate.
        name: the sink's name (the gate's blocker).
    """

    __slots__ = ("_gate", "_name", "blocking")

    def __init__(self, gate: Gate, name: str) -> None:
        self._gate = gate
        self._name = name
        self.blocking = False

    def update(self, buffered: int, *, stalled: bool = False) -> None:
        """The sink now buffers ``buffered`` bytes; ``stalled``: its connection takes nothing
        for now (a full transport buffer), which closes the gate whatever the bytes."""
        if not self.blocking and (buffered > HIGH_WATER or stalled):
            self.blocking = True
            self._gate.block(self._name)
        elif self.blocking and buffered <= LOW_WATER and not stalled:
            self.blocking = False
            self._gate.unblock(self._name)
