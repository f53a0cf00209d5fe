"""The worker's built-in Kafka source and sink (the ``--kafka_*`` flags) on two Ray workers,
against the session's broker: every record out once, offsets committed at exit, and a new run
resumes after them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from fault_driver import BIN
from ray_helpers import stop_worker

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "connectors"))  # what kafka_helpers imports
sys.path.insert(0, str(HERE.parent / "kafka"))

from kafka_helpers import Kafka, record  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(180)]

N = 5_000
GROUP = "wallaroo-Kafka builtin-kafka_source"  # wallaroo-<application>-<source>


def start(kafka: Kafka, topics: tuple[str, str], ray_address: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "kafka"))
    brokers = kafka.bootstrap
    command = [str(BIN / "machida"), "--application-module", "kafka_builtin_app",
               "--backend", "ray", "--workers", "2", "--ray-address", ray_address,
               "--kafka_source_topic", topics[0], "--kafka_source_brokers", brokers,
               "--kafka_sink_topic", topics[1], "--kafka_sink_brokers", brokers]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def test_builtin_kafka_source_and_sink_on_two_workers(ray_address, kafka_bootstrap, tmp_path):
    kafka = Kafka(kafka_bootstrap)
    topics = (kafka.topic("in"), kafka.topic("out"))
    values = [record(i) for i in range(N)]
    kafka.produce(topics[0], values)
    log = tmp_path / "worker.log"
    proc = start(kafka, topics, ray_address, log)
    try:
        got = kafka.read(topics[1], N, timeout=120)
    finally:
        stop_worker(proc, log)
    assert len(got) == N, Counter(got).most_common(3)
    assert sorted(got) == sorted(v.upper() for v in values)
    assert sum(kafka.committed(GROUP, topics[0]).values()) == N  # all committed at exit
    assert "2 worker" in log.read_text()
    # A new run resumes after the committed offsets: nothing is read twice.
    more = [record(i) for i in range(N, N + 100)]
    kafka.produce(topics[0], more)
    proc = start(kafka, topics, ray_address, log)
    try:
        got = kafka.read(topics[1], N + 100, timeout=120)
    finally:
        stop_worker(proc, log)
    assert sorted(got) == sorted(v.upper() for v in values + more)
