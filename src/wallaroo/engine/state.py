"""Keyed state, stored by key group.

A :class:`StateStore` holds the state objects of one state name: one object per key, created on
first use by calling the state class with no arguments. Lookups go through one flat dict (the hot
path); each key is also filed under its key group when it is created, so a checkpoint can save,
and scale-out can move, one key group at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wallaroo.decorators import make_state
from wallaroo.engine.keys import key_group

__all__ = ["StateStatistics", "StateStore"]


@dataclass(frozen=True, slots=True)
class StateStatistics:
    """A snapshot of one :class:`StateStore`.

    Attributes:
        name: the state name.
        keys: keys that have a state object.
        key_groups_used: key groups holding at least one key.
    """

    name: str
    keys: int
    key_groups_used: int


class StateStore:
    """All state objects of one state name, partitioned into ``key_groups`` groups."""

    __slots__ = ("_factory", "_members", "key_groups", "name", "states")

    def __init__(self, name: str, factory: Any, key_groups: int, initial_keys: Iterable[str] = ()):
        self.name = name
        self.key_groups = key_groups
        self._factory = factory
        #: key -> state object; engines read it directly with ``states.get``.
        self.states: dict[str, Any] = {}
        self._members: list[list[str]] = [[] for _ in range(key_groups)]
        for key in initial_keys:
            self.create(key)

    def create(self, key: str) -> Any:
        """Create, store and return the state of a new ``key``."""
        state = make_state(self._factory)
        self.states[key] = state
        self._members[key_group(key, self.key_groups)].append(key)
        return state

    def get(self, key: str) -> Any | None:
        """The state of ``key``, or None when it has none yet."""
        return self.states.get(key)

    def keys_in_group(self, group: int) -> list[str]:
        """The keys of key group ``group`` (a copy), in the order their states were created or
        restored.
        """
        return list(self._members[group])

    def snapshot_group(self, group: int) -> dict[str, Any]:
        """The states of one key group (live objects: serialise before mutating further)."""
        states = self.states
        return {k: states[k] for k in self._members[group]}

    def restore_group(self, group: int, states: Mapping[str, Any]) -> None:
        """Replace the content of one key group with ``states``."""
        self.drop_group(group)
        members = self._members[group]
        for key, state in states.items():
            if key_group(key, self.key_groups) != group:
                raise ValueError(f"key {key!r} does not belong to key group {group}")
            self.states[key] = state
            members.append(key)

    def drop_group(self, group: int) -> None:
        """Forget every key of one group (it moved elsewhere, or is about to be restored)."""
        for key in self._members[group]:
            self.states.pop(key, None)
        self._members[group] = []

    def statistics(self) -> StateStatistics:
        """A snapshot of the store's size."""
        used = sum(1 for m in self._members if m)
        return StateStatistics(self.name, len(self.states), used)
