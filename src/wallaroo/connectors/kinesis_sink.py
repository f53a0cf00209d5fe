#!/usr/bin/env python3
"""kinesis_sink: receive a connector sink's output from Wallaroo and put each value into an AWS
Kinesis stream.

Usage::

    kinesis_sink --application-module app --connector shouted --shouted-stream results \\
        --shouted-region us-east-1

Parameters (prefixed with the connector's name):
    stream         (required) the Kinesis stream to write to (it must exist).
    region         (optional) the AWS region (default: boto3's, e.g. ``AWS_DEFAULT_REGION``).
    endpoint_url   (optional) a Kinesis-compatible endpoint instead of AWS's.
    deadletter_path (optional) where outputs the sink decoder rejects are kept (default
                   ``./wallaroo-deadletter/<connector>-sink.jsonl``).

It listens for the worker at the address the application gives the connector and decodes every
output with the application's sink decoder, which returns ``(key, value)``: the key (``str``, or
bytes as UTF-8) is the partition key, the value the record's data (bytes as they are, a ``str``
as UTF-8, anything else as ``str(value)``). Outputs are put with PutRecords in batches of up to
500 records and 5 MiB; records Kinesis refuses (throttling) and whole batches that fail (Kinesis
unreachable) are retried with back-off, logged, until they are written, so a retried record may
follow records of its key that were sent after it. An output of another shape, an empty or too
long key (1 to 256 characters) or a record over 1 MiB is a dead letter, as is an output the
decoder rejects (kept in the dead-letter file, the worker's JSON Lines format, and logged,
rate-limited).

Delivery: at-least-once for what reaches this program (a batch whose answer is lost is put
again); outputs received but not yet written when the program stops are lost, as the connector
sink acknowledges the worker's transactions at once (exactly-once comes with checkpoints).

Logs go to stderr; the first line names the connector and both addresses. SIGINT and SIGTERM
stop it cleanly (exit code 0) once the batch being written is written, or at once while Kinesis
is failing.

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import wallaroo.experimental
from wallaroo.experimental.kinesis import kinesis_client
from wallaroo.experimental.program import (
    Backoff,
    ProgramRun,
    as_bytes,
    configure_logging,
    import_client,
    read_outputs,
)

log = logging.getLogger("kinesis_sink")

MAX_BATCH = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024

stopping = threading.Event()


def record_for(value: Any) -> dict[str, Any]:
    """The PutRecords entry for a decoded ``(key, value)``.

    Raises:
        ValueError: it cannot be one (the message says why).
    """
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValueError(f"the sink decoder returned {value!r:.100}, not (key, value)")
    key, data = value
    key = as_bytes(key).decode("utf-8", "replace")
    data = as_bytes(data)
    if not 1 <= len(key) <= 256 or len(data) + len(key.encode("utf-8")) > MAX_RECORD_BYTES:
        raise ValueError(
            f"a record with key {key!r:.60} and {len(data)} bytes of data is not valid for "
            "Kinesis (key of 1 to 256 characters, at most 1 MiB)"
        )
    return {"Data": data, "PartitionKey": key}


def records_for(
    connector: wallaroo.experimental.SinkConnector, values: list[Any]
) -> list[dict[str, Any]]:
    """The PutRecords entries of ``values``; those that cannot be one are dead letters."""
    records = []
    for value in values:
        try:
            records.append(record_for(value))
        except ValueError as exc:
            connector.dead_letter(value, exc, stage="kinesis_sink record")
    return records


def batches(records: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Split ``records`` into PutRecords requests (500 records, 5 MiB at most)."""
    batch: list[dict[str, Any]] = []
    size = 0
    for record in records:
        length = len(record["Data"]) + len(record["PartitionKey"].encode("utf-8"))
        if batch and (len(batch) == MAX_BATCH or size + length > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += length
    if batch:
        yield batch


def put(client: Any, stream: str, records: list[dict[str, Any]], backoff: Backoff) -> int:
    """Put ``records``, retrying what fails until everything is written or, while failing,
    a stop is requested. Returns how many were written."""
    pending = records
    while pending:
        if stopping.is_set() and backoff.since is not None:
            log.error("%d record(s) not written to Kinesis stream '%s'", len(pending), stream)
            break
        try:
            response = client.put_records(StreamName=stream, Records=pending)
        except Exception as exc:
            stopping.wait(backoff.failed(exc))
            continue
        results = response["Records"]
        failed = [rec for rec, res in zip(pending, results, strict=True) if res.get("ErrorCode")]
        if failed:
            codes = sorted({res["ErrorCode"] for res in results if res.get("ErrorCode")})
            reason = f"{len(failed)} of {len(pending)} records refused: {', '.join(codes)}"
            stopping.wait(backoff.failed(reason))
        else:
            backoff.succeeded()
        pending = failed
    return len(records) - len(pending)


def serve(connector: wallaroo.experimental.SinkConnector, client: Any, stream: str) -> int:
    """Write what the connector reads until a stop is requested; return the count written.

    Raises:
        ConnectorError: the connector stopped listening (it was closed).
    """
    backoff = Backoff(log, f"putting records into Kinesis stream '{stream}'")
    written = 0
    while not stopping.is_set():
        values = read_outputs(connector, log, MAX_BATCH, timeout=0.2)
        if not values:
            continue
        records = records_for(connector, values)
        for batch in batches(records):
            written += put(client, stream, batch, backoff)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    logging.getLogger("botocore").setLevel(logging.WARNING)  # its INFO lines are noise here
    args = list(sys.argv if argv is None else argv)
    # A signal sets ``stopping``: the batch being written is finished, then serve() returns.
    with ProgramRun(log, stop=stopping, errors=(ValueError, ImportError)) as run:
        boto3 = import_client(
            "boto3", "kinesis", "kinesis_sink needs boto3, which is not installed: {install}"
        )
        connector = wallaroo.experimental.SinkConnector(
            args, required_params=["stream"], optional_params=["region", "endpoint_url"]
        )
        params = connector.params
        client = kinesis_client(boto3, params.region, params.endpoint_url)
        run.callback(connector.close)
        connector.listen()
        host, port = connector.address
        log.info(
            "kinesis_sink for connector '%s': listening for the worker on %s:%d, writing to "
            "Kinesis stream '%s' at %s (region %s)", connector.config.name, host, port,
            params.stream, client.meta.endpoint_url, client.meta.region_name,
        )  # fmt: skip
        written = serve(connector, client, params.stream)
        log.info("%d record(s) written to Kinesis stream '%s'", written, params.stream)
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
