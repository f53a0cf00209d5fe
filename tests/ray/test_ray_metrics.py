"""``--metrics-http`` on the Ray backend: the driver serves the merged statistics of its actors
as the embedded worker's ``/metrics`` (latency histograms included) and ``/api/stats``."""

from __future__ import annotations

import json
import sys
import urllib.request

import pytest
from fault_driver import wait_until
from prometheus_client.parser import text_string_to_metric_families
from ray_helpers import EXAMPLES, LineCollector, free_port, machida_ray, send_framed, stop_worker

from wallaroo.testing import run

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(180)]

sys.path.insert(0, str(EXAMPLES / "word_count"))
from test_word_count import make_lines  # noqa: E402 - found through the examples' folder


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        return bytes(reply.read())


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def test_metrics_http_serves_the_actors_counters_and_latency_histograms(ray_address, tmp_path):
    lines = [line.encode() for line in make_lines(800, seed=7)]
    source_port, metrics_port = free_port(), free_port()
    collector = LineCollector()
    args = ["--in", f"Split and Count@127.0.0.1:{source_port}",
            "--out", f"127.0.0.1:{collector.port}"]  # fmt: skip
    (expected,) = run("word_count", args=args, inputs={"Split and Count": lines}).outputs.values()
    log = tmp_path / "worker.log"
    proc = machida_ray("word_count", [*args, "--metrics-http", f"127.0.0.1:{metrics_port}"], 2,
                       ray_address, tmp_path, log)  # fmt: skip
    try:
        send_framed(source_port, lines)
        wait_until(lambda: len(collector.lines()) >= len(expected), 90, "every count")
        text = ""

        def counted() -> bool:
            nonlocal text
            text = _get(metrics_port, "/metrics").decode()
            sunk = sum(v for _, v in _samples(text, "wallaroo_sink_messages_total"))
            return sunk >= len(expected)

        wait_until(counted, 30, "the sink's count in /metrics")
        stats: dict = {}

        def sampled() -> bool:  # /api/stats answers from the samples kept once per second
            stats.update(json.loads(_get(metrics_port, "/api/stats")))
            return bool(stats["pipelines"][0]["messages_in"] == len(lines))

        wait_until(sampled, 30, "the source's count in /api/stats")
    finally:
        stop_worker(proc, log)
        collector.close()

    received = _samples(text, "wallaroo_source_messages_total")
    assert [v for _, v in received] == [len(lines)]
    stage_in = _samples(text, "wallaroo_stage_messages_in_total")
    assert len(stage_in) >= 2, "the source actor's stage and the workers' keyed stage"
    source_stage = max(stage_in, key=lambda s: s[1] == len(lines))[0]["stage"]
    # the latency histograms of the source actor's segment and of the workers' segments
    counts = {
        labels["stage"]: v for labels, v in _samples(text, "wallaroo_stage_latency_seconds_count")
    }
    assert counts[source_stage] == len(lines)
    assert set(counts) == {labels["stage"] for labels, _ in stage_in}
    assert all(v > 0 for v in counts.values()), counts
    buckets = [
        (float(labels["le"]), v)
        for labels, v in _samples(text, "wallaroo_stage_latency_seconds_bucket")
        if labels["stage"] == source_stage
    ]
    assert buckets == sorted(buckets) and buckets[-1] == (float("inf"), len(lines))
    (e2e,) = _samples(text, "wallaroo_pipeline_latency_seconds_count")
    assert e2e[1] == len(lines)
    words = {line.split(b" => ")[0] for line in expected}
    assert sum(v for _, v in _samples(text, "wallaroo_state_keys")) == len(words)
    assert stats["pipelines"][0]["latency"]["count"] == len(lines)
    assert "metrics on http://127.0.0.1:" in log.read_text()
