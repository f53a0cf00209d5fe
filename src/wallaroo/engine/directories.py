"""Where a run's files go when no directory is given: every default directory, in one place.

``--resilience-dir DIR`` holds a worker's checkpoints (``DIR/checkpoints``) and its dead-letter
file. Without it they go to :data:`RESILIENCE_DIR` and :data:`DEADLETTER_DIR` in the current
directory (under the Ray backend, the driver's). A sink connector program keeps its dead letters
in :data:`DEADLETTER_DIR` of its own current directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

__all__ = ["DEADLETTER_DIR", "RESILIENCE_DIR", "deadletter_directory", "resilience_directory"]

RESILIENCE_DIR: Final = "wallaroo-resilience"
"""The default resilience directory, relative to the current directory."""
DEADLETTER_DIR: Final = "wallaroo-deadletter"
"""The default directory of dead-letter files, relative to the current directory."""


Given = str | os.PathLike[str] | None
"""A directory given on the command line, or None."""


def resilience_directory(given: Given = None, cwd: str | None = None) -> Path:
    """``given`` (``--resilience-dir``), else :data:`RESILIENCE_DIR` in ``cwd`` (default: the
    current directory): where checkpoints go."""
    return _either(given, cwd, RESILIENCE_DIR)


def deadletter_directory(given: Given = None, cwd: str | None = None) -> Path:
    """``given`` (``--resilience-dir``), else :data:`DEADLETTER_DIR` in ``cwd`` (default: the
    current directory): where dead-letter files go."""
    return _either(given, cwd, DEADLETTER_DIR)


def _either(given: Given, cwd: str | None, default: str) -> Path:
    return Path(given) if given else Path(cwd or os.getcwd()) / default
