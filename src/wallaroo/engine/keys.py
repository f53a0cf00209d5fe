"""Keys and key groups: the unit of state that checkpoints store and scale-out moves.

A key's group is ``crc32(utf8(key)) % key_groups`` (``decisions.md``). The function is fixed and
recorded in every checkpoint, so a key lands in the same group in every process and every run;
Python's ``hash()`` is salted per process and is never used for routing.
"""

from __future__ import annotations

import zlib

__all__ = ["HASH_FUNCTION", "key_group"]

HASH_FUNCTION = "crc32-utf8"


def key_group(key: str, key_groups: int) -> int:
    """The key group of ``key`` among ``key_groups`` groups."""
    return zlib.crc32(key.encode("utf-8", "surrogateescape")) % key_groups
