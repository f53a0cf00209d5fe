"""Shared checks and step constructors used by both API generations."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from wallaroo.configs import (
    SINK_CONFIG_TYPES,
    SOURCE_CONFIG_TYPES,
    SinkConnectorConfig,
    SourceConnectorConfig,
)
from wallaroo.decorators import Computation, KeyExtractor, StateComputation, normalize_key
from wallaroo.errors import WallarooParameterError
from wallaroo.plan.logical import (
    Application,
    Flow,
    PipelineSpec,
    SourceSpec,
    StatefulStep,
    StatelessStep,
    Step,
)

__all__ = [
    "check_sink_config",
    "check_source_config",
    "finish_application",
    "key_step",
    "state_step",
    "stateless_step",
]


def _kind(obj: Any) -> str:
    return type(obj).__name__


def stateless_step(computation: Any, method: str, *, parallel: bool = False) -> StatelessStep:
    """The step of ``to(computation)`` (or ``to_parallel`` with ``parallel``).

    Raises:
        WallarooParameterError: ``computation`` is not a decorated computation; the message
            names ``method``.
    """
    if isinstance(computation, Computation):
        return StatelessStep(computation, parallel=parallel)
    raise WallarooParameterError(
        f"{method}() takes a computation decorated with @wallaroo.computation(name=...) or "
        f"@wallaroo.computation_multi(name=...), got {_kind(computation)} {computation!r}"
    )


def state_step(
    computation: Any,
    method: str,
    state_factory: Any = None,
    state_name: str | None = None,
    initial_keys: Iterable[Any] | None = None,
) -> StatefulStep:
    """The step of a state computation over the state ``state_name`` (default: the
    computation's name), created per key by ``state_factory`` (default: the computation's
    state class); ``initial_keys`` have a state from the start.

    Raises:
        WallarooParameterError: ``computation`` is not a decorated state computation, there
            is no usable state class or name, or the keys are not a list of unique keys.
    """
    if not isinstance(computation, StateComputation):
        raise WallarooParameterError(
            f"{method}() takes a state computation decorated with "
            f"@wallaroo.state_computation(name=...), got {_kind(computation)} {computation!r}"
        )
    factory = state_factory if state_factory is not None else computation.state_factory
    if factory is None:
        raise WallarooParameterError(
            f"state computation '{computation.comp_name}' has no state class: write "
            f"@wallaroo.state_computation(name='{computation.comp_name}', state=MyState), or use "
            "to_stateful(computation, MyState, 'state name')"
        )
    if not callable(factory) and not callable(getattr(factory, "build", None)):
        raise WallarooParameterError(
            f"{method}() needs the state class (called with no arguments per key), got {factory!r}"
        )
    name = state_name if state_name is not None else computation.comp_name
    if not isinstance(name, str) or not name:
        raise WallarooParameterError(f"{method}() needs a state name (a non-empty string)")
    return StatefulStep(computation, name, factory, _check_keys(initial_keys, method))


def _check_keys(keys: Iterable[Any] | None, method: str) -> tuple[str, ...]:
    if keys is None:
        return ()
    if isinstance(keys, str | bytes) or not isinstance(keys, Sequence):
        raise WallarooParameterError(
            f"{method}() partition keys must be a list of keys, got {_kind(keys)}"
        )
    try:
        normalized = tuple(normalize_key(k) for k in keys)
    except TypeError as exc:
        raise WallarooParameterError(f"{method}() partition keys: {exc}") from None
    if len(set(normalized)) != len(normalized):
        dupes = sorted({k for k in normalized if normalized.count(k) > 1})
        raise WallarooParameterError(
            f"{method}() partition keys must be unique; repeated: {', '.join(map(repr, dupes))}"
        )
    return normalized


def key_step(extractor: Any, method: str, decorator: str) -> KeyExtractor:
    """``extractor``, checked to be a decorated key function.

    Raises:
        WallarooParameterError: it is not; the message names ``method`` and ``decorator``.
    """
    if isinstance(extractor, KeyExtractor):
        return extractor
    raise WallarooParameterError(
        f"{method}() takes a key function decorated with @wallaroo.{decorator}, "
        f"got {_kind(extractor)} {extractor!r}"
    )


def check_source_config(config: Any, method: str) -> Any:
    """Return ``config`` if it is a source config.

    Raises:
        WallarooParameterError: it is not.
    """
    if isinstance(config, SOURCE_CONFIG_TYPES):
        return config
    raise WallarooParameterError(
        f"{method}() takes a source config (TCPSourceConfig, GenSourceConfig, "
        f"SourceConnectorConfig) or a declared source connector name, got {_kind(config)}"
    )


def check_sink_config(config: Any, method: str) -> Any:
    """Return ``config`` if it is a sink config.

    Raises:
        WallarooParameterError: it is not.
    """
    if isinstance(config, SINK_CONFIG_TYPES):
        return config
    raise WallarooParameterError(
        f"{method}() takes a sink config (TCPSinkConfig, SinkConnectorConfig) or a declared "
        f"sink connector name, got {_kind(config)}"
    )


def _check_states(pipelines: Sequence[PipelineSpec]) -> None:
    """A state name used twice must mean the same state: same class, same key list."""
    seen: dict[str, tuple[StatefulStep, str]] = {}
    for pipeline in pipelines:
        for step in _all_steps(pipeline.flow):
            if not isinstance(step, StatefulStep):
                continue
            first = seen.setdefault(step.state_name, (step, pipeline.name))
            other, where = first
            if other.state_factory is not step.state_factory:
                raise WallarooParameterError(
                    f"state '{step.state_name}' is used with two state classes "
                    f"({_name_of(other.state_factory)} in pipeline '{where}', "
                    f"{_name_of(step.state_factory)} in pipeline '{pipeline.name}'); "
                    "a state name shared by steps must use one class, or give each its own name"
                )
            if other.initial_keys and step.initial_keys and other.initial_keys != step.initial_keys:
                raise WallarooParameterError(
                    f"state '{step.state_name}' is partitioned with two different key lists "
                    f"(pipelines '{where}' and '{pipeline.name}'); pass the same list to both"
                )


def _name_of(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or repr(obj)


def _all_steps(flow: Flow) -> list[Step]:
    steps: list[Step] = []
    for item in flow.inputs:
        if isinstance(item, Flow):
            steps.extend(_all_steps(item))
    steps.extend(flow.steps)
    return steps


def finish_application(
    name: str,
    pipelines: Sequence[PipelineSpec],
    declared_sources: Sequence[SourceConnectorConfig] = (),
    declared_sinks: Sequence[SinkConnectorConfig] = (),
) -> Application:
    """Validate the whole application and return its immutable description."""
    if not isinstance(name, str) or not name:
        raise WallarooParameterError("an application needs a name (a non-empty string)")
    if not pipelines:
        raise WallarooParameterError(
            "the application has no pipeline; add one with new_pipeline(...) or "
            "wallaroo.source(...)"
        )
    if not any(p.sinks for p in pipelines):
        raise WallarooParameterError(
            "no pipeline has a sink; end at least one pipeline with to_sink(...) or to_sinks([...])"
        )
    seen_sources: dict[str, str] = {}
    for pipeline in pipelines:
        for source in pipeline.flow.sources():
            if source.name in seen_sources:
                raise WallarooParameterError(
                    f"two sources are named '{source.name}' (pipelines "
                    f"'{seen_sources[source.name]}' and '{pipeline.name}'); each source needs "
                    "its own name and, for connectors, its own connector"
                )
            seen_sources[source.name] = pipeline.name
    _check_states(pipelines)
    sources = {c.name: c for c in declared_sources}
    sinks = {c.name: c for c in declared_sinks}
    for pipeline in pipelines:
        for source in pipeline.flow.sources():
            if isinstance(source.config, SourceConnectorConfig):
                sources.setdefault(source.config.name, source.config)
        for sink in pipeline.sinks:
            if isinstance(sink, SinkConnectorConfig):
                sinks.setdefault(sink.name, sink)
    return Application(name, tuple(pipelines), tuple(sources.values()), tuple(sinks.values()))


def source_spec(pipeline_name: str, config: Any) -> SourceSpec:
    """The source of a pipeline, named after its config (connector or source name) or the
    pipeline."""
    own = getattr(config, "name", None)
    return SourceSpec(own if isinstance(own, str) and own else pipeline_name, config)
