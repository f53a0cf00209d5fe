"""Aligned checkpoint barriers, as Wallaroo's and Flink's: per stage, over its input channels.

When a barrier arrives on one input, that input is *blocked*: its later messages are held, not
processed, until the barrier has arrived on every input. Then the stage's state is exactly the
result of everything sent before the barrier on every input: the snapshot is taken, the barrier
is forwarded, and the held messages are processed in the order they came.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BarrierAligner"]


class BarrierAligner:
    """Barrier alignment over the input channels ``inputs`` (sender names).

    Args:
        inputs: the senders that feed this stage; each sends every barrier exactly once.
    """

    __slots__ = ("arrived", "checkpoint", "held", "inputs", "last_completed")

    def __init__(self, inputs: frozenset[str]) -> None:
        self.inputs = inputs
        self.checkpoint: int | None = None
        self.arrived: set[str] = set()
        self.held: list[tuple[str, Any]] = []
        self.last_completed = 0

    def blocked(self, sender: str) -> bool:
        """True while ``sender``'s messages must be held (its barrier is in, others are not)."""
        return sender in self.arrived

    def hold(self, sender: str, item: Any) -> None:
        """Keep ``item`` from ``sender`` until the checkpoint completes (see :meth:`complete`)."""
        self.held.append((sender, item))

    def barrier(self, sender: str, checkpoint_id: int) -> bool:
        """A barrier from ``sender``; True when it was the last one missing.

        A barrier of a checkpoint already completed here (a duplicate) is ignored.
        """
        if checkpoint_id <= self.last_completed:
            return False
        if self.checkpoint != checkpoint_id:  # the first barrier of a new checkpoint
            self.checkpoint = checkpoint_id
            self.arrived.clear()
        self.arrived.add(sender)
        return self.arrived >= self.inputs

    def complete(self) -> list[tuple[str, Any]]:
        """The checkpoint is taken: unblock every input; return what was held, in order."""
        if self.checkpoint is not None:
            self.last_completed = max(self.last_completed, self.checkpoint)
        self.checkpoint = None
        self.arrived.clear()
        held, self.held = self.held, []
        return held
