"""Which session owns which source stream, and where an inactive stream resumes.

One registry serves every connection of a listener (later, a whole cluster): a stream id has at
most one owner at a time, so two connectors can never feed the same logical stream at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from dataclasses import dataclass

from wallaroo.protocol.frames import NONE_SEEN

__all__ = ["RegistryStatistics", "StreamRegistry", "stream_id_for"]


def stream_id_for(name: str | bytes) -> int:
    """Return the stream id of the stream called ``name``: the first 8 bytes of its SHA-256,
    big-endian. Stable across processes and restarts (a ``str`` is hashed as UTF-8). Connector
    clients name their streams with it, and the worker's Kafka source its partitions."""
    data = name.encode("utf-8") if isinstance(name, str) else bytes(name)
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    """A snapshot of a :class:`StreamRegistry`."""

    active_streams: int
    inactive_streams: int
    acquired: int
    refused: int
    released: int


class StreamRegistry:
    """Maps an active stream id to its owner and an inactive one to its last released position.

    Owners are compared with ``==`` (sessions use identity); ``None`` cannot be an owner. The
    registry is not thread-safe: use it from the thread (or event loop) that runs the sessions.

    Each released stream has two positions: where its connector must resume (the *resume*
    point, sent in NOTIFY_ACK: with checkpoints, the last checkpointed position) and what the
    worker has already seen (the *seen* point: messages up to it are skipped as duplicates when
    the connector replays them). Without checkpoints the two are the same.
    """

    __slots__ = ("_acquired", "_owners", "_refused", "_released", "_resume", "_seen")

    def __init__(self) -> None:
        self._owners: dict[int, Hashable] = {}
        self._resume: dict[int, int] = {}
        self._seen: dict[int, int] = {}
        self._acquired = 0
        self._refused = 0
        self._released = 0

    def acquire(self, stream_id: int, owner: Hashable) -> tuple[bool, int]:
        """Make ``owner`` the owner of ``stream_id`` unless another owner holds it.

        Returns:
            ``(acquired, point_of_ref)``: whether ``owner`` now holds the stream, and the point of
            reference to resume from: the one the stream was last released at, or
            :data:`~wallaroo.protocol.frames.NONE_SEEN` for a stream never released.
            Acquiring a stream one already holds succeeds.
        """
        resume = self._resume.get(stream_id, NONE_SEEN)
        holder = self._owners.get(stream_id)
        if holder is not None and holder != owner:
            self._refused += 1
            return False, resume
        self._owners[stream_id] = owner
        self._acquired += 1
        return True, resume

    def release(
        self, stream_id: int, owner: Hashable, point_of_ref: int, seen: int | None = None
    ) -> bool:
        """Give ``stream_id`` up; the next owner resumes from ``point_of_ref``.

        ``seen`` (default: ``point_of_ref``) is the last message id the worker has seen; the
        next owner skips messages up to it.

        Returns:
            False, changing nothing, if ``owner`` does not hold the stream.
        """
        if stream_id not in self._owners or self._owners[stream_id] != owner:
            return False
        del self._owners[stream_id]
        self._resume[stream_id] = point_of_ref
        self._seen[stream_id] = point_of_ref if seen is None else seen
        self._released += 1
        return True

    def seen_point(self, stream_id: int) -> int:
        """The last message id seen of ``stream_id`` when it was last released (or NONE_SEEN)."""
        return self._seen.get(stream_id, self._resume.get(stream_id, NONE_SEEN))

    def inactive_positions(self) -> dict[int, int]:
        """The seen point of every stream no session holds."""
        return {s: self.seen_point(s) for s in self._resume if s not in self._owners}

    def reset(self, positions: dict[int, int]) -> None:
        """Forget everything and let each stream resume at ``positions[stream_id]``.

        Used when the worker's state is restored from a checkpoint: both points become the
        checkpointed ones. Raises:
            RuntimeError: a stream is still held (close every session first).
        """
        if self._owners:
            raise RuntimeError(
                f"cannot reset the registry while {len(self._owners)} streams "
                "are held; close the sessions first"
            )
        self._resume = dict(positions)
        self._seen = dict(positions)

    def release_all(self, owner: Hashable) -> list[int]:
        """Give up every stream ``owner`` holds, each resuming where it was last released.

        Returns:
            The ids of the streams released.
        """
        held = [stream_id for stream_id, holder in self._owners.items() if holder == owner]
        for stream_id in held:
            del self._owners[stream_id]
            self._released += 1
        return held

    def owner(self, stream_id: int) -> Hashable | None:
        """Return the owner of ``stream_id``, or None if the stream is inactive."""
        return self._owners.get(stream_id)

    def resume_point(self, stream_id: int) -> int:
        """Return the point of reference ``stream_id`` was last released at (or NONE_SEEN)."""
        return self._resume.get(stream_id, NONE_SEEN)

    def statistics(self) -> RegistryStatistics:
        """Return a snapshot of the registry's counters."""
        inactive = sum(1 for stream_id in self._resume if stream_id not in self._owners)
        return RegistryStatistics(
            active_streams=len(self._owners),
            inactive_streams=inactive,
            acquired=self._acquired,
            refused=self._refused,
            released=self._released,
        )
