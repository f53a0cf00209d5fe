"""The worker's built-in Kafka source and sink (DefaultKafka*CLIParser and the --kafka_* flags),
in-process and through ``machida``, against the session's broker."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import kafka_builtin_app
import pytest
from kafka_helpers import Kafka, record

from diagnostics import error_lines
from wallaroo.loader import load_application
from wallaroo.worker.runtime import Worker, WorkerOptions

N = 10_000
GROUP = "wallaroo-Kafka builtin-kafka_source"  # wallaroo-<application>-<source>


def flags(kafka: Kafka, source_topic: str, sink_topic: str) -> list[str]:
    return ["--kafka_source_topic", source_topic, "--kafka_source_brokers", kafka.bootstrap,
            "--kafka_sink_topic", sink_topic, "--kafka_sink_brokers", kafka.bootstrap]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_machida_runs_the_builtin_kafka_source_and_sink(procs, kafka: Kafka):
    source_topic, sink_topic = kafka.topic("in"), kafka.topic("out")
    values = [record(i) for i in range(N)]
    kafka.produce(source_topic, values)
    worker = procs.machida("kafka_builtin_app", *flags(kafka, source_topic, sink_topic))
    got = kafka.read(sink_topic, N)
    assert len(got) == N, Counter(got).most_common(3)
    assert sorted(got) == sorted(v.upper() for v in values)
    assert worker.stop(signal.SIGTERM) == 0, worker.output
    assert sum(kafka.committed(GROUP, source_topic).values()) == N  # all committed at exit
    assert "ERROR" not in worker.output
    # A new worker resumes after the committed offsets: nothing is read twice.
    more = [record(i) for i in range(N, N + 100)]
    kafka.produce(source_topic, more)
    again = procs.machida("kafka_builtin_app", *flags(kafka, source_topic, sink_topic))
    got = kafka.read(sink_topic, N + 100)
    assert sorted(got) == sorted(v.upper() for v in values + more)
    assert again.stop(signal.SIGINT) == 0, again.output


@pytest.mark.slow
def test_machida_names_a_missing_kafka_flag_in_one_line(procs, kafka):
    worker = procs.machida("kafka_builtin_app", "--kafka_source_topic", "t")
    assert worker.popen.wait(20) == 2
    worker.kill()
    assert error_lines(worker.output) == [
        "machida: error: --kafka_sink_topic is required by the Kafka sink "
        "(e.g. --kafka_sink_topic my-topic)"
    ]


@pytest.mark.slow
def test_machida_without_confluent_kafka_names_the_extra_in_one_line(procs, kafka):
    argv = ["machida", "--application-module", "kafka_builtin_app", *flags(kafka, "a", "b")]
    code = (
        "import sys\n"
        "sys.modules['confluent_kafka'] = None\n"
        f"sys.argv = {argv!r}\n"
        "from wallaroo.cli.machida import main\n"
        "sys.exit(main())\n"
    )
    worker = procs.python("machida", "-c", code)
    assert worker.popen.wait(20) == 2
    worker.kill()
    (line,) = error_lines(worker.output)
    assert line.startswith("machida: error: Kafka sink 'kafka_sink' needs confluent-kafka")
    assert line.endswith("pip install 'wallaroo-py[kafka]'")


def test_in_process_bad_records_are_dead_letters_and_the_rest_arrives(kafka, tmp_path: Path):
    """The worker in this process: a record whose computation raises and one whose encoder
    breaks the (value, key, partition) contract become dead letters; the others arrive."""
    source_topic, sink_topic = kafka.topic("in"), kafka.topic("out")
    values = [record(i) for i in range(500)] + ["poison", "not a tuple"]
    kafka.produce(source_topic, values)
    args = flags(kafka, source_topic, sink_topic)
    loaded = load_application(kafka_builtin_app, ["prog", *args])
    worker = Worker(loaded, WorkerOptions(resilience_dir=str(tmp_path)), app_args=args)

    async def scenario() -> list[str]:
        task = asyncio.create_task(worker.run())
        got = await asyncio.to_thread(kafka.read, sink_topic, 500, 30.0, 0.5)
        while worker.engine.dead_letters.statistics().total < 2:
            await asyncio.sleep(0.05)
        worker.stop()
        await task
        return got

    got = asyncio.run(scenario())
    assert sorted(got) == sorted(v.upper() for v in values[:500])
    stages = sorted(d.stage for d in worker.engine.dead_letters.records)
    assert stages == ["Kafka sink kafka_sink", "shout"], stages
    stats = worker.statistics()
    assert [(s.kind, s.messages) for s in stats.sources] == [("Kafka source", 502)]
    assert stats.sinks[0].buffered_bytes == 0
    assert sum(kafka.committed(GROUP, source_topic).values()) == 502
