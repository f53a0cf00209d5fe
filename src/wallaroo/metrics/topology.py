"""Where each number belongs: pipelines, their sources, segments and sinks, and the graph.

Built once per worker from the physical plan; the report, the Prometheus text and the hub sender
use it to group the engine's per-segment and per-sink counters by pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from wallaroo.plan.physical import Exchange, PhysicalPlan, ToSinks, ToWindow

__all__ = ["Topology"]


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class Topology:
    """The plan's shape, as the metrics see it.

    Attributes:
        app_name: the application's name.
        pipelines: pipeline names, in plan order.
        sources: pipeline -> names of its sources.
        source_segments: pipeline -> ids of the segments its sources feed.
        sinks: pipeline -> indices of the sinks its segments write to.
        steps: segment id -> the names of its fused steps.
        keyed: segment id -> whether it runs on keyed messages.
        graph: ``{"nodes": [...], "edges": [[from, to], ...]}`` for the dashboard.
    """

    app_name: str
    pipelines: list[str]
    sources: dict[str, list[str]]
    source_segments: dict[str, list[int]]
    sinks: dict[str, list[int]]
    steps: dict[int, list[str]]
    keyed: dict[int, bool]
    graph: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, plan: PhysicalPlan) -> Topology:
        """The topology of ``plan``."""
        pipelines = _unique(
            [s.pipeline for s in plan.sources] + [s.pipeline for s in plan.segments]
        )
        sources: dict[str, list[str]] = {p: [] for p in pipelines}
        source_segments: dict[str, list[int]] = {p: [] for p in pipelines}
        for src in plan.sources:
            sources[src.pipeline].append(src.name)
            source_segments[src.pipeline].append(src.segment)
        sinks: dict[str, list[int]] = {p: [] for p in pipelines}
        for seg in plan.segments:
            if isinstance(seg.target, ToSinks):
                sinks[seg.pipeline] = sorted({*sinks[seg.pipeline], *seg.target.sinks})
        return cls(
            app_name=plan.app_name,
            pipelines=pipelines,
            sources=sources,
            source_segments=source_segments,
            sinks=sinks,
            steps={seg.id: [op.name for op in seg.ops] for seg in plan.segments},
            keyed={seg.id: seg.keyed for seg in plan.segments},
            graph=_graph(plan),
        )


def _graph(plan: PhysicalPlan) -> dict[str, Any]:
    """Nodes (sources, segments, windows, sinks) and the edges messages travel along."""
    nodes: list[dict[str, Any]] = []
    edges: list[list[str]] = []
    for src in plan.sources:
        nodes.append(
            {
                "id": f"source:{src.index}",
                "kind": "source",
                "label": src.name,
                "pipeline": src.pipeline,
                "ref": src.index,
            }
        )
        edges.append([f"source:{src.index}", f"segment:{src.segment}"])
    for seg in plan.segments:
        node = f"segment:{seg.id}"
        nodes.append(
            {
                "id": node,
                "kind": "stage",
                "label": "+".join(op.name for op in seg.ops) or "pass",
                "pipeline": seg.pipeline,
                "ref": seg.id,
                "keyed": seg.keyed,
            }
        )
        target = seg.target
        if isinstance(target, ToSinks):
            edges.extend([node, f"sink:{i}"] for i in target.sinks)
        elif isinstance(target, Exchange):
            edges.append([node, f"segment:{target.segment}"])
        elif isinstance(target, ToWindow):
            edges.append([node, f"window:{target.window}"])
    for win in plan.windows:
        nodes.append(
            {
                "id": f"window:{win.id}",
                "kind": "window",
                "label": win.name,
                "pipeline": win.pipeline,
                "ref": win.id,
            }
        )
        edges.append([f"window:{win.id}", f"segment:{win.next_segment}"])
    nodes.extend(
        {"id": f"sink:{sink.index}", "kind": "sink", "label": sink.name, "ref": sink.index}
        for sink in plan.sinks
    )
    return {"nodes": nodes, "edges": edges}
