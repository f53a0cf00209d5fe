#!/usr/bin/env python3
"""s3_bucket_sink: receive a connector sink's output from Wallaroo and store each value as an
object of an S3 bucket.

Usage::

    s3_bucket_sink --application-module app --connector objects --objects-bucket reports \\
        --objects-region us-east-1

Parameters (prefixed with the connector's name):
    bucket         (required) the bucket; created when it does not exist.
    region         (optional) the AWS region (default: boto3's, e.g. ``AWS_DEFAULT_REGION``).
    endpoint_url   (optional) an S3-compatible endpoint instead of AWS's (addressed path-style,
                   ``ENDPOINT/BUCKET/KEY``, as most S3-compatible servers need).
    deadletter_path (optional) where outputs the sink decoder rejects are kept (default
                   ``./wallaroo-deadletter/<connector>-sink.jsonl``).

It listens for the worker at the address the application gives the connector and decodes every
output with the application's sink decoder, which returns ``(key, body)``: the object's key
(``str``, or bytes as UTF-8; 1 to 1024 bytes) and its body (bytes as they are, a ``str`` as
UTF-8, anything else as ``str(body)``). An output of another shape or with an invalid key is a
dead letter, as is one the decoder rejects (kept in the dead-letter file, the worker's JSON
Lines format, and logged, rate-limited). Outputs are read in batches of up to
256; within a batch the last body of each key is the one stored (the earlier ones would be
overwritten anyway), and the distinct keys are written by 8 threads. Failed puts are retried
with back-off, logged, until they succeed; a bucket deleted meanwhile is created again.

Delivery: a put is idempotent per key, so a value written twice leaves the same object;
outputs received but not yet written when the program stops are lost, as the connector sink
acknowledges the worker's transactions at once (exactly-once comes with checkpoints).

Logs go to stderr; the first line names the connector and both addresses. SIGINT and SIGTERM
stop it cleanly (exit code 0) once the batch being written is written, or at once while S3 is
failing.

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import wallaroo.experimental
from wallaroo.experimental.aws import aws_client
from wallaroo.experimental.program import (
    Backoff,
    ProgramRun,
    as_bytes,
    configure_logging,
    import_client,
    read_outputs,
)

log = logging.getLogger("s3_bucket_sink")

MAX_BATCH = 256
THREADS = 8

stopping = threading.Event()


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ("" for other failures)."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


class Bucket:
    """Writes objects into one bucket, creating it when it is missing."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name
        self.backoff = Backoff(log, f"writing to S3 bucket '{name}'")
        self.pool = ThreadPoolExecutor(THREADS, thread_name_prefix="s3-put")

    def ensure(self) -> None:
        """Create the bucket unless it exists, retrying with back-off while S3 fails.

        Raises:
            ConnectorError: the bucket exists but is not ours to write, or S3 refuses to
                create it (access denied, invalid name, a name taken by someone else).
        """
        backoff = Backoff(log, f"looking up S3 bucket '{self.name}'")
        while not stopping.is_set():
            try:
                self.client.head_bucket(Bucket=self.name)
                backoff.succeeded()
                return
            except Exception as exc:
                code = error_code(exc)
                if code in ("403", "AccessDenied"):
                    raise wallaroo.experimental.ConnectorError(
                        f"no access to S3 bucket '{self.name}' ({exc}); check the credentials "
                        "or choose another --<connector>-bucket"
                    ) from exc
                if code not in ("404", "NoSuchBucket", "NotFound") or not self.create():
                    stopping.wait(backoff.failed(exc))
                    continue
                return

    def create(self) -> bool:
        """Create the bucket; False after a failure worth retrying.

        Raises:
            ConnectorError: S3 refused to create it (a client error, such as access denied).
        """
        region = self.client.meta.region_name
        where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {
            "LocationConstraint": region}}  # fmt: skip
        try:
            self.client.create_bucket(Bucket=self.name, **where)
        except Exception as exc:
            if error_code(exc) == "BucketAlreadyOwnedByYou":
                return True
            status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(status, int) and 400 <= status < 500:
                raise wallaroo.experimental.ConnectorError(
                    f"cannot create S3 bucket '{self.name}': {exc}"
                ) from exc
            return False
        log.info("created S3 bucket '%s'", self.name)
        return True

    def put(self, key: str, body: bytes) -> BaseException | None:
        try:
            self.client.put_object(Bucket=self.name, Key=key, Body=body)
        except Exception as exc:
            return exc
        return None

    def write(self, objects: dict[str, bytes]) -> int:
        """Put every object, retrying failures until they succeed or, while failing, a stop
        is requested. Returns how many were written."""
        pending = dict(objects)
        while pending:
            if stopping.is_set() and self.backoff.since is not None:
                log.error("%d object(s) not written to S3 bucket '%s'", len(pending), self.name)
                break
            errors = dict(
                zip(pending, self.pool.map(self.put, pending, pending.values()), strict=True)
            )
            failed = {key: exc for key, exc in errors.items() if exc is not None}
            if not failed:
                self.backoff.succeeded()
            elif any(error_code(exc) == "NoSuchBucket" for exc in failed.values()):
                self.ensure()
            else:
                stopping.wait(self.backoff.failed(next(iter(failed.values()))))
            pending = {key: pending[key] for key in failed}
        return len(objects) - len(pending)


