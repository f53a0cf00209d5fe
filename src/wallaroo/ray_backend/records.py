"""Plain records of the Ray backend: the coordinator's options and statistics, and helpers
that turn statistics and errors into JSON and log text."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wallaroo.engine.directories import RESILIENCE_DIR
from wallaroo.errors import first_line
from wallaroo.resilience.manifest import GeneratorPosition

__all__ = ["CoordinatorOptions", "RayStatistics", "SourceStart", "jsonable", "reason"]


@dataclass(frozen=True, slots=True)
class CoordinatorOptions:
    """How the coordinator runs an application.

    Attributes:
        workers: number of worker actors.
        resilient: take checkpoints (``--run-with-resilience``).
        interval_s: seconds between checkpoints.
        directory: the resilience directory (checkpoints in ``checkpoints/``).
        fall_back: start from an older checkpoint when the newest is damaged.
        drain_timeout: seconds to let sinks flush at shutdown.
    """

    workers: int = 1
    resilient: bool = False
    interval_s: float = 1.0
    directory: str = RESILIENCE_DIR
    fall_back: bool = False
    drain_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class SourceStart:
    """Where a source actor starts, from the checkpoint restored.

    Attributes:
        positions: stream -> position, for a replayable source (None: from the beginning).
        generator: a generator source's position (None: from its initial value).
    """

    positions: Mapping[int, int] | None = None
    generator: GeneratorPosition | None = None


@dataclass(frozen=True, slots=True)
class RayStatistics:
    """The coordinator's counters (``Coordinator.statistics()``)."""

    workers: int
    restarts: int
    last_committed: int
    checkpoints_taken: int
    checkpoints_aborted: int
    last_checkpoint_s: float
    slot_ranges: tuple[tuple[int, int], ...]


def jsonable(value: Any) -> Any:
    """Statistics records (frozen dataclasses, tuples) as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def reason(exc: BaseException) -> str:
    """``Type: first line of the message``, for one log line."""
    return first_line(exc, typed=True)
