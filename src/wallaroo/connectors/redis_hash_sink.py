#!/usr/bin/env python3
"""redis_hash_sink: receive a connector sink's output from Wallaroo and write it into a Redis
hash, ``HSET key field value``.

Usage::

    redis_hash_sink --application-module app --connector totals \\
        --totals-key totals --totals-host 127.0.0.1 --totals-port 6379

Parameters (prefixed with the connector's name):
    key          (required) the hash to write.
    host, port   where Redis listens (default 127.0.0.1:6379).
    password     the password Redis asks for (AUTH), if any.
    deadletter_path  where outputs the sink decoder rejects are kept (default
                 ``./wallaroo-deadletter/<connector>-sink.jsonl``).

It listens for the worker at the address the application gives the connector. The
application's sink decoder must return a ``(field, value)`` pair for each output; the hash
keeps the latest value of each field (a table of current values). Fields and values that are
bytes, ``str``, ``int`` or ``float`` go to Redis as they are, anything else as ``str(value)``.
An output that is not a pair is a dead letter, as is one the decoder rejects:
kept in the dead-letter file (JSON Lines, the worker's format) and logged, rate-limited.

Writes are batched: what the worker sent since the last write goes to Redis in one pipeline
(one HSET per 1000 fields). When Redis cannot be reached the batch is held and written again
(0.2 s backing off to 5 s, logged) until it succeeds; meanwhile the worker is slowed down
(the connector's buffer pushes back), so nothing received is dropped. Writing a batch again is
harmless: HSET of the same values is idempotent. On SIGINT or SIGTERM it stops listening,
writes what it already received, and exits with code 0 (after at most 2 s of retrying, with a
warning naming how many values were not written).

Logs go to stderr; the first line names the connector and both addresses. Exit code 1 means
the worker's address could not be bound, 2 a usage or configuration error (a wrong password,
a key holding another type, or redis-py missing: ``pip install 'wallaroo-py[redis]'``).

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import wallaroo.experimental
from wallaroo.experimental.program import (
    ProgramRun,
    UsageError,
    configure_logging,
    import_client,
    port_number,
    read_outputs,
    read_remaining,
)

if TYPE_CHECKING:
    import redis

log = logging.getLogger("redis_hash_sink")

READ_BATCH = 4096
HSET_CHUNK = 1000
FIRST_DELAY = 0.2
MAX_DELAY = 5.0
STOP_GRACE = 2.0

Scalar = bytes | str | int | float


def scalar(value: Any) -> Scalar:
    """``value`` as something redis-py writes: bytes, str, int and float as they are (bool is
    not an int here), anything else as ``str(value)``."""
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, bytes | str | float) or (type(value) is int):
        return value
    return str(value)


class HashWriter:
    """Writes fields into one Redis hash, holding a batch while Redis is unreachable.

    Args:
        redis_module: the imported ``redis`` package.
        host: Redis's host.
        port: its port.
        password: its password, or None.
        key: the hash.
        stop: set by SIGINT/SIGTERM; from then on, retrying gives up after ``STOP_GRACE`` s.
    """

    def __init__(
        self,
        redis_module: ModuleType,
        host: str,
        port: int,
        password: str | None,
        key: str,
        stop: threading.Event,
    ) -> None:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.redis = redis_module
        self.host, self.port, self.key = host, port, key
        self.stop = stop
        self.written = 0
        self._lost = False
        self._give_up_at: float | None = None
        # No retries inside redis-py: a failure must surface here, to be logged and retried.
        self._client: redis.Redis = redis_module.Redis(
            host=host,
            port=port,
            password=password,
            socket_connect_timeout=5,
            socket_timeout=30,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
        )

    def write(self, fields: dict[Scalar, Scalar]) -> bool:
        """HSET every field; retry while Redis is unreachable.

        Returns:
            True once written; False when the program is stopping and gave up (``STOP_GRACE``
            seconds after the stop): the fields are not written.

        Raises:
            UsageError: Redis refused the password or the command (the key holds another type).
        """
        delay = FIRST_DELAY
        while True:
            try:
                self._hset(fields)
            except (self.redis.AuthenticationError, self.redis.ResponseError) as exc:
                raise UsageError(f"Redis refused to write hash '{self.key}': {exc}") from exc
            except (self.redis.ConnectionError, self.redis.TimeoutError) as exc:
                if not self._lost:
                    log.warning(
                        "lost Redis at %s:%d (%s); holding %d values and retrying",
                        self.host, self.port, exc, len(fields),
                    )  # fmt: skip
                    self._lost = True
                if self._giving_up():
                    return False
                self.stop.wait(delay if not self.stop.is_set() else 0.1)
                delay = min(delay * 2, MAX_DELAY)
                continue
            if self._lost:
                log.info("Redis at %s:%d is back; writing again", self.host, self.port)
                self._lost = False
            self.written += len(fields)
            return True

    def _giving_up(self) -> bool:
        if not self.stop.is_set():
            return False
        now = time.monotonic()
        if self._give_up_at is None:
            self._give_up_at = now + STOP_GRACE
        return now >= self._give_up_at

    def _hset(self, fields: dict[Scalar, Scalar]) -> None:
        pipe = self._client.pipeline(transaction=False)
        items = list(fields.items())
        for start in range(0, len(items), HSET_CHUNK):
            pipe.hset(self.key, mapping=dict(items[start : start + HSET_CHUNK]))
        pipe.execute()

    def close(self) -> None:
        """Close the connections to Redis. Idempotent."""
        with contextlib.suppress(self.redis.RedisError, OSError):  # already gone
            self._client.close()


class Fields:
    """Turns decoded outputs into hash fields; what is not a pair is a dead letter of
    ``connector``."""

    def __init__(self, connector: wallaroo.experimental.SinkConnector) -> None:
        self.connector = connector

    def collect(self, values: Iterable[Any]) -> dict[Scalar, Scalar]:
        """The fields to write: the latest value of each field among ``values``."""
        fields: dict[Scalar, Scalar] = {}
        for value in values:
            if isinstance(value, tuple | list) and len(value) == 2:
                fields[scalar(value[0])] = scalar(value[1])
                continue
            error = ValueError(f"the sink decoder must return (field, value), not {value!r:.100}")
            self.connector.dead_letter(value, error, stage="redis_hash_sink field")
        return fields


def serve(
    connector: wallaroo.experimental.SinkConnector,
    writer: HashWriter,
    stop: threading.Event,
) -> None:
    """Write what the worker sends until ``stop`` is set; then stop listening, write what was
    already received (retrying for at most ``STOP_GRACE`` seconds) and return."""
    fields = Fields(connector)
    while not stop.is_set():
        values = read_outputs(connector, log, READ_BATCH, timeout=0.2)
        if values:
            writer.write(fields.collect(values))
    left = 0
    for values in read_remaining(connector, log, READ_BATCH):
        batch = fields.collect(values)
        if batch and (left or not writer.write(batch)):
            left += len(batch)
    if left:
        log.warning("stopped with %d received values not written to Redis", left)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    stop = threading.Event()
    args = list(sys.argv if argv is None else argv)
    with ProgramRun(log, stop=stop) as run:  # a signal sets ``stop``: serve() finishes
        redis_module = import_client(
            "redis", "redis", "the Redis client library is missing ({error}); "
            "install it with: {install}",
        )  # fmt: skip
        connector = wallaroo.experimental.SinkConnector(
            args, required_params=["key"], optional_params=["host", "port", "password"]
        )
        params, name = connector.params, connector.config.name
        host = params.host or "127.0.0.1"
        port = port_number(f"--{name}-port", params.port or "6379")
        writer = HashWriter(redis_module, host, port, params.password, params.key, stop)
        run.callback(writer.close)
        run.callback(connector.close)  # the last registered is closed first
        connector.listen()
        log.info(
            "redis_hash_sink for connector '%s': listening for the worker on %s:%d, writing "
            "hash '%s' at Redis %s:%d", name, *connector.address, params.key, host, port,
        )  # fmt: skip
        serve(connector, writer, stop)
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
