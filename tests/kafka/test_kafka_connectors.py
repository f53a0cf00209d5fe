"""End to end: Kafka topic -> kafka_source -> worker -> kafka_sink -> Kafka topic, as real
processes against the session's broker."""

from __future__ import annotations

import base64
import json
import pickle
import signal
from collections import Counter

import pytest
from connector_helpers import assert_a_missing_library_is_one_line, write_module
from kafka_helpers import Kafka, record, start_sink, start_source

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

N = 10_000


def expected(values: list[str]) -> list[str]:
    return sorted(v.upper() for v in values)


def test_every_record_arrives_transformed_once_and_the_group_commits_it(procs, kafka: Kafka):
    source_topic, sink_topic = kafka.topic("in"), kafka.topic("out")
    group = kafka.group("feed")
    values = [record(i) for i in range(N)]
    kafka.produce(source_topic, values)
    sink = start_sink(procs, "wallaroo connector", kafka.bootstrap, sink_topic)
    worker = procs.machida("kafka_app")
    source = start_source(procs, "executable", kafka.bootstrap, source_topic, group)
    first = source.wait_for("kafka_source")
    assert source.lines[0] == first
    assert f"Kafka at {kafka.bootstrap}" in first
    assert f"worker at 127.0.0.1:{procs.env['FEED_PORT']}" in first
    first = sink.wait_for("kafka_sink")
    assert sink.lines[0] == first
    assert first.endswith(f"producing to topic '{sink_topic}' at Kafka {kafka.bootstrap}")
    assert f"listening for the worker on 127.0.0.1:{procs.env['RESULTS_PORT']}" in first
    got = kafka.read(sink_topic, N)
    assert len(got) == N, f"{len(got)} records; duplicates {Counter(got).most_common(3)}"
    assert sorted(got) == expected(values)
    assert source.stop(signal.SIGTERM) == 0, source.output
    committed = kafka.committed(group, source_topic)
    assert sum(committed.values()) == N, committed  # offsets after the last record, per partition
    assert sink.stop(signal.SIGINT) == 0, sink.output
    assert "ERROR" not in source.output + sink.output + worker.output


def test_a_killed_source_restarts_where_the_worker_is_and_loses_nothing(procs, kafka: Kafka):
    source_topic, sink_topic = kafka.topic("in"), kafka.topic("out")
    group = kafka.group("feed")
    values = [record(i) for i in range(N)]
    producer = kafka.produce_in_background(source_topic, values, seconds=4.0)
    start_sink(procs, "copied file", kafka.bootstrap, sink_topic)
    procs.machida("kafka_app")
    source = start_source(procs, "python -m", kafka.bootstrap, source_topic, group)
    source.wait_for("reading from offset")
    partial = kafka.read(sink_topic, 1500, timeout=30, grace=0)
    assert 1500 <= len(partial) < N, len(partial)
    source.popen.send_signal(signal.SIGKILL)  # midway, with records in flight
    source.popen.wait(10)
    again = start_source(procs, "python -m", kafka.bootstrap, source_topic, group)
    producer.join(30)
    got = kafka.read(sink_topic, N)
    counts = Counter(got)
    assert set(counts) == set(expected(values)), again.output
    repeated = {v: c for v, c in counts.items() if c > 1}
    # at-least-once: a repeat can only be a re-delivery of a real record, never a new value
    assert set(repeated) <= set(expected(values))
    assert len(got) - N == sum(c - 1 for c in repeated.values())
    assert "the worker has " in again.output  # it resumed from the worker's position
    assert again.stop(signal.SIGTERM) == 0, again.output


@pytest.mark.parametrize("name", ["kafka_source", "kafka_sink"])
def test_without_confluent_kafka_one_line_names_the_extra(procs, name):
    args = ("--application-module", "kafka_app", "--connector", "feed")
    line = assert_a_missing_library_is_one_line(procs, "confluent_kafka", "kafka", name, *args)
    assert "confluent-kafka" in line
    assert line.endswith("pip install 'wallaroo-py[kafka]'")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_source_cleanly_while_it_waits_for_the_worker(procs, kafka, sig):
    topic = kafka.topic("in")
    proc = start_source(procs, "executable", kafka.bootstrap, topic, kafka.group("feed"))
    proc.wait_for("waiting for the worker")
    assert proc.stop(sig) == 0, proc.output
    assert f"stopping ({signal.Signals(sig).name})" in proc.output


