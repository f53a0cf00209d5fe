"""The logical plan: an immutable description of an application, shared by both API generations.

Both ``ApplicationBuilder.build()`` and ``build_application()`` return an :class:`Application`.
Nothing here runs anything; :mod:`wallaroo.plan.compiler` turns it into a physical plan.

A pipeline is a :class:`Flow`: its inputs (one source, or the flows a ``merge`` joined) followed by
steps. Steps are few: a stateless computation, a state computation, ``key_by`` and ``collect``.
Everything else (``to_stateful``, ``to_state_partition``, ``to_parallel``) is expressed with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wallaroo.configs import SinkConnectorConfig, SourceConnectorConfig
from wallaroo.decorators import Computation, KeyExtractor, StateComputation

__all__ = [
    "Application",
    "Collect",
    "Flow",
    "KeyBy",
    "PipelineSpec",
    "SourceSpec",
    "StatefulStep",
    "StatelessStep",
    "Step",
    "WindowStep",
]


@dataclass(frozen=True, slots=True)
class StatelessStep:
    """``to(computation)`` / ``to_parallel(computation)``."""

    computation: Computation
    parallel: bool = False

    @property
    def label(self) -> str:
        """The computation's name."""
        return self.computation.comp_name


@dataclass(frozen=True, slots=True)
class StatefulStep:
    """A state computation over the state named ``state_name`` of the message's current key.

    ``state_factory`` creates one state object per key (called with no arguments);
    ``initial_keys`` are keys whose state exists from the start (the seed's partition key list).
    """

    computation: StateComputation
    state_name: str
    state_factory: Any
    initial_keys: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The state computation's name."""
        return self.computation.comp_name


@dataclass(frozen=True, slots=True)
class KeyBy:
    """Route by ``extractor(message)`` from here on; state is looked up by this key."""

    extractor: KeyExtractor

    @property
    def label(self) -> str:
        """``key_by(<function name>)``."""
        return f"key_by({getattr(self.extractor.fn, '__name__', 'key')})"


@dataclass(frozen=True, slots=True)
class Collect:
    """Route every message to one key (``collect()``, or the single state of ``to_stateful``)."""

    key: str = ""

    @property
    def label(self) -> str:
        """``collect``."""
        return "collect"


@dataclass(frozen=True, slots=True)
class WindowStep:
    """A window aggregation (``range_windows(...).over(...)`` or ``count_windows(...)``), per
    key; its state lives in key groups like any other state."""

    spec: Any  # wallaroo.windows.RangeWindows | CountWindows

    @property
    def label(self) -> str:
        """The aggregation's ``name()``, else its class name."""
        name = self.spec.aggregation.name()
        return name if isinstance(name, str) and name else type(self.spec.aggregation).__name__


Step = StatelessStep | StatefulStep | KeyBy | Collect | WindowStep


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A source of a pipeline. ``name`` is unique within the application."""

    name: str
    config: Any


@dataclass(frozen=True, slots=True, eq=False)
class Flow:
    """Inputs (one source, or merged flows) followed by steps. Compared by identity."""

    inputs: tuple[SourceSpec | Flow, ...]
    steps: tuple[Step, ...] = ()

    @property
    def keyed(self) -> bool:
        """True when the flow ends in ``key_by`` (what ``merge`` checks on both sides)."""
        return bool(self.steps) and isinstance(self.steps[-1], KeyBy)

    def sources(self) -> list[SourceSpec]:
        """Every source feeding this flow, depth first, in input order."""
        found: list[SourceSpec] = []
        for item in self.inputs:
            found.extend([item] if isinstance(item, SourceSpec) else item.sources())
        return found


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """A named pipeline and the sinks every one of its outputs goes to (none after ``done()``)."""

    name: str
    flow: Flow
    sinks: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Application:
    """A whole application: what ``application_setup(args)`` returns.

    ``source_connectors``/``sink_connectors`` list every connector the application declares or
    uses, so a connector program can find its settings by name.
    """

    name: str
    pipelines: tuple[PipelineSpec, ...]
    source_connectors: tuple[SourceConnectorConfig, ...] = field(default=())
    sink_connectors: tuple[SinkConnectorConfig, ...] = field(default=())

    def source_connector(self, name: str) -> SourceConnectorConfig | None:
        """The source connector called ``name``, or None."""
        return next((c for c in self.source_connectors if c.name == name), None)

    def sink_connector(self, name: str) -> SinkConnectorConfig | None:
        """The sink connector called ``name``, or None."""
        return next((c for c in self.sink_connectors if c.name == name), None)

    def pipelines_into(self, sink_connector: str) -> tuple[str, ...]:
        """The names of the pipelines that write to the sink connector ``sink_connector``."""
        return tuple(
            p.name
            for p in self.pipelines
            if any(isinstance(s, SinkConnectorConfig) and s.name == sink_connector for s in p.sinks)
        )
