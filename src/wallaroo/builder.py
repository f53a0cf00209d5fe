"""``wallaroo.ApplicationBuilder``: the seed generation's way to describe an application.

Every method returns the builder so calls chain. Mistakes raise
:class:`~wallaroo.errors.WallarooParameterError` at the call that makes them, naming the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from wallaroo.configs import SinkConnectorConfig, SourceConnectorConfig
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

__all__ = ["ApplicationBuilder"]

SOURCE_CONNECTOR_BASE_PORT = 7100
SINK_CONNECTOR_BASE_PORT = 7200


class _OpenPipeline:
    __slots__ = ("name", "source", "steps")

    def __init__(self, name: str, source: Any) -> None:
        self.name = name
        self.source = source
        self.steps: list[Step] = []


class ApplicationBuilder:
    """Describe an application as pipelines: ``new_pipeline``, steps, then ``to_sink``.

    >>> ab = ApplicationBuilder("Celsius to Fahrenheit")  # doctest: +SKIP
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise WallarooParameterError("ApplicationBuilder needs an application name")
        self._name = name
        self._source_connectors: list[SourceConnectorConfig] = []
        self._sink_connectors: list[SinkConnectorConfig] = []
        self._pipelines: list[PipelineSpec] = []
        self._open: _OpenPipeline | None = None
        self._last_closed: str | None = None

    # -- connectors ------------------------------------------------------------------------
    def source_connector(
        self, name: str, encoder: Any, decoder: Any, port: int | str | None = None, **options: Any
    ) -> ApplicationBuilder:
        """Declare a source connector; its port defaults to 7100, 7101, ... in declaration order.

        ``options`` may set ``host``, ``cookie``, ``max_credits`` and ``refill_credits``.
        """
        self._check_new_connector(name)
        port = SOURCE_CONNECTOR_BASE_PORT + len(self._source_connectors) if port is None else port
        self._source_connectors.append(
            SourceConnectorConfig(name, encoder, decoder, port, **options)
        )
        return self

    def sink_connector(
        self, name: str, encoder: Any, decoder: Any, port: int | str | None = None, **options: Any
    ) -> ApplicationBuilder:
        """Declare a sink connector; its port defaults to 7200, 7201, ... in declaration order.

        ``options`` may set ``host`` and ``cookie``.
        """
        self._check_new_connector(name)
        port = SINK_CONNECTOR_BASE_PORT + len(self._sink_connectors) if port is None else port
        self._sink_connectors.append(SinkConnectorConfig(name, encoder, decoder, port, **options))
        return self

    def _check_new_connector(self, name: Any) -> None:
        if not isinstance(name, str) or not name:
            raise WallarooParameterError("a connector needs a name (a non-empty string)")
        taken = {c.name for c in self._source_connectors} | {c.name for c in self._sink_connectors}
        if name in taken:
            raise WallarooParameterError(
                f"a connector named '{name}' is already declared; give each connector its own name"
            )

    # -- pipelines --------------------------------------------------------------------------
    def new_pipeline(self, name: str, source_config: Any) -> ApplicationBuilder:
        """Start a pipeline fed by a source config or a declared source connector's name."""
        if self._open is not None:
            raise WallarooParameterError(
                f"pipeline '{self._open.name}' is still open; end it with to_sink(...) or done() "
                f"before new_pipeline('{name}')"
            )
        if not isinstance(name, str) or not name:
            raise WallarooParameterError("new_pipeline() needs a pipeline name")
        if any(p.name == name for p in self._pipelines):
            raise WallarooParameterError(f"a pipeline named '{name}' already exists")
        if isinstance(source_config, str):
            config: Any = self._declared(source_config, self._source_connectors, "source")
        else:
            config = check_source_config(source_config, "new_pipeline")
        self._open = _OpenPipeline(name, source_spec(name, config))
        return self

    def _declared(self, name: str, declared: Sequence[Any], kind: str) -> Any:
        for connector in declared:
            if connector.name == name:
                return connector
        known = ", ".join(repr(c.name) for c in declared) or "none"
        raise WallarooParameterError(
            f"no {kind} connector named '{name}' is declared (declared: {known}); "
            f"declare it first with ab.{kind}_connector('{name}', encoder=..., decoder=...)"
        )

    def _pipeline(self, method: str) -> _OpenPipeline:
        if self._open is not None:
            return self._open
        if self._last_closed is not None:
            raise WallarooParameterError(
                f"{method}() cannot follow the end of pipeline '{self._last_closed}'; "
                "start another pipeline with new_pipeline(name, source) first"
            )
        raise WallarooParameterError(
            f"{method}() must follow new_pipeline(name, source); start a pipeline first"
        )

    def to(self, computation: Any) -> ApplicationBuilder:
        """Add a stateless computation (or a state computation that names its state class)."""
        pipeline = self._pipeline("to")
        if hasattr(computation, "returns_persist"):
            pipeline.steps.append(state_step(computation, "to"))
        else:
            pipeline.steps.append(stateless_step(computation, "to"))
        return self

    def to_parallel(self, computation: Any) -> ApplicationBuilder:
        """Add a stateless computation that may run in parallel (per worker)."""
        self._pipeline("to_parallel").steps.append(
            stateless_step(computation, "to_parallel", parallel=True)
        )
        return self

    def to_stateful(
        self, computation: Any, state_class: Any, state_name: str
    ) -> ApplicationBuilder:
        """Add a state computation over ONE state object named ``state_name``.

        The same name in another pipeline is the same state object.
        """
        pipeline = self._pipeline("to_stateful")
        step = state_step(computation, "to_stateful", state_class, state_name)
        pipeline.steps.extend((Collect(key=step.state_name), step))
        return self

    def to_state_partition(
        self,
        computation: Any,
        state_class: Any,
        state_name: str,
        partition_function: Any,
        partition_keys: Iterable[Any] | None = None,
    ) -> ApplicationBuilder:
        """Add a state computation over state partitioned by ``partition_function(data)``.

        ``partition_keys`` optionally creates those partitions up front; a key seen later
        creates its partition when it first arrives.
        """
        pipeline = self._pipeline("to_state_partition")
        extractor = key_step(partition_function, "to_state_partition", "partition")
        step = state_step(
            computation, "to_state_partition", state_class, state_name, partition_keys
        )
        pipeline.steps.extend((KeyBy(extractor), step))
        return self

    def to_sink(self, sink_config: Any) -> ApplicationBuilder:
        """End the pipeline with a sink config or a declared sink connector's name."""
        return self._close("to_sink", (sink_config,))

    def to_sinks(self, sink_configs: Sequence[Any]) -> ApplicationBuilder:
        """End the pipeline with several sinks; every output goes to each of them."""
        if isinstance(sink_configs, str) or not isinstance(sink_configs, Sequence):
            raise WallarooParameterError("to_sinks() takes a list of sink configs or names")
        if not sink_configs:
            raise WallarooParameterError("to_sinks() needs at least one sink")
        return self._close("to_sinks", tuple(sink_configs))

    def done(self) -> ApplicationBuilder:
        """End a pipeline that has no sink (it only updates state)."""
        return self._close("done", ())

    def _close(self, method: str, sinks: tuple[Any, ...]) -> ApplicationBuilder:
        pipeline = self._pipeline(method)
        resolved = tuple(
            self._declared(s, self._sink_connectors, "sink")
            if isinstance(s, str)
            else check_sink_config(s, method)
            for s in sinks
        )
        flow = Flow((pipeline.source,), tuple(pipeline.steps))
        self._pipelines.append(PipelineSpec(pipeline.name, flow, resolved))
        self._open = None
        self._last_closed = pipeline.name
        return self

    def build(self) -> Application:
        """Validate and return the application description."""
        if self._open is not None:
            raise WallarooParameterError(
                f"pipeline '{self._open.name}' has no end; finish it with to_sink(...) "
                "(or done() if it only updates state) before build()"
            )
        return finish_application(
            self._name, self._pipelines, self._source_connectors, self._sink_connectors
        )
