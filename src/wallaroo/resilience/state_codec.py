"""Serialise the key groups of a state store, and read them back.

A key group becomes one blob: for each key, ``u32 len | key (UTF-8) | u32 len | state``, where
the state bytes come from the application's ``serialize`` (pickle unless the application module
defines its own). Serialising state objects one by one keeps a user serializer that only knows
its own state class usable.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

from wallaroo.engine.state import StateStore
from wallaroo.errors import CheckpointError

__all__ = ["decode_group", "encode_group", "group_blobs"]

_LEN = struct.Struct(">I")


def encode_group(states: dict[str, Any], serialize: Callable[[Any], bytes]) -> bytes:
    """One key group's states as bytes."""
    parts: list[bytes] = []
    pack = _LEN.pack
    for key, state in states.items():
        k = key.encode("utf-8", "surrogateescape")
        data = serialize(state)
        if not isinstance(data, bytes | bytearray):
            raise CheckpointError(
                f"serialize() must return bytes, got {type(data).__name__} for key {key!r}"
            )
        parts += (pack(len(k)), k, pack(len(data)), bytes(data))
    return b"".join(parts)


def decode_group(blob: bytes, deserialize: Callable[[bytes], Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_group`."""
    states: dict[str, Any] = {}
    view = memoryview(blob)
    pos, end = 0, len(blob)
    unpack = _LEN.unpack_from
    try:
        while pos < end:
            (n,) = unpack(view, pos)
            key = bytes(view[pos + 4 : pos + 4 + n]).decode("utf-8", "surrogateescape")
            pos += 4 + n
            (m,) = unpack(view, pos)
            states[key] = deserialize(bytes(view[pos + 4 : pos + 4 + m]))
            pos += 4 + m
    except struct.error as exc:
        raise CheckpointError("a state blob is truncated") from exc
    return states


def group_blobs(
    store: StateStore, serialize: Callable[[Any], bytes]
) -> Iterator[tuple[str, bytes]]:
    """``(blob name, bytes)`` for every non-empty key group of ``store``."""
    for group in range(store.key_groups):
        states = store.snapshot_group(group)
        if states:
            yield f"state/{store.name}/{group}", encode_group(states, serialize)
