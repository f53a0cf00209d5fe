"""Compile a logical :class:`~wallaroo.plan.logical.Application` into a physical plan.

Each source's path to its sinks is cut into segments at routing boundaries (``key_by``,
``collect``, and an implicit exchange before a state step that no ``key_by`` precedes). Stateless
steps are fused into the segment they fall in; after a merge of unkeyed pipelines they are fused
into each input's segment. A keyed segment is identified by where it starts in the logical plan,
so the inputs of a merge share it (and its state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wallaroo.configs import GenSourceConfig, SinkConnectorConfig, TCPSinkConfig
from wallaroo.decorators import Decoder, Encoder
from wallaroo.errors import WallarooParameterError
from wallaroo.plan.logical import (
    Application,
    Collect,
    Flow,
    KeyBy,
    PipelineSpec,
    SourceSpec,
    StatefulStep,
    StatelessStep,
    Step,
    WindowStep,
)
from wallaroo.plan.physical import (
    DEFAULT_KEY_GROUPS,
    DecodeOp,
    Discard,
    Exchange,
    MapOp,
    Op,
    PhysicalPlan,
    SegmentPlan,
    SinkPlan,
    SourcePlan,
    StateOp,
    StatePlan,
    Target,
    ToSinks,
    ToWindow,
    WindowPlan,
)

__all__ = ["compile_application"]


@dataclass(frozen=True, slots=True)
class _Pos:
    flow: Flow
    index: int

    @property
    def step(self) -> Step:
        return self.flow.steps[self.index]

    @property
    def ident(self) -> tuple[int, int]:
        return (id(self.flow), self.index)


def _paths(flow: Flow, suffix: list[_Pos]) -> list[tuple[SourceSpec, list[_Pos]]]:
    """Every source under ``flow`` with the list of step positions it passes, in order."""
    here = [_Pos(flow, i) for i in range(len(flow.steps))] + suffix
    found: list[tuple[SourceSpec, list[_Pos]]] = []
    for item in flow.inputs:
        if isinstance(item, SourceSpec):
            found.append((item, here))
        else:
            found.extend(_paths(item, here))
    return found


def _fn(obj: Any, method: str) -> Any:
    """The plain function behind a decorated object, else the bound method (duck typing)."""
    if isinstance(obj, Decoder | Encoder):
        return obj.fn
    return getattr(obj, method)


class _Compiler:
    def __init__(self, app: Application, key_groups: int) -> None:
        self.app = app
        self.key_groups = key_groups
        self.segments: dict[int, SegmentPlan] = {}
        self.keyed_cache: dict[object, int] = {}
        self.sinks: list[SinkPlan] = []
        self.sink_by_connector: dict[str, int] = {}
        self.states: dict[str, StatePlan] = {}
        self.sources: list[SourcePlan] = []
        self.windows: dict[object, WindowPlan] = {}
        self._next_id = 0

    def run(self) -> PhysicalPlan:
        for pipeline in self.app.pipelines:
            targets = self._sink_target(pipeline)
            for source, path in _paths(pipeline.flow, []):
                self._source(pipeline, source, path, targets)
        segments = tuple(self.segments[i] for i in sorted(self.segments))
        return PhysicalPlan(
            self.app.name,
            tuple(self.sources),
            segments,
            tuple(self.sinks),
            tuple(self.states.values()),
            self.key_groups,
            tuple(sorted(self.windows.values(), key=lambda w: w.id)),
        )

    def _counter(self) -> int:
        n = self._next_id
        self._next_id += 1
        return n

    def _sink_target(self, pipeline: PipelineSpec) -> Target:
        if not pipeline.sinks:
            return Discard()
        indices: list[int] = []
        for config in pipeline.sinks:
            if isinstance(config, SinkConnectorConfig) and config.name in self.sink_by_connector:
                indices.append(self.sink_by_connector[config.name])
                continue
            index = len(self.sinks)
            self.sinks.append(
                SinkPlan(
                    index,
                    self._sink_name(config),
                    config,
                    _fn(config.encoder, "encode"),
                    bytes_only=getattr(config, "payloads_are_bytes", True),
                )
            )
            if isinstance(config, SinkConnectorConfig):
                self.sink_by_connector[config.name] = index
            indices.append(index)
        return ToSinks(tuple(indices))

    def _sink_name(self, config: Any) -> str:
        if isinstance(config, SinkConnectorConfig):
            return config.name
        own = getattr(config, "name", None)
        if isinstance(own, str) and own:
            base = own
        elif isinstance(config, TCPSinkConfig):
            base = f"{config.host}:{config.port}"
        else:
            base = "sink"
        taken = {s.name for s in self.sinks}
        name, n = base, 2
        while name in taken:
            name, n = f"{base}#{n}", n + 1
        return name

    def _source(
        self, pipeline: PipelineSpec, source: SourceSpec, path: list[_Pos], end: Target
    ) -> None:
        config = source.config
        ops: list[Op] = []
        if not isinstance(config, GenSourceConfig):
            decoder = config.decoder
            label = getattr(getattr(decoder, "fn", None), "__name__", None) or "decode"
            ops.append(DecodeOp(f"decoder {label}", _fn(decoder, "decode")))
        seg_id = self._counter()
        index = len(self.sources)
        self.sources.append(
            SourcePlan(index, source.name, pipeline.name, config, seg_id, default_key=source.name)
        )
        rest, target = self._chain(pipeline, path, 0, keyed=False, end=end, source_key=source.name)
        ops.extend(rest)
        self.segments[seg_id] = SegmentPlan(
            seg_id,
            _segment_name(pipeline.name, source.name, ops),
            pipeline.name,
            keyed=False,
            ops=tuple(ops),
            target=target,
            source=index,
        )

    def _chain(
        self,
        pipeline: PipelineSpec,
        path: list[_Pos],
        start: int,
        *,
        keyed: bool,
        end: Target,
        source_key: str,
    ) -> tuple[list[Op], Target]:
        """Fuse steps from ``path[start]`` until a routing boundary; return ops and target."""
        ops: list[Op] = []
        for i in range(start, len(path)):
            step = path[i].step
            if isinstance(step, StatelessStep):
                comp = step.computation
                ops.append(MapOp(comp.comp_name, comp.fn, comp.multi))
            elif isinstance(step, StatefulStep):
                if not keyed:
                    seg = self._keyed(pipeline, path, i, end)
                    return ops, Exchange(seg, "by source key", source_key=source_key)
                ops.append(self._state_op(step))
            elif isinstance(step, WindowStep):
                if not keyed:
                    seg = self._keyed(pipeline, path, i, end)
                    return ops, Exchange(seg, "by source key", source_key=source_key)
                return ops, ToWindow(self._window(pipeline, path, i, step, end))
            elif isinstance(step, KeyBy):
                seg = self._keyed(pipeline, path, i + 1, end)
                return ops, Exchange(seg, step.label, key_fn=step.extractor.fn)
            elif isinstance(step, Collect):
                seg = self._keyed(pipeline, path, i + 1, end)
                return ops, Exchange(seg, step.label, const_key=step.key)
            else:  # pragma: no cover - windows add their own step kinds later
                raise WallarooParameterError(f"unsupported step {step!r}")
        return ops, end

    def _keyed(self, pipeline: PipelineSpec, path: list[_Pos], start: int, end: Target) -> int:
        ident: object = path[start].ident if start < len(path) else ("end", pipeline.name)
        found = self.keyed_cache.get(ident)
        if found is not None:
            return found
        seg_id = self._counter()
        self.keyed_cache[ident] = seg_id
        ops, target = self._chain(pipeline, path, start, keyed=True, end=end, source_key="")
        self.segments[seg_id] = SegmentPlan(
            seg_id,
            _segment_name(pipeline.name, "keyed", ops),
            pipeline.name,
            keyed=True,
            ops=tuple(ops),
            target=target,
        )
        return seg_id

    def _window(
        self, pipeline: PipelineSpec, path: list[_Pos], i: int, step: WindowStep, end: Target
    ) -> int:
        """The window of ``path[i]`` (one per logical window step, shared by merged inputs)."""
        ident = path[i].ident
        found = self.windows.get(ident)
        if found is not None:
            return found.id
        window_id = len(self.windows)
        state = f"window {window_id}: {step.label}"
        if state in self.states:
            raise WallarooParameterError(f"a state is already named {state!r}")
        next_segment = self._keyed(pipeline, path, i + 1, end)
        self.windows[ident] = WindowPlan(
            window_id, step.label, pipeline.name, step.spec, state, next_segment
        )
        return window_id

    def _state_op(self, step: StatefulStep) -> StateOp:
        plan = self.states.get(step.state_name)
        if plan is None:
            self.states[step.state_name] = StatePlan(
                step.state_name, step.state_factory, step.initial_keys
            )
        elif step.initial_keys and not plan.initial_keys:
            self.states[step.state_name] = StatePlan(
                step.state_name, plan.factory, step.initial_keys
            )
        comp = step.computation
        return StateOp(comp.comp_name, comp.fn, comp.multi, comp.returns_persist, step.state_name)


def _segment_name(pipeline: str, where: str, ops: list[Op]) -> str:
    names = "+".join(op.name for op in ops) or "pass"
    return f"{pipeline}/{where}/{names}"


def compile_application(app: Application, *, key_groups: int = DEFAULT_KEY_GROUPS) -> PhysicalPlan:
    """Compile ``app`` for an engine. ``key_groups`` is the number of state key groups."""
    if not isinstance(app, Application):
        raise WallarooParameterError(
            "application_setup() must return ab.build() or wallaroo.build_application(...), "
            f"got {type(app).__name__}"
        )
    if isinstance(key_groups, bool) or not isinstance(key_groups, int) or key_groups < 1:
        raise WallarooParameterError(f"key_groups must be a positive int, got {key_groups!r}")
    return _Compiler(app, key_groups).run()
