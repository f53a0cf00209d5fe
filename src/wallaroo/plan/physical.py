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
    """A segment: operations fused into one loop, ending in one target.

    Attributes:
        id: the segment's id (its index in :attr:`PhysicalPlan.segments`).
        name: ``pipeline/where/op+op...``, for logs and metrics.
        pipeline: the pipeline it belongs to.
        keyed: it runs on keyed messages (where state lives); False for a source segment.
        ops: its operations, in order.
        target: where its outputs go.
        source: the index of the source it starts at, for a source segment; else None.
    """

    id: int
    name: str
    pipeline: str
    keyed: bool
    ops: tuple[Op, ...]
    target: Target
    source: int | None = None


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """A source of the application.

    Attributes:
        index: the source's index in :attr:`PhysicalPlan.sources`.
        name: the source's name (unique in the application).
        pipeline: the pipeline it feeds.
        config: its source config.
        segment: the id of its source segment.
        default_key: the source's name, the key of its messages when a state step has no
            ``key_by`` (as :attr:`Exchange.source_key`).
    """

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
    """A state name of the application.

    Attributes:
        name: the state name.
        factory: creates a key's state object (called with no arguments).
        initial_keys: keys whose state exists from the start.
    """

    name: str
    factory: Any
    initial_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PhysicalPlan:
    """The whole application as an engine runs it.

    Attributes:
        app_name: the application's name.
        sources: the sources, by index.
        segments: the segments, by id.
        sinks: the sinks, by index.
        states: the state names.
        key_groups: how many key groups keys are hashed into.
        windows: the window steps, by id.
    """

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
        """The source named ``name``.

        Raises:
            KeyError: there is none; the message lists the sources.
        """
        for s in self.sources:
            if s.name == name:
                return s
        known = ", ".join(repr(s.name) for s in self.sources)
        raise KeyError(f"no source named {name!r} (sources: {known})")

    def sink(self, name: str) -> SinkPlan:
        """The sink named ``name``.

        Raises:
            KeyError: there is none; the message lists the sinks.
        """
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
