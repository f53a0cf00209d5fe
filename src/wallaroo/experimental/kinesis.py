"""Kinesis helpers for connector programs, over boto3 (the ``kinesis`` extra).

Nothing here imports boto3: the program imports it (``import_client``) and passes the module
or its client in.

* :func:`kinesis_client`: a client with short timeouts (a program retries outages itself).
* :func:`list_shards`: a stream's shard ids, retried with back-off.
* :class:`ShardPositions` and :class:`PositionFile`: resumable positions of a shard. Kinesis
  sequence numbers do not fit the protocol's u64 message ids, so a source numbers each shard's
  records itself (0 for the first record after the trim horizon) and keeps, in a small state
  file, the sequence numbers of the last positions the worker acknowledged; it resumes after
  the nearest known one at or before the id the worker says it has.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from wallaroo.experimental.aws import aws_client
from wallaroo.experimental.program import Backoff
from wallaroo.protocol.frames import NONE_SEEN

__all__ = ["HISTORY", "Position", "PositionFile", "ShardPositions", "kinesis_client", "list_shards"]

HISTORY = 64
"""Acknowledged positions kept per shard."""

Position = tuple[int, str]
"""``(message id, sequence number)``."""


def kinesis_client(
    boto3: Any, region: str | None, endpoint_url: str | None, *, max_pool_connections: int = 10
) -> Any:
    """A Kinesis client with short timeouts (connect 5 s, read 20 s, two attempts): outages are
    retried by the program, with a log line.

    Args:
        boto3: the ``boto3`` module.
        region: the AWS region; None: boto3's (``AWS_DEFAULT_REGION``, the config files).
        endpoint_url: a Kinesis-compatible endpoint instead of AWS's, or None.
        max_pool_connections: HTTP connections kept (one per thread that calls it at once).

    Raises:
        ValueError: no region is given or configured.
    """
    return aws_client(
        boto3,
        "kinesis",
        region,
        endpoint_url,
        read_timeout=20,
        max_pool_connections=max_pool_connections,
    )


def list_shards(client: Any, stream: str, log: logging.Logger) -> list[str]:
    """The ids of the stream's shards, retried with back-off (logged to ``log``) while Kinesis
    fails; waits indefinitely."""
    backoff = Backoff(log, f"listing the shards of Kinesis stream '{stream}'")
    while True:
        try:
            shards: list[str] = []
            page = client.list_shards(StreamName=stream)
            shards += [s["ShardId"] for s in page["Shards"]]
            while page.get("NextToken"):
                page = client.list_shards(NextToken=page["NextToken"])
                shards += [s["ShardId"] for s in page["Shards"]]
        except Exception as exc:
            time.sleep(backoff.failed(exc))
            continue
        backoff.succeeded()
        return shards


class ShardPositions:
    """Where one shard stands: the positions the worker acknowledged and those sent since.

    Not thread-safe: the caller holds its own lock around every call.

    Args:
        acked: the acknowledged positions, oldest first (from the :class:`PositionFile`).

    Attributes:
        acked: acknowledged by the worker, by message id, at most :data:`HISTORY`.
        sent: sent, not yet acknowledged, in order.
        ending: the shard's end was sent; ``ended`` once every record before it is
            acknowledged.
        dirty: ``acked`` or ``ended`` changed since the program last saved them (it clears it).
    """

    def __init__(self, acked: list[Position]) -> None:
        self.acked = acked
        self.sent: deque[Position] = deque()
        self.ending = self.ended = self.dirty = False

    def resume(self, worker_has: int) -> tuple[str | None, int, int]:
        """Where to read so that a worker having every message up to ``worker_has`` gets the
        rest: (after this sequence number, or None for the trim horizon; the message id of the
        next record read; the last message id to skip). Ids are the same on every read because
        a shard's records always come in the same order. A worker that knows nothing
        (``NONE_SEEN``) gets what follows the last acknowledged position."""
        if worker_has == NONE_SEEN:
            if self.acked:
                message_id, seq = self.acked[-1]
                return seq, message_id + 1, message_id
            return None, 0, -1
        self.acked = [p for p in self.acked if p[0] <= worker_has]  # it may have gone back
        below = [p for p in sorted({*self.acked, *self.sent}) if p[0] <= worker_has]
        if below:
            return below[-1][1], below[-1][0] + 1, worker_has
        return None, 0, worker_has

    def acknowledged(self, point_of_ref: int) -> None:
        """The worker acknowledged every message up to ``point_of_ref``: the last such sent
        position joins ``acked``; an ending shard with nothing unacknowledged has ended."""
        last = None
        while self.sent and self.sent[0][0] <= point_of_ref:
            last = self.sent.popleft()
        if last is not None:
            self.acked.append(last)
            del self.acked[:-HISTORY]
            self.dirty = True
        if self.ending and not self.sent:
            self.ended = self.dirty = True


class PositionFile:
    """The acknowledged positions of every shard, in a small JSON file:
    ``{"format": 1, "stream": NAME, "shards": {ID: {"acked": [[id, seq], ...], "ended": B}}}``
    (oldest first). Saved atomically (temporary file, fsync, rename, fsync of the folder): a
    crash leaves the previous file or the new one, never a torn one.

    Args:
        path: the file.
        stream: the Kinesis stream's name (a file of another stream is refused).
    """

    def __init__(self, path: Path, stream: str) -> None:
        self.path = path
        self.stream = stream

    def load(self) -> dict[str, tuple[list[Position], bool]]:
        """Return ``{shard id: (acknowledged positions, ended)}``; empty if there is no file.

        Raises:
            ValueError: the file is not a position file of this stream.
        """
        try:
            data = json.loads(self.path.read_text("utf-8"))
            if data.get("format") != 1 or data.get("stream") != self.stream:
                raise ValueError(f"it holds the positions of stream {data.get('stream')!r}")
            return {
                shard: ([(int(i), str(s)) for i, s in entry["acked"]], bool(entry["ended"]))
                for shard, entry in data["shards"].items()
            }
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"{self.path} is not a position file of Kinesis stream '{self.stream}' ({exc}); "
                "give another --<connector>-state_file, or delete it to read from the trim horizon"
            ) from exc

    def save(self, shards: dict[str, tuple[list[Position], bool]]) -> None:
        """Replace the file. Raises OSError when it cannot be written."""
        body = {
            "format": 1,
            "stream": self.stream,
            "shards": {s: {"acked": acked, "ended": ended} for s, (acked, ended) in shards.items()},
        }
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(body, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
