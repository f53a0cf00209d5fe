"""The JSON document of ``/api/stats`` and the chart points of ``/api/history``.

Counters come from the newest sample; rates and the ``window`` latency percentiles from the
difference between it and the sample before (one collector interval). Latencies are in
nanoseconds, reported as the upper bound of their power-of-two bin. The document's shape is
described in ``docs/metrics.md``; ``wallaroo top`` and the dashboard read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from wallaroo import __version__
from wallaroo.engine.histogram import U64_MAX, HistogramSnapshot
from wallaroo.metrics.collector import Sample
from wallaroo.metrics.topology import Topology

__all__ = ["PERCENTILES", "document", "latency_summary", "point"]

#: (JSON key, quantile) of the latency percentiles reported everywhere.
PERCENTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999))


def latency_summary(snap: HistogramSnapshot | None) -> dict[str, Any] | None:
    """Count, mean, percentiles, min and max (ns) of a histogram; None without one."""
    if snap is None:
        return None
    out: dict[str, Any] = {"count": snap.count}
    out["mean"] = snap.total_ns // snap.count if snap.count else None
    out.update(_percentiles(snap))
    out["min"] = snap.min_ns if snap.min_ns != U64_MAX else None
    out["max"] = snap.max_ns if snap.count else None
    return out


def _percentiles(snap: HistogramSnapshot | None) -> dict[str, int | None]:
    values = snap.percentiles([q for _, q in PERCENTILES]) if snap is not None else []
    return {key: values[i] if values else None for i, (key, _) in enumerate(PERCENTILES)}


def _merge(snaps: Iterable[HistogramSnapshot | None]) -> HistogramSnapshot | None:
    present = [s for s in snaps if s is not None]
    return HistogramSnapshot.merge(present) if present else None


def _since(
    new: HistogramSnapshot | None, old: HistogramSnapshot | None
) -> HistogramSnapshot | None:
    if new is None:
        return None
    return new.since(old) if old is not None else new


class _Pair:
    """The newest sample, the one before it (if any), and rates between them."""

    def __init__(self, previous: Sample | None, newest: Sample) -> None:
        self.new = newest.stats
        self.old = previous.stats if previous is not None else None
        elapsed = (newest.monotonic_ns - previous.monotonic_ns) / 1e9 if previous else 0.0
        self.seconds = elapsed
        self.segments = {s.id: s for s in self.new.engine.segments}
        self.old_segments = {s.id: s for s in self.old.engine.segments} if self.old else {}
        self.sinks = {s.index: s for s in self.new.engine.sinks}
        self.old_sinks = {s.index: s for s in self.old.engine.sinks} if self.old else {}

    def rate(self, new: int, old: int | None) -> float:
        if old is None or self.seconds <= 0:
            return 0.0
        return max(new - old, 0) / self.seconds

    def e2e(self, ids: Sequence[int], old: bool = False) -> HistogramSnapshot | None:
        table = self.old_segments if old else self.segments
        return _merge(table[i].end_to_end for i in ids if i in table)

    def flow(self, topo: Topology, name: str) -> tuple[int, int, float, float]:
        """A pipeline's messages in and out, and their rates."""
        ids, sinks = topo.source_segments[name], topo.sinks[name]
        in_new = sum(self.segments[i].messages_in for i in ids)
        out_new = sum(self.sinks[i].messages for i in sinks)
        in_old = sum(self.old_segments[i].messages_in for i in ids) if self.old else None
        out_old = sum(self.old_sinks[i].messages for i in sinks) if self.old else None
        return in_new, out_new, self.rate(in_new, in_old), self.rate(out_new, out_old)

    def pipeline(self, topo: Topology, name: str) -> dict[str, Any]:
        ids = topo.source_segments[name]
        in_new, out_new, rate_in, rate_out = self.flow(topo, name)
        latency = self.e2e(ids)
        return {
            "name": name,
            "sources": topo.sources[name],
            "sinks": [self.sinks[i].name for i in topo.sinks[name]],
            "messages_in": in_new,
            "messages_out": out_new,
            "rate_in": rate_in,
            "rate_out": rate_out,
            "dead_letters": sum(
                s.dead_letters for s in self.segments.values() if s.pipeline == name
            ),
            "latency": latency_summary(latency),
            "window": latency_summary(_since(latency, self.e2e(ids, old=True))),
        }

    def stage(self, topo: Topology, seg_id: int) -> dict[str, Any]:
        seg = self.segments[seg_id]
        old = self.old_segments.get(seg_id)
        return {
            "id": seg.id,
            "name": seg.name,
            "pipeline": seg.pipeline,
            "steps": topo.steps.get(seg.id, []),
            "keyed": topo.keyed.get(seg.id, False),
            "messages_in": seg.messages_in,
            "messages_out": seg.messages_out,
            "rate_in": self.rate(seg.messages_in, old.messages_in if old else None),
            "rate_out": self.rate(seg.messages_out, old.messages_out if old else None),
            "dead_letters": seg.dead_letters,
            "latency": latency_summary(seg.latency),
            "window": latency_summary(_since(seg.latency, old.latency if old else None)),
        }


