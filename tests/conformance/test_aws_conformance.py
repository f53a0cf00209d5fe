"""The conformance checks of wallaroo.testing, run against kinesis_source, kinesis_sink and
s3_bucket_sink with the session's moto server."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import pytest
from botocore.config import Config
from conformance_helpers import (
    MESSAGES,
    PairReader,
    assert_sink_conforms,
    assert_source_conforms,
    check_sink,
    check_source,
    connector_env,
    numbered,
    sent_pairs,
    unique,
)

from wallaroo.testing import ConformanceReport

REGION = "us-east-1"


def client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(s3={"addressing_style": "path"}),
    )


def aws_env(tmp_path) -> dict[str, str]:
    """Test credentials and nothing from the machine's AWS configuration."""
    env = connector_env(
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
    )
    env.pop("AWS_PROFILE", None)
    return env


def new_stream(kinesis: Any, shards: int) -> str:
    name = unique("conformance")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100}
    )
    return name


@pytest.mark.slow
def test_kinesis_source_conforms(moto_endpoint, tmp_path):
    kinesis = client("kinesis", moto_endpoint)

    def attempt() -> ConformanceReport:
        stream = new_stream(kinesis, shards=2)

        def feed(start: int, count: int) -> list[bytes]:
            values = numbered("record", start, count)
            answer = kinesis.put_records(
                StreamName=stream,
                Records=[{"PartitionKey": value.decode(), "Data": value} for value in values],
            )
            assert answer["FailedRecordCount"] == 0, answer
            return values

        return check_source(
            "kinesis_source",
            feed,
            params={
                "stream": stream,
                "endpoint_url": moto_endpoint,
                "region": REGION,
                "poll_interval": "0.05",
            },
            env=aws_env(tmp_path),
        )

    assert_source_conforms(attempt())


class StreamReader(PairReader):
    """Reads every shard of a Kinesis stream from the trim horizon, in a thread, collecting
    ``(partition key, data)`` pairs."""

    pause = 0.1

    def __init__(self, kinesis: Any, stream: str) -> None:
        shards = kinesis.list_shards(StreamName=stream)["Shards"]
        self._iterators = [
            kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            for shard in shards
        ]
        self._kinesis = kinesis
        super().__init__()

    def read(self) -> Iterator[tuple[str, str]]:
        for n, iterator in enumerate(self._iterators):
            answer = self._kinesis.get_records(ShardIterator=iterator, Limit=1000)
            self._iterators[n] = answer["NextShardIterator"]
            yield from ((r["PartitionKey"], r["Data"].decode()) for r in answer["Records"])


@pytest.mark.slow
def test_kinesis_sink_conforms(moto_endpoint, tmp_path):
    kinesis = client("kinesis", moto_endpoint)
    stream = new_stream(kinesis, shards=2)
    reader = StreamReader(kinesis, stream)
    try:
        report = check_sink(
            "kinesis_sink",
            lambda sent: sent_pairs(sent) <= reader.got,
            params={"stream": stream, "endpoint_url": moto_endpoint, "region": REGION},
            env=aws_env(tmp_path),
        )
    finally:
        reader.close()
    assert_sink_conforms(report)


class BucketContents:
    """``delivered`` for S3: every sent key is an object holding the sent body. Objects
    already read back are not read again."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket
        self.verified: set[tuple[str, str]] = set()

    def __call__(self, sent: Sequence[bytes]) -> bool:
        wanted = sent_pairs(sent) - self.verified
        if not wanted:
            return True
        try:
            listed = self.s3.list_objects_v2(Bucket=self.bucket)  # up to 1,000: enough here
        except self.s3.exceptions.NoSuchBucket:  # not created yet
            return False
        keys = {item["Key"] for item in listed.get("Contents", [])}
        for key, body in wanted:
            if key in keys:
                got = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode()
                if got == body:
                    self.verified.add((key, body))
        return not wanted - self.verified


@pytest.mark.slow
def test_s3_bucket_sink_conforms(moto_endpoint, tmp_path):
    s3 = client("s3", moto_endpoint)
    bucket = unique("conformance").replace("_", "-")  # the sink creates it
    report = check_sink(
        "s3_bucket_sink",
        BucketContents(s3, bucket),
        params={"bucket": bucket, "endpoint_url": moto_endpoint, "region": REGION},
        env=aws_env(tmp_path),
    )
    assert_sink_conforms(report)
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert len(listed) == 2 * MESSAGES
