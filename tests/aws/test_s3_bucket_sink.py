"""kinesis_source -> worker -> s3_bucket_sink, through real processes and moto's S3."""

from __future__ import annotations

import signal
import time

import pytest
from aws_helpers import start

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def test_each_output_becomes_an_object_that_is_listed_and_read_back(procs, aws):
    stream, bucket = aws.new_stream(2), aws.unique("bucket")  # the sink creates the bucket
    aws.put(stream, [(str(i), f"{i}:note {i}, café") for i in range(250)])
    writer = start(procs, "s3_bucket_sink", "objects", bucket=bucket, region="us-east-1",
                   endpoint_url=aws.endpoint)  # fmt: skip
    writer.wait_for(f"created S3 bucket '{bucket}'")
    worker = procs.machida("aws_app")
    reader = start(procs, "kinesis_source", "documents", stream=stream, region="us-east-1",
                   endpoint_url=aws.endpoint, poll_interval="0.05")  # fmt: skip
    expected = {f"notes/{i:04d}.txt": f"NOTE {i}, CAFÉ".encode() for i in range(250)}
    deadline = time.monotonic() + 30
    while len(aws.keys(bucket)) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert aws.objects(bucket) == expected, writer.output  # listed, then each read back

    aws.put(stream, [("7", "7:a second version")])  # a put replaces the object of its key
    deadline = time.monotonic() + 15
    while (
        aws.s3.get_object(Bucket=bucket, Key="notes/0007.txt")["Body"].read() != b"A SECOND VERSION"
    ):
        assert time.monotonic() < deadline, writer.output
        time.sleep(0.2)
    assert len(aws.keys(bucket)) == 250
    for proc in (reader, writer, worker):
        assert proc.stop(signal.SIGTERM) == 0, proc.output
        assert " ERROR " not in proc.output and "Traceback" not in proc.output, proc.output
    assert "251 object(s) written" in writer.output


def test_an_existing_bucket_is_used_as_it_is(procs, aws):
    bucket = aws.unique("bucket")
    aws.s3.create_bucket(Bucket=bucket)
    aws.s3.put_object(Bucket=bucket, Key="already/there", Body=b"kept")
    writer = start(procs, "s3_bucket_sink", "objects", bucket=bucket, region="us-east-1",
                   endpoint_url=aws.endpoint)  # fmt: skip
    writer.wait_for("listening for the worker")
    time.sleep(0.5)
    assert writer.stop(signal.SIGTERM) == 0, writer.output
    assert "created S3 bucket" not in writer.output
    assert aws.objects(bucket) == {"already/there": b"kept"}