def _sources(pair: _Pair) -> list[dict[str, Any]]:
    old = {s.name: s for s in pair.old.sources} if pair.old else {}
    sessions: dict[str, list[dict[str, Any]]] = {}
    for conn in pair.new.connections:
        sessions.setdefault(conn.source, []).append(
            {
                "peer": conn.peer,
                "state": conn.session.state,
                "credits": conn.session.credits_outstanding,
                "messages": conn.session.messages_delivered,
                "duplicates": conn.session.duplicates_skipped,
                "open_streams": conn.session.open_streams,
            }
        )
    out = []
    for src in pair.new.sources:
        prev = old.get(src.name)
        mine = sessions.get(src.name, [])
        out.append(
            {
                "name": src.name,
                "kind": src.kind,
                "address": src.address,
                "connections": src.connections,
                "connections_total": src.connections_total,
                "messages": src.messages,
                "rate": pair.rate(src.messages, prev.messages if prev else None),
                "errors": src.errors,
                "credits": sum(s["credits"] for s in mine) if mine else None,
                "sessions": mine,
            }
        )
    return out


def _sinks(pair: _Pair) -> list[dict[str, Any]]:
    out = []
    for index, output in enumerate(pair.new.sinks):
        engine = pair.sinks[index]
        old = pair.old_sinks.get(index)
        out.append(
            {
                "name": output.name,
                "address": output.address,
                "connected": output.connected,
                "connects": output.connects,
                "buffered_bytes": output.buffered_bytes,
                "bytes_written": output.bytes_written,
                "messages": engine.messages,
                "rate": pair.rate(engine.messages, old.messages if old else None),
                "dead_letters": engine.dead_letters,
            }
        )
    return out


def _checkpoints(samples: Sequence[Sample]) -> dict[str, Any] | None:
    newest = samples[-1].stats.checkpoints
    if newest is None:
        return None
    recent: dict[int, float] = {}
    for sample in samples:  # one duration per checkpoint the samples saw complete
        cp = sample.stats.checkpoints
        if cp is not None and cp.taken:
            recent[cp.taken] = cp.last_duration_s
    return {
        "last_committed": newest.last_committed,
        "taken": newest.taken,
        "aborted": newest.aborted,
        "rollbacks": newest.rollbacks,
        "last_duration_s": newest.last_duration_s,
        "last_bytes": newest.last_bytes,
        "recent_durations_s": [recent[k] for k in sorted(recent)][-30:],
    }


def document(topo: Topology, samples: Sequence[Sample], interval_s: float) -> dict[str, Any]:
    """The ``/api/stats`` document from the kept samples (at least one)."""
    previous = samples[-2] if len(samples) > 1 else None
    pair = _Pair(previous, samples[-1])
    stats = pair.new
    dead = stats.engine.dead_letters
    old_dead = pair.old.engine.dead_letters.total if pair.old else None
    gate = stats.gate
    return {
        "version": __version__,
        "worker": stats.name,
        "application": topo.app_name,
        "time": samples[-1].wall_ns / 1e9,
        "interval_s": interval_s,
        "window_s": pair.seconds,
        "pipelines": [pair.pipeline(topo, name) for name in topo.pipelines],
        "stages": [pair.stage(topo, i) for i in sorted(pair.segments)],
        "sources": _sources(pair),
        "sinks": _sinks(pair),
        "states": [
            {"name": s.name, "keys": s.keys, "key_groups_used": s.key_groups_used}
            for s in stats.engine.states
        ],
        "windows": [
            {
                "name": w.name,
                "keys": w.keys,
                "open": w.open_windows,
                "fired": w.fired,
                "late": w.late,
                "dead_letters": w.dead_letters,
            }
            for w in stats.engine.windows
        ],
        "dead_letters": {
            "total": dead.total,
            "rate": pair.rate(dead.total, old_dead),
            "by_stage": [{"stage": stage, "count": n} for stage, n in dead.by_stage],
            "path": dead.path,
        },
        "gate": {
            "open": gate.open,
            "blockers": list(gate.blockers),
            "paused_transports": gate.paused_transports,
            "times_closed": gate.times_closed,
        },
        "checkpoints": _checkpoints(samples),
        "graph": topo.graph,
        "point": point(topo, previous, samples[-1]),
    }


def point(topo: Topology, previous: Sample | None, newest: Sample) -> dict[str, Any]:
    """One chart point: time (ms since the epoch), then rates (``in``, ``out``) and window
    percentiles per pipeline and per stage (stage keys are segment ids as strings)."""
    pair = _Pair(previous, newest)
    pipelines = {}
    for name in topo.pipelines:
        _, _, rate_in, rate_out = pair.flow(topo, name)
        ids = topo.source_segments[name]
        window = _since(pair.e2e(ids), pair.e2e(ids, old=True))
        pipelines[name] = {"in": rate_in, "out": rate_out, **_percentiles(window)}
    stages = {}
    for seg_id, seg in sorted(pair.segments.items()):
        old = pair.old_segments.get(seg_id)
        stages[str(seg_id)] = {
            "in": pair.rate(seg.messages_in, old.messages_in if old else None),
            "out": pair.rate(seg.messages_out, old.messages_out if old else None),
            **_percentiles(_since(seg.latency, old.latency if old else None)),
        }
    dead = pair.new.engine.dead_letters.total
    return {
        "t": newest.wall_ns // 1_000_000,
        "pipelines": pipelines,
        "stages": stages,
        "dead_letters": pair.rate(dead, pair.old.engine.dead_letters.total if pair.old else None),
    }
