"""Latency histograms: the bins, and known latencies injected with a mock clock."""

import pytest

import wallaroo
from wallaroo.engine.histogram import BINS, U64_MAX, HistogramSnapshot, LatencyHistogram
from wallaroo.engine.local import LocalEngine
from wallaroo.engine.segment import SegmentRunner, TimedSegmentRunner
from wallaroo.loader import load_application
from wallaroo.metrics.collector import MetricsCollector
from wallaroo.metrics.report import document
from wallaroo.metrics.topology import Topology
from wallaroo.plan.compiler import compile_application
from wallaroo.testing import ListSink, MockClock
from wallaroo.worker.flow import GateStatistics
from wallaroo.worker.runtime import WorkerStatistics


@pytest.mark.parametrize(
    ("value", "index"),
    [(0, 0), (1, 1), (2, 2), (3, 2), (4, 3), (1023, 10), (1024, 11), (2**64 - 1, 64), (2**70, 64)],
)
def test_a_value_lands_in_the_bin_of_its_bit_length(value, index):
    h = LatencyHistogram()
    h.record(value)
    assert h.bins[index] == 1
    assert sum(h.bins) == 1


def test_weighted_records_count_every_message_and_keep_extremes():
    h = LatencyHistogram()
    h.record(1500, 10)
    h.record(-5, 2)  # a clock that stepped back counts as 0
    snap = h.snapshot()
    assert snap.count == 12
    assert snap.bins[11] == 10 and snap.bins[0] == 2
    assert snap.total_ns == 15000
    assert (snap.min_ns, snap.max_ns) == (0, 1500)
    assert len(snap.bins) == BINS


def test_percentiles_are_bin_upper_bounds():
    h = LatencyHistogram()
    h.record(100, 90)  # bin 7: 64..127
    h.record(5000, 9)  # bin 13: 4096..8191
    h.record(70000, 1)  # bin 17
    snap = h.snapshot()
    assert snap.percentile(0.5) == 127
    assert snap.percentile(0.9) == 127
    assert snap.percentile(0.95) == 8191
    assert snap.percentile(0.99) == 8191
    assert snap.percentile(0.999) == 131071
    assert HistogramSnapshot().percentile(0.5) is None


def test_the_difference_of_two_snapshots_is_what_came_between():
    h = LatencyHistogram()
    h.record(100, 5)
    first = h.snapshot()
    h.record(3000, 2)
    delta = h.snapshot().since(first)
    assert delta.count == 2 and delta.bins[12] == 2 and delta.total_ns == 6000
    assert (delta.min_ns, delta.max_ns) == (2048, 3000)  # bin bounds, within the extremes seen
    empty = h.snapshot().since(h.snapshot())
    assert (empty.count, empty.min_ns, empty.max_ns) == (0, U64_MAX, 0)


class SlowSteps:
    """Steps that take a known time on a mock clock: 1,000 ns per message in the source stage,
    300 ns per message in the keyed stage."""

    def __init__(self, clock):
        self.clock = clock

    def app(self):
        clock = self.clock

        @wallaroo.decoder(header_length=4, length_fmt=">I")
        def decode(data):
            clock.advance(1000)
            return data.decode()

        @wallaroo.key_extractor
        def first_letter(text):
            return text[:1]

        class Seen:
            def __init__(self):
                self.n = 0

        @wallaroo.state_computation(name="seen", state=Seen)
        def seen(text, state):
            clock.advance(300)
            state.n += 1
            return text

        enc = wallaroo.encoder(lambda text: text.encode())
        pipeline = (
            wallaroo.source("Letters", wallaroo.TCPSourceConfig("letters", "127.0.0.1", 0, decode))
            .key_by(first_letter)
            .to(seen)
            .to_sink(wallaroo.TCPSinkConfig("127.0.0.1", 0, enc))
        )
        return wallaroo.build_application("Letters", pipeline)


def _engine(metrics):
    clock = MockClock()
    plan = compile_application(load_application(SlowSteps(clock).app()).application)
    return LocalEngine(plan, [ListSink()], clock=clock, metrics=metrics), clock


def test_injected_latencies_land_in_the_bins_the_mock_clock_says():
    engine, _ = _engine(metrics=True)
    runner = engine.source_runner(0)
    runner.run([b"ab"] * 10)  # source stage: 10 x 1,000 ns; keyed: 10 x 300 ns
    runner.run([b"cd"] * 3)  # 3,000 ns and 900 ns
    source, keyed = engine.statistics().segments
    assert source.latency.count == 13
    assert source.latency.bins[(10_000).bit_length()] == 10
    assert source.latency.bins[(3_000).bit_length()] == 3
    assert (source.latency.min_ns, source.latency.max_ns) == (3_000, 10_000)
    assert keyed.latency.bins[(3_000).bit_length()] == 10
    assert keyed.latency.bins[(900).bit_length()] == 3
    assert keyed.end_to_end is None
    e2e = source.end_to_end
    assert e2e.bins[(13_000).bit_length()] == 10  # source to sink: both stages
    assert e2e.bins[(3_900).bit_length()] == 3
    assert e2e.total_ns == 10 * 13_000 + 3 * 3_900
    assert e2e.percentile(0.5) == 16383 and e2e.percentile(0.1) == 4095


def test_the_collector_reports_window_percentiles_and_rates_from_the_mock_clock():
    engine, clock = _engine(metrics=True)
    collector = MetricsCollector(lambda: _worker_stats(engine), clock)
    collector.tick()
    engine.source_runner(0).run([b"x"] * 4)  # 4,000 + 1,200 ns
    clock.advance(2_000_000_000 - 5_200)
    collector.tick()
    doc = document(Topology.of(engine.plan), collector.samples, 1.0)
    (pipeline,) = doc["pipelines"]
    assert pipeline["rate_in"] == 2.0  # 4 messages in 2 s
    assert pipeline["window"]["count"] == 4
    assert pipeline["window"]["p50"] == (1 << (5_200).bit_length()) - 1
    source, keyed = doc["stages"]
    assert source["window"]["p99"] == 4095 and keyed["window"]["p99"] == 2047
    assert source["steps"] == ["decoder decode"] and keyed["keyed"]


def test_without_metrics_the_engine_builds_plain_runners_and_no_histograms():
    engine, _ = _engine(metrics=False)
    assert {type(r) for r in engine.segments.values()} == {SegmentRunner}
    engine.source_runner(0).run([b"ab"])
    assert all(s.latency is None and s.end_to_end is None for s in engine.statistics().segments)
    timed, _ = _engine(metrics=True)
    assert {type(r) for r in timed.segments.values()} == {TimedSegmentRunner}


def _worker_stats(engine):
    """``WorkerStatistics`` of an engine that runs without a worker (no sources or sinks)."""
    return WorkerStatistics("w", engine.statistics(), (), (), GateStatistics(True, (), 0, 0))
