"""The physical plan: what an engine (embedded or distributed) executes.

A *segment* is a fused chain of operations that runs without crossing a routing boundary. A
source segment runs where its source is, on unkeyed messages, starting with the decoder. A keyed
segment runs on messages that carry a routing key (after ``key_by``, ``collect``, or an implicit
exchange before a state step that has no ``key_by``); it is where state lives, so in a
distributed run it executes on the worker that owns the key's key group.

Segments end in exactly one target: the pipeline's sinks, an exchange into a keyed segment, or
nothing (a pipeline closed with ``done()``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_KEY_GROUPS",
    "DecodeOp",
    "Discard",
    "Exchange",
    "MapOp",
    "Op",
    "PhysicalPlan",
    "SegmentPlan",
    "SinkPlan",
    "SourcePlan",
    "StateOp",
    "StatePlan",
    "ToSinks",
    "ToWindow",
    "WindowPlan",
]

DEFAULT_KEY_GROUPS = 256


@dataclass(frozen=True, slots=True)
class DecodeOp:
    """``decoder(payload)``; ``None`` drops the message."""

    name: str
    fn: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class MapOp:
    """A stateless computation; ``multi`` when it returns a list."""

    name: str
    fn: Callable[[Any], Any]
    multi: bool


@dataclass(frozen=True, slots=True)
class StateOp:
    """A state computation over ``state`` for the message's key."""

    name: str
    fn: Callable[[Any, Any], Any]
    multi: bool
    returns_persist: bool
    state: str


Op = DecodeOp | MapOp | StateOp


@dataclass(frozen=True, slots=True)
class ToSinks:
    """Encode every output once per sink and hand it to each of them."""

    sinks: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Exchange:
    """Route to keyed segment ``segment``.

    Exactly one of: ``key_fn`` (``key_by``: the key of each message), ``const_key`` (``collect``
    and the seed's ``to_stateful``), or ``source_key`` (a state step with no ``key_by``: the key
    the source attached to the message, else ``source_key`` itself).
    """

    segment: int
    label: str
    key_fn: Callable[[Any], Any] | None = None
    const_key: str | None = None
    source_key: str | None = None


@dataclass(frozen=True, slots=True)
class Discard:
    """The end of a pipeline closed with ``done()``."""


@dataclass(frozen=True, slots=True)
class ToWindow:
    """Feed window ``window`` with (key, value, event time) of every output."""

    window: int


Target = ToSinks | Exchange | Discard | ToWindow


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """A window step: its spec, the state store holding its per-key windows, and the keyed
    segment its outputs continue in."""

    id: int
    name: str
    pipeline: str
    spec: Any
    state: str
    next_segment: int


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    id: int
    name: str
    pipeline: str
    keyed: bool
    ops: tuple[Op, ...]
    target: Target
    source: int | None = None


@dataclass(frozen=True, slots=True)
class SourcePlan:
    index: int
    name: str
    pipeline: str
    config: Any
    segment: int
    default_key: str


@dataclass(frozen=True, slots=True)
class SinkPlan:
    """A sink. ``bytes_only``: its encoder must return bytes (a ``str`` becomes UTF-8); a sink
    whose config sets ``payloads_are_bytes = False`` (e.g. Kafka, whose encoder returns
    ``(value, key, partition)``) receives the encoder's results as they are."""

    index: int
    name: str
    config: Any
    encode: Callable[[Any], Any]
    bytes_only: bool = True


@dataclass(frozen=True, slots=True)
class StatePlan:
    name: str
    factory: Any
    initial_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PhysicalPlan:
    app_name: str
    sources: tuple[SourcePlan, ...]
    segments: tuple[SegmentPlan, ...]
    sinks: tuple[SinkPlan, ...]
    states: tuple[StatePlan, ...]
    key_groups: int = DEFAULT_KEY_GROUPS
    windows: tuple[WindowPlan, ...] = ()

    @property
    def timed(self) -> bool:
        """True when messages carry their event time through the segments (windows need it)."""
        return bool(self.windows)

    def source(self, name: str) -> SourcePlan:
        for s in self.sources:
            if s.name == name:
                return s
        known = ", ".join(repr(s.name) for s in self.sources)
        raise KeyError(f"no source named {name!r} (sources: {known})")

    def sink(self, name: str) -> SinkPlan:
        for s in self.sinks:
            if s.name == name:
                return s
        known = ", ".join(repr(s.name) for s in self.sinks)
        raise KeyError(f"no sink named {name!r} (sinks: {known})")

    def describe(self) -> str:
        """A human-readable outline of the plan, one line per segment."""
        lines = [f"application {self.app_name!r}, {self.key_groups} key groups"]
        lines.extend(f"  source {s.name!r} -> segment {s.segment}" for s in self.sources)
        for seg in self.segments:
            ops = " -> ".join(op.name for op in seg.ops) or "(pass)"
            kind = "keyed" if seg.keyed else "source"
            lines.append(f"  segment {seg.id} [{kind}] {ops} => {_target(seg.target, self)}")
        return "\n".join(lines)


def _target(target: Target, plan: PhysicalPlan) -> str:
    if isinstance(target, ToSinks):
        return "sinks " + ", ".join(repr(plan.sinks[i].name) for i in target.sinks)
    if isinstance(target, Exchange):
        return f"{target.label} -> segment {target.segment}"
    if isinstance(target, ToWindow):
        window = plan.windows[target.window]
        return f"window {window.name!r} -> segment {window.next_segment}"
    return "discard"
