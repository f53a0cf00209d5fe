#!/usr/bin/env python3
"""redis_subscriber_source: subscribe to a Redis pub/sub channel (or pattern) and send each
message to Wallaroo.

Usage::

    redis_subscriber_source --application-module app --connector events \\
        --events-topic events --events-host 127.0.0.1 --events-port 6379

Parameters (prefixed with the connector's name):
    topic        the channel to SUBSCRIBE to; or
    pattern      a glob-style pattern to PSUBSCRIBE to (give exactly one of the two).
    host, port   where Redis listens (default 127.0.0.1:6379).
    password     the password Redis asks for (AUTH), if any.
    instance     names the stream ``<connector>-<instance>`` so that several processes can feed
                 one connector.

The data of each pub/sub message (bytes) goes through the application's source encoder to the
worker at the address the application gives the connector. The program connects to the worker
first, then subscribes, and logs ``subscribed to ...`` once Redis has confirmed it.

Delivery is at-most-once across a restart of this program or a lost Redis connection: Redis
keeps nothing for a subscriber that is not connected, so what is published before the
subscription is confirmed, while this program is not running, or while it reconnects to Redis
(0.2 s backing off to 5 s, logged) is lost. A message once received is held until the worker
acknowledges it and sent again after a reconnection to the worker.

Logs go to stderr; the first line names the connector, Redis's address and the worker's.
SIGINT and SIGTERM stop it cleanly (exit code 0); 1 means the worker refused the connector,
2 a usage or configuration error (a wrong password, or redis-py missing:
``pip install 'wallaroo-py[redis]'``).

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import wallaroo.experimental
from wallaroo.experimental.program import (
    ProgramRun,
    UsageError,
    configure_logging,
    import_client,
    port_number,
    send_forever,
)

if TYPE_CHECKING:
    import redis

log = logging.getLogger("redis_subscriber_source")

BATCH = 1024
FIRST_DELAY = 0.2
MAX_DELAY = 5.0


class Subscriber:
    """One pub/sub subscription that survives losing Redis.

    Args:
        redis_module: the imported ``redis`` package.
        host: Redis's host.
        port: its port.
        password: its password, or None.
        topic: the channel to subscribe to, or None.
        pattern: the pattern to subscribe to, or None (exactly one of the two is set).
    """

    def __init__(
        self,
        redis_module: ModuleType,
        host: str,
        port: int,
        password: str | None,
        topic: str | None,
        pattern: str | None,
    ) -> None:
        self.redis = redis_module
        self.host, self.port = host, port
        self.password = password
        self.topic, self.pattern = topic, pattern
        self.what = f"channel '{topic}'" if topic is not None else f"pattern '{pattern}'"
        self._client: redis.Redis | None = None
        self._pubsub: Any = None

    def open(self, *, again: bool = False) -> None:
        """Connect and subscribe; retry (0.2 s backing off to 5 s) while Redis is unreachable.

        Returns once Redis confirmed the subscription (logged).

        Raises:
            UsageError: Redis refused the password or the subscription.
        """
        delay = FIRST_DELAY
        logged = again
        while True:
            try:
                self._subscribe()
            except (self.redis.AuthenticationError, self.redis.ResponseError) as exc:
                self.close()
                raise UsageError(
                    f"Redis at {self.host}:{self.port} refused the subscription: {exc}"
                ) from exc
            except (self.redis.ConnectionError, self.redis.TimeoutError) as exc:
                self.close()
                if not logged:
                    log.info("waiting for Redis at %s:%d (%s); retrying", self.host, self.port, exc)
                    logged = True
                time.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
                continue
            log.info(
                "subscribed to %s at Redis %s:%d%s", self.what, self.host, self.port,
                " again; what was published meanwhile is lost" if again else "",
            )  # fmt: skip
            return

    def _subscribe(self) -> None:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries inside redis-py: a lost connection must surface here, to be logged.
        self._client = self.redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            socket_connect_timeout=5,
            socket_keepalive=True,
            health_check_interval=10,
            retry=Retry(NoBackoff(), 0),
        )
        self._pubsub = self._client.pubsub()
        if self.topic is not None:
            self._pubsub.subscribe(self.topic)
        else:
            self._pubsub.psubscribe(self.pattern)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] in ("subscribe", "psubscribe"):
                return
        raise self.redis.TimeoutError("Redis did not confirm the subscription in 10 s")

    def receive(self, timeout: float = 1.0) -> list[bytes]:
        """Wait up to ``timeout`` seconds for a message; return it with those already waiting
        (up to ``BATCH``). After losing Redis, reconnect (logged) and return what came before.
        """
        batch: list[bytes] = []
        try:
            message = self._pubsub.get_message(timeout=timeout)
            while message is not None:
                if message["type"] in ("message", "pmessage"):
                    batch.append(bytes(message["data"]))
                    if len(batch) >= BATCH:
                        break
                message = self._pubsub.get_message(timeout=0.0)
        except (self.redis.ConnectionError, self.redis.TimeoutError, OSError) as exc:
            log.warning("lost Redis at %s:%d (%s); reconnecting", self.host, self.port, exc)
            self.close()
            self.open(again=True)
        return batch

    def close(self) -> None:
        """Close the subscription's connection. Idempotent."""
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        for closeable in (pubsub, client):
            if closeable is not None:
                with contextlib.suppress(self.redis.RedisError, OSError):  # already gone
                    closeable.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    args = list(sys.argv if argv is None else argv)
    with ProgramRun(log) as run:  # a signal raises Stop: exit code 0
        redis_module = import_client(
            "redis", "redis", "the Redis client library is missing ({error}); "
            "install it with: {install}",
        )  # fmt: skip
        connector = wallaroo.experimental.SourceConnector(
            args, optional_params=["topic", "pattern", "host", "port", "password"]
        )
        run.callback(connector.close, timeout=2.0)
        params, name = connector.params, connector.config.name
        if (params.topic is None) == (params.pattern is None):
            raise UsageError(f"give exactly one of --{name}-topic and --{name}-pattern")
        host = params.host or "127.0.0.1"
        port = port_number(f"--{name}-port", params.port or "6379")
        subscriber = Subscriber(
            redis_module, host, port, params.password, params.topic, params.pattern
        )
        run.callback(subscriber.close)  # the last registered is closed first
        log.info(
            "redis_subscriber_source for connector '%s': subscribing to %s at Redis %s:%d, "
            "sending to the worker at %s:%d", name, subscriber.what, host, port,
            connector.config.host, connector.config.port,
        )  # fmt: skip
        connector.connect()
        subscriber.open()
        send_forever(connector, subscriber.receive)
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