def object_for(value: Any) -> tuple[str, bytes]:
    """The key and body for a decoded ``(key, body)``.

    Raises:
        ValueError: it cannot be one (the message says why).
    """
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValueError(f"the sink decoder returned {value!r:.100}, not (key, body)")
    key = as_bytes(value[0]).decode("utf-8", "replace")
    if not 1 <= len(key.encode("utf-8")) <= 1024:
        raise ValueError(f"{key!r:.60} is not a valid S3 key (1 to 1024 bytes)")
    return key, as_bytes(value[1])


def objects_for(
    connector: wallaroo.experimental.SinkConnector, values: list[Any]
) -> dict[str, bytes]:
    """The objects of ``values`` (the last body of each key); those that cannot be one are
    dead letters."""
    objects = {}
    for value in values:
        try:
            key, body = object_for(value)
        except ValueError as exc:
            connector.dead_letter(value, exc, stage="s3_bucket_sink object")
            continue
        objects[key] = body
    return objects


def serve(connector: wallaroo.experimental.SinkConnector, bucket: Bucket) -> int:
    """Store what the connector reads until a stop is requested; return the count written.

    Raises:
        ConnectorError: the connector stopped listening (it was closed).
    """
    written = 0
    while not stopping.is_set():
        values = read_outputs(connector, log, MAX_BATCH, timeout=0.2)
        if not values:
            continue
        objects = objects_for(connector, values)
        written += bucket.write(objects)
    return written


def s3_client(boto3: Any, region: str | None, endpoint_url: str | None) -> Any:
    """An S3 client with short timeouts (path-style addressing with ``endpoint_url``).

    Raises:
        ValueError: no region is given or configured.
    """
    return aws_client(
        boto3,
        "s3",
        region,
        endpoint_url,
        read_timeout=30,
        max_pool_connections=THREADS,
        path_style=bool(endpoint_url),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    logging.getLogger("botocore").setLevel(logging.WARNING)  # its INFO lines are noise here
    args = list(sys.argv if argv is None else argv)
    # A signal sets ``stopping``: the batch being written is finished, then serve() returns.
    with ProgramRun(log, stop=stopping, errors=(ValueError, ImportError)) as run:
        boto3 = import_client(
            "boto3", "s3", "s3_bucket_sink needs boto3, which is not installed: {install}"
        )
        connector = wallaroo.experimental.SinkConnector(
            args, required_params=["bucket"], optional_params=["region", "endpoint_url"]
        )
        params = connector.params
        bucket = Bucket(s3_client(boto3, params.region, params.endpoint_url), params.bucket)
        run.callback(bucket.pool.shutdown, wait=True)
        run.callback(connector.close)  # the last registered is closed first
        connector.listen()
        host, port = connector.address
        meta = bucket.client.meta
        log.info(
            "s3_bucket_sink for connector '%s': listening for the worker on %s:%d, writing to "
            "S3 bucket '%s' at %s (region %s)", connector.config.name, host, port, bucket.name,
            meta.endpoint_url, meta.region_name,
        )  # fmt: skip
        bucket.ensure()
        written = serve(connector, bucket)
        log.info("%d object(s) written to S3 bucket '%s'", written, bucket.name)
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