def test_the_repository_executables_are_executable_scripts():
    from connector_helpers import REPO

    for name in ("kafka_source", "kafka_sink"):
        path = REPO / "connectors" / name
        assert path.stat().st_mode & 0o111, path
        assert path.read_text().startswith("#!/usr/bin/env python3\n")


def test_the_source_reconnects_to_a_restarted_worker_and_loses_nothing(procs, kafka: Kafka):
    source_topic, sink_topic = kafka.topic("in"), kafka.topic("out")
    values = [record(i) for i in range(N)]
    producer = kafka.produce_in_background(source_topic, values, seconds=4.0)
    start_sink(procs, "python -m", kafka.bootstrap, sink_topic)
    worker = procs.machida("kafka_app")
    source = start_source(
        procs, "wallaroo connector", kafka.bootstrap, source_topic, kafka.group("feed")
    )
    assert len(kafka.read(sink_topic, 1500, timeout=30, grace=0)) >= 1500
    worker.popen.send_signal(signal.SIGKILL)  # the worker dies with messages in flight
    worker.popen.wait(10)
    source.wait_for("reconnecting to the worker")
    procs.machida("kafka_app")
    producer.join(30)
    got = kafka.read(sink_topic, N)
    # A new worker knows nothing: the source resumes after what the old one acknowledged, so
    # records it processed but had not acknowledged yet arrive twice (at-least-once).
    assert set(got) == set(expected(values)), source.output
    assert source.stop(signal.SIGTERM) == 0, source.output


def test_two_sources_in_one_group_share_the_partitions_and_take_over(procs, kafka: Kafka):
    source_topic, sink_topic = kafka.topic("in"), kafka.topic("out")
    group = kafka.group("feed")
    values = [record(i) for i in range(N)]
    producer = kafka.produce_in_background(source_topic, values, seconds=5.0)
    start_sink(procs, "executable", kafka.bootstrap, sink_topic)
    procs.machida("kafka_app")
    first = start_source(procs, "executable", kafka.bootstrap, source_topic, group)
    first.wait_for("reading from offset")
    second = start_source(procs, "python -m", kafka.bootstrap, source_topic, group)
    line = second.wait_for("assigned")  # after a rebalance, two partitions each
    assert line.count(f"{source_topic}/") == 2, line
    assert len(kafka.read(sink_topic, 3000, timeout=30, grace=0)) >= 3000
    assert first.stop(signal.SIGTERM) == 0, first.output  # its streams end; the other takes over
    line = second.wait_for("assigned", start=second.lines.index(line) + 1)
    assert line.count(f"{source_topic}/") == 4, line
    producer.join(30)
    got = kafka.read(sink_topic, N)
    assert sorted(set(got)) == expected(values), second.output
    repeated = Counter(got) - Counter(set(got))
    assert not repeated, (repeated.most_common(3), first.output, second.output)
    assert second.stop(signal.SIGINT) == 0, second.output


FEED_WITH_A_BIG_RECORD = """
    import wallaroo.experimental

    connector = wallaroo.experimental.SourceConnector()
    connector.connect()
    for value in ["rec-00001", "x" * 1_200_000 + "-big", "rec-00002"]:
        connector.write(value)
    connector.close()
"""


def test_a_record_kafka_refuses_is_a_dead_letter_and_the_others_arrive(procs, kafka: Kafka):
    sink_topic = kafka.topic("out")
    sink = start_sink(procs, "python -m", kafka.bootstrap, sink_topic)
    procs.machida("kafka_app")
    feeder = write_module(procs.cwd, "feeder", FEED_WITH_A_BIG_RECORD)
    source = procs.python("feeder", feeder, "--application-module", "kafka_app",
                          "--connector", "feed")  # fmt: skip
    assert source.popen.wait(30) == 0, source.output
    assert sorted(kafka.read(sink_topic, 2)) == ["REC-00001", "REC-00002"]
    dead = procs.cwd / "wallaroo-deadletter" / "results-sink.jsonl"
    sink.wait_for("dead letter")
    (letter,) = [json.loads(line) for line in dead.read_text().splitlines()]
    assert letter["stage"] == "kafka_sink produce"
    assert "MSG_SIZE_TOO_LARGE" in letter["message"] or "too large" in letter["message"], letter
    key, value, partition = pickle.loads(base64.b64decode(letter["payload"]))
    assert (key, len(value), partition) == (b"BIG", 1_200_004, -1)  # shouted
    assert sink.stop(signal.SIGINT) == 0, sink.output
