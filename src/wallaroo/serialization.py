"""Default serialisation of messages and state: pickle.

An application module that defines top-level ``serialize(obj) -> bytes`` and
``deserialize(data) -> obj`` replaces these for its state and messages.
"""

from __future__ import annotations

import pickle
from typing import Any

__all__ = ["deserialize", "serialize"]


def serialize(obj: Any) -> bytes:
    """Serialise ``obj`` with pickle (the highest protocol)."""
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def deserialize(data: bytes) -> Any:
    """Inverse of :func:`serialize`. Only load data written by your own workers."""
    return pickle.loads(data)  # noqa: S301 - checkpoints and peers are trusted by design
