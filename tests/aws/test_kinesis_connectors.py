"""kinesis_source -> worker -> kinesis_sink, through real processes and moto's Kinesis."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest
from aws_helpers import Aws, Proxy, StreamReader, records, shouted, start
from connector_helpers import Proc, Procs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def source(procs: Procs, aws: Aws, stream: str, endpoint: str | None = None, **params: str) -> Proc:
    return start(procs, "kinesis_source", "records", stream=stream, region="us-east-1",
                 endpoint_url=endpoint or aws.endpoint, poll_interval="0.05", **params)  # fmt: skip


def sink(procs: Procs, aws: Aws, stream: str, endpoint: str | None = None) -> Proc:
    return start(procs, "kinesis_sink", "shouted", stream=stream, region="us-east-1",
                 endpoint_url=endpoint or aws.endpoint)  # fmt: skip


def clean(*procs: Proc) -> None:
    """Every process logged no error and stops on SIGTERM with exit code 0."""
    for proc in procs:
        assert proc.stop(signal.SIGTERM) == 0, proc.output
        assert " ERROR " not in proc.output and "Traceback" not in proc.output, proc.output


def acked(state_file: Path) -> dict[str, tuple[int, str]]:
    """The last acknowledged (message id, sequence number) of each shard in a state file."""
    shards = json.loads(state_file.read_text())["shards"]
    return {shard: tuple(entry["acked"][-1]) for shard, entry in shards.items() if entry["acked"]}


def test_ten_thousand_records_arrive_transformed_once_each(procs, aws):
    inbound, outbound = aws.new_stream(2), aws.new_stream(2)
    aws.put(inbound, records(range(10_000)))
    out = StreamReader(aws, outbound)
    writer = sink(procs, aws, outbound)
    worker = procs.machida("aws_app")
    reader = source(procs, aws, inbound)
    out.wait_for(10_000, 60, reader, worker, writer)
    out.settle()
    assert out.pairs() == shouted(range(10_000))  # every record, transformed, none twice
    assert len(reader.lines) > 2 and "reading from the trim horizon" in reader.output
    assert reader.output.count("the worker has nothing; reading from the trim horizon") == 2
    clean(reader, writer, worker)


def test_one_source_per_shard_can_feed_one_connector(procs, aws):
    inbound, outbound = aws.new_stream(2), aws.new_stream(1)
    first, second = aws.shard_ids(inbound)
    aws.put(inbound, records(range(400)))
    out = StreamReader(aws, outbound)
    writer = sink(procs, aws, outbound)
    worker = procs.machida("aws_app")
    readers = [
        source(procs, aws, inbound, shard=first),
        source(procs, aws, inbound, shard=second, instance="b"),
    ]
    out.wait_for(400, 30, *readers, worker, writer)
    out.settle(0.5)
    assert out.pairs() == shouted(range(400))
    for reader, shard in zip(readers, (first, second), strict=True):
        assert f"Kinesis stream '{inbound}' (shard {shard}) at " in reader.lines[0]
        assert reader.output.count("the worker has nothing") == 1
    assert (procs.cwd / f"records-{inbound}-{first}.kinesis-positions.json").exists()
    assert (procs.cwd / f"records-b-{inbound}-{second}.kinesis-positions.json").exists()
    clean(*readers, writer, worker)


def test_a_source_killed_midway_and_restarted_loses_and_repeats_nothing(procs, aws):
    """The worker keeps running, so its NOTIFY_ACK says exactly which records it has: the new
    source resumes after the state file's position and skips up to the worker's."""
    inbound, outbound = aws.new_stream(2), aws.new_stream(2)
    out = StreamReader(aws, outbound)

    def produce() -> None:  # 10,000 records over about 3 s
        for start_at in range(0, 10_000, 250):
            aws.put(inbound, records(range(start_at, start_at + 250)))
            time.sleep(0.03)

    producer = threading.Thread(target=produce)
    writer = sink(procs, aws, outbound)
    worker = procs.machida("aws_app")
    reader = source(procs, aws, inbound)
    producer.start()
    try:
        out.wait_for(2_000, 30, reader, worker, writer)
        reader.kill()  # SIGKILL
        assert out.poll() < 10_000  # midway
        state_file = procs.cwd / f"records-{inbound}.kinesis-positions.json"
        assert len(acked(state_file)) == 2  # a whole file (written atomically), both shards
        again = source(procs, aws, inbound)
        for _ in range(2):
            line = again.wait_for("the worker has ")
            assert "the worker has nothing" not in line, line
            assert "reading after sequence number" in line, line
    finally:
        producer.join()
    out.wait_for(10_000, 60, again, worker, writer)
    out.settle()
    assert out.pairs() == shouted(range(10_000))
    clean(again, writer, worker)


def test_a_new_worker_gets_what_follows_the_acknowledged_positions(procs, aws):
    """A worker restarted without resilience knows nothing of the stream: the source resumes
    after the positions its state file says were acknowledged, so nothing is sent twice."""
    inbound, outbound = aws.new_stream(2), aws.new_stream(1)
    state_file = procs.cwd / "positions.json"
    out = StreamReader(aws, outbound)
    aws.put(inbound, records(range(300)))
    writer = sink(procs, aws, outbound)
    worker = procs.machida("aws_app")
    reader = source(procs, aws, inbound, state_file=str(state_file))
    out.wait_for(300, 30, reader, worker, writer)
    last = {shard: (len(rs) - 1, rs[-1]["SequenceNumber"]) for shard, rs in read_all(aws, inbound)}
    deadline = time.monotonic() + 5
    while (state_file.exists() and acked(state_file)) != last and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker acknowledges at least every 0.2 s
    assert acked(state_file) == last

    assert worker.stop(signal.SIGTERM) == 0
    lost = reader.wait_for("reconnecting to the worker")
    worker = procs.machida("aws_app")
    for _ in range(2):
        line = reader.wait_for("the worker has nothing", start=reader.lines.index(lost))
        assert "reading after sequence number" in line
    aws.put(inbound, records(range(300, 500)))
    out.wait_for(500, 30, reader, worker, writer)
    out.settle()
    assert out.pairs() == shouted(range(500))

    assert reader.stop(signal.SIGTERM) == 0  # waits for the last acknowledgements
    assert "stopping (SIGTERM)" in reader.output
    aws.put(inbound, records(range(500, 600)))
    reader = source(procs, aws, inbound, state_file=str(state_file))
    out.wait_for(600, 30, reader, worker, writer)
    out.settle()
    assert out.pairs() == shouted(range(600))
    clean(reader, writer, worker)


def read_all(aws: Aws, stream: str) -> list[tuple[str, list[dict]]]:
    reader = StreamReader(aws, stream)
    reader.poll()
    return list(reader.records.items())


def test_kinesis_going_away_is_logged_retried_and_loses_nothing(procs, aws):
    inbound, outbound = aws.new_stream(1), aws.new_stream(1)
    moto_port = int(aws.endpoint.rsplit(":", 1)[1])
    to_source, to_sink = Proxy(moto_port), Proxy(moto_port)
    try:
        out = StreamReader(aws, outbound)
        aws.put(inbound, records(range(100)))
        writer = sink(procs, aws, outbound, endpoint=to_sink.url)
        worker = procs.machida("aws_app")
        reader = source(procs, aws, inbound, endpoint=to_source.url)
        out.wait_for(100, 30, reader, worker, writer)

        to_sink.down()  # the sink cannot write what the source still reads
        aws.put(inbound, records(range(100, 200)))
        writer.wait_for("putting records into Kinesis stream")
        to_source.down()  # and now the source cannot read either
        reader.wait_for("of Kinesis stream")
        aws.put(inbound, records(range(200, 300)))
        time.sleep(0.5)
        to_source.up()
        to_sink.up()
        reader.wait_for("works again")
        writer.wait_for("works again")
        out.wait_for(300, 30, reader, worker, writer)
        out.settle()
        assert out.pairs() == shouted(range(300))
        assert "retrying with back-off" in reader.output and "retrying" in writer.output
        for proc in (reader, writer, worker):
            assert proc.stop(signal.SIGTERM) == 0, proc.output
    finally:
        to_source.close()
        to_sink.close()
