"""The slot map: which worker owns which key group.

Key groups (``crc32(utf8(key)) % key_groups``, see :mod:`wallaroo.engine.keys`) are the unit of
distribution: a worker hosts the state of the key groups the map gives it, for every stateful
step, and a message goes to the owner of its key's group. Workers get contiguous ranges of
groups, as even as the division allows (as the original's ``HashPartitions`` gave claimants
contiguous ranges), so growing or shrinking moves whole ranges. The map is plain data: it is
pickled to every actor and recorded in checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SlotMap"]


@dataclass(frozen=True, slots=True)
class SlotMap:
    """``owners[group]`` is the index of the worker that owns key group ``group``.

    Attributes:
        owners: one worker index per key group.
        workers: the number of workers.
    """

    owners: tuple[int, ...]
    workers: int

    @classmethod
    def even(cls, key_groups: int, workers: int) -> SlotMap:
        """Contiguous ranges of groups, sizes differing by one at most.

        Raises:
            ValueError: ``workers`` is not between 1 and ``key_groups``.
        """
        if not 1 <= workers <= key_groups:
            raise ValueError(f"cannot spread {key_groups} key groups over {workers} workers")
        base, extra = divmod(key_groups, workers)
        owners: list[int] = []
        for worker in range(workers):
            owners += [worker] * (base + (1 if worker < extra else 0))
        return cls(tuple(owners), workers)

    @property
    def key_groups(self) -> int:
        """How many key groups there are."""
        return len(self.owners)

    def groups_of(self, worker: int) -> list[int]:
        """The key groups ``worker`` owns, in order."""
        return [g for g, owner in enumerate(self.owners) if owner == worker]

    def ranges(self) -> list[tuple[int, int]]:
        """``(first, last)`` group of each worker, in worker order (for logs)."""
        found: list[tuple[int, int]] = []
        for worker in range(self.workers):
            groups = self.groups_of(worker)
            found.append((groups[0], groups[-1]) if groups else (-1, -1))
        return found

    def moved(self, other: SlotMap) -> int:
        """How many key groups change owner from this map to ``other``."""
        return sum(1 for a, b in zip(self.owners, other.owners, strict=True) if a != b)

    @staticmethod
    def describe(ranges: Sequence[tuple[int, int]]) -> str:
        """``w0: 0-127, w1: 128-255``: the ranges of :meth:`ranges`, for logs."""
        return ", ".join(f"w{i}: {a}-{b}" for i, (a, b) in enumerate(ranges))
