"""``/metrics`` of a live worker parses with Prometheus' own parser and counts what was sent."""

import pytest
from metrics_helpers import numbers
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

GOOD, BAD = 3000, 7


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(family, name=None, **labels):
    found = [
        s.value
        for s in family.samples
        if (name is None or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (family.name, labels, family.samples)
    return found[0]


def test_counters_match_the_messages_sent(worker):
    worker.send(numbers(0, GOOD // 2) + [b"x"] * BAD + numbers(GOOD // 2, GOOD - GOOD // 2))
    worker.receiver.wait_lines(GOOD)
    raw = worker.get("/metrics").decode()
    fams = families(raw)

    assert fams["wallaroo_source_messages"].type == "counter"
    assert value(fams["wallaroo_source_messages"], source="numbers") == GOOD + BAD
    stage_in = fams["wallaroo_stage_messages_in"]
    (source_stage,) = [
        s.labels["stage"] for s in stage_in.samples if "numbers" in s.labels["stage"]
    ]
    (keyed_stage,) = [s.labels["stage"] for s in stage_in.samples if "keyed" in s.labels["stage"]]
    assert value(stage_in, stage=source_stage) == GOOD + BAD
    assert value(stage_in, stage=keyed_stage) == GOOD
    assert value(fams["wallaroo_stage_dead_letters"], stage=source_stage) == BAD
    assert value(fams["wallaroo_dead_letters"], stage="parse") == BAD
    assert value(fams["wallaroo_sink_messages"]) == GOOD
    assert value(fams["wallaroo_sink_connected"]) == 1
    assert value(fams["wallaroo_state_keys"], state="count") == 2
    assert value(fams["wallaroo_info"], worker="worker", application="Parity Count") == 1

    latency = fams["wallaroo_stage_latency_seconds"]
    assert latency.type == "histogram"
    count = value(latency, "wallaroo_stage_latency_seconds_count", stage=source_stage)
    assert count == GOOD + BAD
    buckets = [
        (float(s.labels["le"]), s.value)
        for s in latency.samples
        if s.name.endswith("_bucket") and s.labels["stage"] == source_stage
    ]
    assert buckets == sorted(buckets), "buckets must be cumulative and ordered"
    assert buckets[-1] == (float("inf"), GOOD + BAD)
    e2e = fams["wallaroo_pipeline_latency_seconds"]
    assert value(e2e, "wallaroo_pipeline_latency_seconds_count", pipeline="Parity") == GOOD + BAD
    assert value(e2e, "wallaroo_pipeline_latency_seconds_sum", pipeline="Parity") > 0


def test_label_values_are_escaped_and_buckets_are_exact_bin_bounds():
    import wallaroo
    from wallaroo.engine.local import LocalEngine
    from wallaroo.loader import load_application
    from wallaroo.metrics.collector import MetricsCollector
    from wallaroo.metrics.prometheus import LATENCY_BUCKETS, exposition
    from wallaroo.metrics.topology import Topology
    from wallaroo.plan.compiler import compile_application
    from wallaroo.testing import ListSink, MockClock
    from wallaroo.worker.flow import GateStatistics
    from wallaroo.worker.runtime import WorkerStatistics

    clock = MockClock()
    name = 'say "hi"\\ \nthere'

    @wallaroo.computation(name=name)
    def step(x):
        clock.advance(1024)
        return x

    dec = wallaroo.decoder(header_length=4, length_fmt=">I")(lambda b: b)
    app = wallaroo.build_application(
        "A",
        wallaroo.source("P", wallaroo.TCPSourceConfig("s", "127.0.0.1", 0, dec))
        .to(step)
        .to_sink(wallaroo.TCPSinkConfig("127.0.0.1", 0, wallaroo.encoder(lambda b: b))),
    )
    plan = compile_application(load_application(app).application)
    engine = LocalEngine(plan, [ListSink()], clock=clock, metrics=True)
    engine.source_runner(0).run([b"a"])
    gate = GateStatistics(True, (), 0, 0)
    stats = lambda: WorkerStatistics("w", engine.statistics(), (), (), gate)  # noqa: E731
    text = exposition(Topology.of(plan), MetricsCollector(stats, clock).read())
    fams = families(text)
    latency = fams["wallaroo_stage_latency_seconds"]
    stages = {s.labels["stage"] for s in latency.samples}
    assert stages == {f"P/s/decoder <lambda>+{name}"}
    buckets = [s for s in latency.samples if s.name.endswith("_bucket")]
    assert len(buckets) == LATENCY_BUCKETS + 1
    # 1,024 ns lands in bin 11 (1024..2047): first counted by le = 2047 ns
    by_le = {s.labels["le"]: s.value for s in buckets}
    assert by_le["1.023e-06"] == 0 and by_le["2.047e-06"] == 1
