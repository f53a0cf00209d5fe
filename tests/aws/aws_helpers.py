"""Helpers of the AWS connector tests: clients of moto's server, unique streams and buckets, a
reader of a whole Kinesis stream, the connector programs started each way, and a TCP proxy
that can make moto unreachable."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import connector_helpers
from botocore.config import Config
from connector_helpers import Proc, Procs, free_port, start_connector

HERE = Path(__file__).resolve().parent
REGION = "us-east-1"
PORTS = ("RECORDS_PORT", "SHOUTED_PORT", "DOCUMENTS_PORT", "OBJECTS_PORT")
WAYS = ["executable", "python -m", "wallaroo connector", "copied file"]


def aws_procs(cwd: Path) -> Procs:
    """Processes that load tests/aws/aws_app.py, with test credentials and free ports."""
    procs = Procs(cwd)
    inherited = os.environ.get("PYTHONPATH")
    procs.env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), str(cwd), *([inherited] if inherited else [])]
    )
    procs.env.update(
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_CONFIG_FILE=str(cwd / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(cwd / "no-aws-credentials"),
    )
    procs.env.pop("AWS_DEFAULT_REGION", None)
    procs.env.pop("AWS_PROFILE", None)
    for name in PORTS:
        procs.env[name] = str(free_port())
    return procs


def start(procs: Procs, name: str, connector: str, way: str = "python -m", **params: str) -> Proc:
    """Start connector program ``name`` for ``connector`` of aws_app, run ``way``, with
    ``--<connector>-<key> value`` for each parameter."""
    args = ["--application-module", "aws_app", "--connector", connector]
    for key, value in params.items():
        args += [f"--{connector}-{key}", value]
    return start_connector(procs, name, way, *args)


class Aws:
    """Clients of moto's server."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        common: dict[str, Any] = {
            "endpoint_url": endpoint,
            "region_name": REGION,
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
        }
        self.kinesis = boto3.client("kinesis", **common)
        self.s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **common)

    @staticmethod
    def unique(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    def new_stream(self, shards: int) -> str:
        name = self.unique("stream")
        self.kinesis.create_stream(StreamName=name, ShardCount=shards)
        self.kinesis.get_waiter("stream_exists").wait(
            StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100}
        )
        return name

    def put(self, stream: str, records: list[tuple[str, str]]) -> None:
        """Put ``(partition key, data)`` records with PutRecords, 500 at a time."""
        for start in range(0, len(records), 500):
            batch = [
                {"PartitionKey": key, "Data": data.encode("utf-8")}
                for key, data in records[start : start + 500]
            ]
            answer = self.kinesis.put_records(StreamName=stream, Records=batch)
            assert answer["FailedRecordCount"] == 0, answer

    def shard_ids(self, stream: str) -> list[str]:
        return [s["ShardId"] for s in self.kinesis.list_shards(StreamName=stream)["Shards"]]

    def keys(self, bucket: str) -> list[str]:
        """The keys of ``bucket``, listed 100 a page."""
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 100}
        ):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object of ``bucket`` and its body, read back."""
        return {
            key: self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            for key in self.keys(bucket)
        }


class StreamReader:
    """Reads every record of a Kinesis stream, from its trim horizon on, shard by shard."""

    def __init__(self, aws: Aws, stream: str) -> None:
        self.kinesis = aws.kinesis
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.iterators: dict[str, str] = {}
        for shard in aws.shard_ids(stream):
            self.records[shard] = []
            self.iterators[shard] = self.kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]

    def poll(self) -> int:
        """Read what was added; return the number of records read so far."""
        for shard in self.iterators:
            while True:
                answer = self.kinesis.get_records(ShardIterator=self.iterators[shard], Limit=10000)
                self.iterators[shard] = answer["NextShardIterator"]
                self.records[shard] += answer["Records"]
                if not answer["Records"]:
                    break
        return self.count

    @property
    def count(self) -> int:
        return sum(len(records) for records in self.records.values())

    def pairs(self) -> Counter[tuple[str, str]]:
        """How often each ``(partition key, data)`` was read."""
        return Counter(
            (r["PartitionKey"], r["Data"].decode("utf-8"))
            for records in self.records.values()
            for r in records
        )

    def wait_for(self, count: int, timeout: float, *procs: Proc) -> None:
        """Poll until ``count`` records were read; then once more after ``settle`` s, so that
        extra records (duplicates) are seen too."""
        deadline = time.monotonic() + timeout
        while self.poll() < count:
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.output}" for p in procs)
                raise AssertionError(f"{self.count} of {count} records in {timeout} s\n{logs}")
            time.sleep(0.1)

    def settle(self, seconds: float = 1.0) -> None:
        time.sleep(seconds)
        self.poll()


def records(numbers: range) -> list[tuple[str, str]]:
    """The test's input records: partition key ``00042``, data ``rec-00042``."""
    return [(f"{i:05d}", f"rec-{i:05d}") for i in numbers]


def shouted(numbers: range) -> Counter[tuple[str, str]]:
    """What the ``shout`` pipeline makes of ``records(numbers)``, once each."""
    return Counter((f"{i:05d}", f"REC-{i:05d}!") for i in numbers)


class Proxy(connector_helpers.Proxy):
    """A TCP forwarder to 127.0.0.1:``target`` that can go :meth:`down` (cuts every connection
    and refuses new ones by closing them at once) and :meth:`up` again, on the same port."""

    def __init__(self, target: int) -> None:
        super().__init__(target)
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def is_down(self) -> bool:
        return self.refusing

    def down(self) -> None:
        self.refusing = True
        self.cut(close=True)

    def up(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self.down()
        super().close()
