"""The Prometheus text exposition format (version 0.0.4) of one sample.

Counters end in ``_total``; latencies are histograms in seconds whose buckets are the engine's
power-of-two nanosecond bins (``le`` = ``2**i - 1`` ns, exact upper bounds) up to about 69 s,
then ``+Inf``. Metric names are listed in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from wallaroo import __version__
from wallaroo.engine.histogram import HistogramSnapshot, bin_upper_ns
from wallaroo.metrics.collector import Sample
from wallaroo.metrics.topology import Topology

if TYPE_CHECKING:
    from wallaroo.worker.checkpointing import CheckpointStatistics

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "exposition"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = 37  # bins 0..36: up to 2**36 - 1 ns (68.7 s); the rest is only in +Inf

Labels = Mapping[str, str]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels.items()]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self, name: str, kind: str, text: str, samples: Iterable[tuple[Labels, float]]
    ) -> None:
        rows = list(samples)
        if not rows:
            return
        self.lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        self.lines += [f"{name}{_labels(labels)} {_number(v)}" for labels, v in rows]

    def histogram(
        self, name: str, text: str, samples: Iterable[tuple[Labels, HistogramSnapshot]]
    ) -> None:
        rows = list(samples)
        if not rows:
            return
        self.lines += [f"# HELP {name} {text}", f"# TYPE {name} histogram"]
        for labels, snap in rows:
            seen = 0
            for i in range(LATENCY_BUCKETS):
                seen += snap.bins[i]
                bound = '"' + repr(bin_upper_ns(i) / 1e9) + '"'
                self.lines.append(f"{name}_bucket{_labels(labels, 'le=' + bound)} {seen}")
            infinity = _labels(labels, 'le="+Inf"')
            self.lines.append(f"{name}_bucket{infinity} {snap.count}")
            self.lines.append(f"{name}_sum{_labels(labels)} {_number(snap.total_ns / 1e9)}")
            self.lines.append(f"{name}_count{_labels(labels)} {snap.count}")


def exposition(topo: Topology, sample: Sample) -> str:
    """The text of ``/metrics`` for ``sample``."""
    stats = sample.stats
    out = _Writer()
    out.family(
        "wallaroo_info",
        "gauge",
        "The worker, its application and the wallaroo-py version.",
        [({"worker": stats.name, "application": topo.app_name, "version": __version__}, 1)],
    )
    _sources(out, topo, sample)
    _stages(out, sample)
    _sinks(out, sample)
    _state(out, sample)
    return "\n".join(out.lines) + "\n"


def _sources(out: _Writer, topo: Topology, sample: Sample) -> None:
    stats = sample.stats
    pipeline_of = {name: p for p, names in topo.sources.items() for name in names}
    rows = [({"source": s.name, "pipeline": pipeline_of.get(s.name, "")}, s) for s in stats.sources]
    out.family(
        "wallaroo_source_messages_total",
        "counter",
        "Messages a source received and handed to the engine.",
        [(labels, s.messages) for labels, s in rows],
    )
    out.family(
        "wallaroo_source_errors_total",
        "counter",
        "Connections a source closed for bad input, and internal errors.",
        [(labels, s.errors) for labels, s in rows],
    )
    out.family(
        "wallaroo_source_connections",
        "gauge",
        "Open connections of a source.",
        [(labels, s.connections) for labels, s in rows],
    )
    out.family(
        "wallaroo_source_accepted_connections_total",
        "counter",
        "Connections a source accepted.",
        [(labels, s.connections_total) for labels, s in rows],
    )
    credits: dict[str, int] = {}
    for conn in stats.connections:
        credits[conn.source] = credits.get(conn.source, 0) + conn.session.credits_outstanding
    out.family(
        "wallaroo_source_credits",
        "gauge",
        "Credits connector processes may still spend before the next ACK (all sessions).",
        [({"source": name}, n) for name, n in credits.items()],
    )


def _stages(out: _Writer, sample: Sample) -> None:
    segments = sample.stats.engine.segments
    labels = [({"pipeline": s.pipeline, "stage": s.name}, s) for s in segments]
    out.family(
        "wallaroo_stage_messages_in_total",
        "counter",
        "Messages that entered a stage (a fused segment of steps).",
        [(lab, s.messages_in) for lab, s in labels],
    )
    out.family(
        "wallaroo_stage_messages_out_total",
        "counter",
        "Messages a stage handed on (per sink, or to the next stage).",
        [(lab, s.messages_out) for lab, s in labels],
    )
    out.family(
        "wallaroo_stage_dead_letters_total",
        "counter",
        "Messages that failed in a stage and became dead letters.",
        [(lab, s.dead_letters) for lab, s in labels],
    )
    out.histogram(
        "wallaroo_stage_latency_seconds",
        "Time a batch spent in a stage's own steps, per message.",
        [(lab, s.latency) for lab, s in labels if s.latency is not None],
    )
    out.histogram(
        "wallaroo_pipeline_latency_seconds",
        "Time from a batch entering its source stage to its outputs reaching the sinks.",
        [
            ({"pipeline": s.pipeline, "stage": s.name}, s.end_to_end)
            for s in segments
            if s.end_to_end is not None
        ],
    )


def _sinks(out: _Writer, sample: Sample) -> None:
    stats = sample.stats
    engine = stats.engine.sinks
    rows = [({"sink": o.name}, o, engine[i]) for i, o in enumerate(stats.sinks)]
    out.family(
        "wallaroo_sink_messages_total",
        "counter",
        "Encoded messages handed to a sink.",
        [(lab, e.messages) for lab, _, e in rows],
    )
    out.family(
        "wallaroo_sink_bytes_written_total",
        "counter",
        "Bytes a sink wrote to its connection.",
        [(lab, o.bytes_written) for lab, o, _ in rows],
    )
    out.family(
        "wallaroo_sink_buffered_bytes",
        "gauge",
        "Bytes waiting in a sink's buffer (the queue depth backpressure watches).",
        [(lab, o.buffered_bytes) for lab, o, _ in rows],
    )
    out.family(
        "wallaroo_sink_connected",
        "gauge",
        "1 while a sink's connection is up.",
        [(lab, int(o.connected)) for lab, o, _ in rows],
    )
    out.family(
        "wallaroo_sink_connects_total",
        "counter",
        "Connections a sink made (reconnects included).",
        [(lab, o.connects) for lab, o, _ in rows],
    )


def _state(out: _Writer, sample: Sample) -> None:
    stats = sample.stats
    engine = stats.engine
    dead = engine.dead_letters
    out.family(
        "wallaroo_dead_letters_total",
        "counter",
        "Dead letters, by the stage that rejected them.",
        [({"stage": stage}, n) for stage, n in dead.by_stage] or [({}, 0)],
    )
    out.family(
        "wallaroo_state_keys",
        "gauge",
        "Keys held in a state.",
        [({"state": s.name}, s.keys) for s in engine.states],
    )
    out.family(
        "wallaroo_window_open",
        "gauge",
        "Windows holding data, per window step.",
        [({"window": w.name}, w.open_windows) for w in engine.windows],
    )
    out.family(
        "wallaroo_window_fired_total",
        "counter",
        "Windows fired, per window step.",
        [({"window": w.name}, w.fired) for w in engine.windows],
    )
    out.family(
        "wallaroo_gate_open",
        "gauge",
        "1 while no sink holds back the sources.",
        [({}, int(stats.gate.open))],
    )
    out.family(
        "wallaroo_gate_closed_total",
        "counter",
        "Times a sink's full buffer paused the sources.",
        [({}, stats.gate.times_closed)],
    )
    _checkpoints(out, stats.checkpoints)


def _checkpoints(out: _Writer, cp: CheckpointStatistics | None) -> None:
    if cp is None:
        return
    out.family("wallaroo_checkpoints_total", "counter", "Checkpoints taken.", [({}, cp.taken)])
    out.family(
        "wallaroo_checkpoints_aborted_total", "counter", "Checkpoints aborted.", [({}, cp.aborted)]
    )
    out.family(
        "wallaroo_checkpoint_last_committed",
        "gauge",
        "Id of the newest committed checkpoint.",
        [({}, cp.last_committed)],
    )
    out.family(
        "wallaroo_checkpoint_last_duration_seconds",
        "gauge",
        "How long the newest checkpoint took.",
        [({}, cp.last_duration_s)],
    )
    out.family(
        "wallaroo_checkpoint_last_bytes",
        "gauge",
        "Size of the newest checkpoint.",
        [({}, cp.last_bytes)],
    )
