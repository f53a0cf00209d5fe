"""The later generation's pipeline API: ``wallaroo.source(...).to(...).key_by(...).to_sink(...)``.

Every method returns a new :class:`Pipeline`; the one it was called on is unchanged, so a partial
pipeline can be reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wallaroo.errors import WallarooParameterError
from wallaroo.plan.assemble import (
    check_sink_config,
    check_source_config,
    finish_application,
    key_step,
    source_spec,
    state_step,
    stateless_step,
)
from wallaroo.plan.logical import Application, Collect, Flow, KeyBy, PipelineSpec, Step

__all__ = ["Pipeline", "build_application", "source"]


class Pipeline:
    """A partial (or, after ``to_sink``/``to_sinks``, closed) pipeline."""

    __slots__ = ("_flow", "_name", "_sinks")

    def __init__(self, name: str, flow: Flow, sinks: tuple[Any, ...] | None = None) -> None:
        self._name = name
        self._flow = flow
        self._sinks = sinks

    @property
    def name(self) -> str:
        """The pipeline's name."""
        return self._name

    @property
    def is_closed(self) -> bool:
        """True once the pipeline ends in ``to_sink``/``to_sinks``."""
        return self._sinks is not None

    def _open(self, method: str) -> None:
        if self._sinks is not None:
            raise WallarooParameterError(
                f"you can't add stages after to_sink/s: {method}() was called on pipeline "
                f"'{self._name}', which already ends in a sink; add {method}() before to_sink"
            )

    def _with(self, method: str, *steps: Step) -> Pipeline:
        self._open(method)
        flow = Flow(self._flow.inputs, self._flow.steps + steps)
        return Pipeline(self._name, flow)

    def to(self, step: Any) -> Pipeline:
        """Add a computation: stateless, or a state computation (state per current key).

        Window builders (``range_windows(...).over(...)``) are accepted here too once windows
        are available.
        """
        self._open("to")
        window_step = getattr(step, "as_step", None)
        if callable(window_step):
            return self._with("to", window_step())
        if hasattr(step, "returns_persist"):
            return self._with("to", state_step(step, "to"))
        return self._with("to", stateless_step(step, "to"))

    def key_by(self, key_extractor: Any) -> Pipeline:
        """Partition by ``key_extractor(message)`` from here on."""
        return self._with("key_by", KeyBy(key_step(key_extractor, "key_by", "key_extractor")))

    def collect(self) -> Pipeline:
        """Send every message to one partition (a constant key) from here on."""
        return self._with("collect", Collect())

    def merge(self, other: Pipeline) -> Pipeline:
        """Interleave this pipeline's messages with ``other``'s; later steps apply to both."""
        self._open("merge")
        if not isinstance(other, Pipeline):
            raise WallarooParameterError(
                f"merge() takes another pipeline from wallaroo.source(...), got {other!r}"
            )
        if other.is_closed:
            raise WallarooParameterError(
                f"can't merge pipeline '{other.name}': it already ends in a sink; merge before "
                "to_sink"
            )
        if self._flow.keyed != other._flow.keyed:
            keyed, plain = (self, other) if self._flow.keyed else (other, self)
            raise WallarooParameterError(
                f"can't merge a keyed pipeline ('{keyed.name}' ends in key_by) with an unkeyed one "
                f"('{plain.name}'); end both with key_by(...) or neither"
            )
        name = self._name if self._name == other.name else f"{self._name}+{other.name}"
        return Pipeline(name, Flow((self._flow, other._flow)))

    def to_sink(self, sink_config: Any) -> Pipeline:
        """Close the pipeline with a sink."""
        self._open("to_sink")
        return Pipeline(self._name, self._flow, (check_sink_config(sink_config, "to_sink"),))

    def to_sinks(self, sink_configs: Sequence[Any]) -> Pipeline:
        """Close the pipeline with several sinks; every output goes to each."""
        self._open("to_sinks")
        if isinstance(sink_configs, str) or not isinstance(sink_configs, Sequence):
            raise WallarooParameterError("to_sinks() takes a list of sink configs")
        if not sink_configs:
            raise WallarooParameterError("to_sinks() needs at least one sink config")
        sinks = tuple(check_sink_config(s, "to_sinks") for s in sink_configs)
        return Pipeline(self._name, self._flow, sinks)

    def spec(self) -> PipelineSpec:
        """The immutable description of this closed pipeline."""
        if self._sinks is None:
            raise WallarooParameterError(
                f"pipeline '{self._name}' is open; an application must end with to_sink/s"
            )
        return PipelineSpec(self._name, self._flow, self._sinks)

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else "open"
        return f"<Pipeline {self._name!r} {state}, {len(self._flow.steps)} steps>"


def source(name: str, source_config: Any) -> Pipeline:
    """Start a pipeline called ``name`` at a source."""
    if not isinstance(name, str) or not name:
        raise WallarooParameterError("wallaroo.source() needs a pipeline name (a string)")
    config = check_source_config(source_config, "wallaroo.source")
    return Pipeline(name, Flow((source_spec(name, config),)))


def build_application(app_name: str, pipeline: Pipeline) -> Application:
    """Validate a closed pipeline and return the application description."""
    if not isinstance(pipeline, Pipeline):
        raise WallarooParameterError(
            f"build_application() takes a pipeline from wallaroo.source(...), got {pipeline!r}"
        )
    if not pipeline.is_closed:
        raise WallarooParameterError(
            f"an application must end with to_sink/s: pipeline '{pipeline.name}' is open; "
            "call .to_sink(sink_config) on it before build_application"
        )
    return finish_application(app_name, [pipeline.spec()])
