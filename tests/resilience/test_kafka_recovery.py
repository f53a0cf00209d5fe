"""The worker's built-in Kafka source with checkpoints: offsets are checkpointed, a SIGKILLed
worker restarts from them, and the keyed state ends exact."""

import signal
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from endpoint import Endpoint
from recovery_helpers import assert_recovered, counting_worker, kill_all, settle_and_stop


def produce(bootstrap, topic, values, pause):
    producer = Producer({"bootstrap.servers": bootstrap, "batch.num.messages": 1, "linger.ms": 0})
    for n, value in enumerate(values):
        producer.produce(topic, value.encode())
        if n % 100 == 99:
            producer.poll(0)
            time.sleep(pause)
    assert producer.flush(30) == 0


@pytest.mark.slow
def test_builtin_kafka_source_recovers_exactly_from_checkpointed_offsets(tmp_path, kafka_bootstrap):
    topic = f"counts-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        future.result(10)
    total, keys = 6000, 30
    values = [f"k{i % keys}" for i in range(total)]
    sink = Endpoint()
    cmd, env = counting_worker("kafka_count_app", sink, tmp_path / "res", 100_000_000,
                               "--kafka_source_topic", topic,
                               "--kafka_source_brokers", kafka_bootstrap)  # fmt: skip
    logs = []
    procs = []

    def start():
        logs.append((tmp_path / f"w{len(logs)}.log").open("w"))
        procs.append(subprocess.Popen(cmd, env=env, stderr=logs[-1]))
        return procs[-1]

    producer = threading.Thread(target=produce, args=(kafka_bootstrap, topic, values, 0.02))
    producer.start()
    try:
        worker = start()
        checkpoints = tmp_path / "res" / "checkpoints"
        for _ in range(3):
            before = len(sink.lines())
            seen = set(checkpoints.glob("*.wck")) if checkpoints.exists() else set()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (
                len(sink.lines()) < before + 700 or not set(checkpoints.glob("*.wck")) - seen
            ):
                time.sleep(0.05)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = start()
        producer.join(60)
        expected = {f"k{i}": total // keys for i in range(keys)}
        settle_and_stop(worker, sink, expected, 60, tmp_path / f"w{len(logs) - 1}.log")
    finally:
        kill_all(procs, logs)
        sink.close()
    assert_recovered(tmp_path, sink, expected, 3)
