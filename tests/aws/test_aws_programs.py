"""The Kinesis and S3 connector programs as programs: the four ways to run them, their first log
line, their exit codes (signals, bad parameters, a missing boto3)."""

from __future__ import annotations

import signal

import pytest
from aws_helpers import WAYS, StreamReader, records, shouted, start
from connector_helpers import REPO, assert_a_missing_library_is_one_line

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

PROGRAMS = ["kinesis_source", "kinesis_sink", "s3_bucket_sink"]


@pytest.mark.parametrize("way", WAYS)
def test_each_way_of_running_the_programs_carries_data_and_stops_cleanly(procs, aws, way):
    inbound, outbound, bucket = aws.new_stream(1), aws.new_stream(1), aws.unique("bucket")
    common = {"region": "us-east-1", "endpoint_url": aws.endpoint}
    kinesis_sink = start(procs, "kinesis_sink", "shouted", way, stream=outbound, **common)
    s3_sink = start(procs, "s3_bucket_sink", "objects", way, bucket=bucket, **common)
    source = start(procs, "kinesis_source", "records", way, stream=inbound, **common)
    env = procs.env

    first = source.wait_for("kinesis_source for connector 'records'")
    assert source.lines[0] == first
    assert f"Kinesis stream '{inbound}' (all shards) at {aws.endpoint} (region us-east-1)" in first
    assert f"positions in {procs.cwd}/records-{inbound}.kinesis-positions.json" in first
    assert first.endswith(f"sending to the worker at 127.0.0.1:{env['RECORDS_PORT']}")
    source.wait_for("waiting for the worker")
    first = kinesis_sink.wait_for("kinesis_sink for connector 'shouted'")
    assert kinesis_sink.lines[0] == first
    assert f"listening for the worker on 127.0.0.1:{env['SHOUTED_PORT']}, writing to " in first
    assert first.endswith(f"Kinesis stream '{outbound}' at {aws.endpoint} (region us-east-1)")
    first = s3_sink.wait_for("s3_bucket_sink for connector 'objects'")
    assert s3_sink.lines[0] == first
    assert f"listening for the worker on 127.0.0.1:{env['OBJECTS_PORT']}, writing to " in first
    assert first.endswith(f"S3 bucket '{bucket}' at {aws.endpoint} (region us-east-1)")

    worker = procs.machida("aws_app")
    aws.put(inbound, records(range(20)))
    out = StreamReader(aws, outbound)
    out.wait_for(20, 20, source, worker, kinesis_sink)
    assert out.pairs() == shouted(range(20))
    sig = signal.SIGINT if WAYS.index(way) % 2 else signal.SIGTERM
    for proc in (source, kinesis_sink, s3_sink):
        assert proc.stop(sig) == 0, proc.output
        assert f"stopping ({sig.name})" in proc.output
        assert " ERROR " not in proc.output and "Traceback" not in proc.output, proc.output
    assert worker.stop() == 0


@pytest.mark.parametrize(
    ("name", "connector", "extra"),
    [
        ("kinesis_source", "records", "kinesis"),
        ("kinesis_sink", "shouted", "kinesis"),
        ("s3_bucket_sink", "objects", "s3"),
    ],
)
def test_a_missing_boto3_gives_one_line_naming_the_extra(procs, name, connector, extra):
    args = ("--application-module", "aws_app", "--connector", connector)
    line = assert_a_missing_library_is_one_line(procs, "boto3", extra, name, *args)
    assert line.endswith(
        f"ERROR {name}: {name} needs boto3, which is not installed: "
        f"pip install 'wallaroo-py[{extra}]'"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "the following arguments are required: --records-stream"),
        ({"stream": "S", "poll_interval": "0"}, "--records-poll_interval must be a positive"),
        ({"stream": "S", "shard": "shardId-9"}, "has no shard 'shardId-9' (its shards: shardId-"),
    ],
    ids=["no stream", "bad poll_interval", "unknown shard"],
)
def test_a_bad_kinesis_source_parameter_exits_2_saying_why(procs, aws, params, message):
    if params.get("stream") == "S":
        params["stream"] = aws.new_stream(1)
    proc = start(procs, "kinesis_source", "records", region="us-east-1",
                 endpoint_url=aws.endpoint, **params)  # fmt: skip
    assert proc.popen.wait(20) == 2, proc.output
    proc.kill()
    assert message in proc.output


def test_the_repository_executables_are_executable_scripts():
    for name in PROGRAMS:
        path = REPO / "connectors" / name
        assert path.stat().st_mode & 0o111, path
        assert path.read_text().startswith("#!/usr/bin/env python3\n")
