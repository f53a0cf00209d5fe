#!/usr/bin/env python3
"""rabbitmq_source: consume a RabbitMQ queue and send each message to Wallaroo; a delivery is
acknowledged to the broker only once the worker has acknowledged it.

Usage::

    rabbitmq_source --application-module app --connector orders \\
        --orders-amqpurl amqp://guest:guest@127.0.0.1:5672/%2F --orders-queue orders

Parameters (prefixed with the connector's name):
    amqpurl      (required) the broker's AMQP URL (``amqp://user:password@host:port/vhost``).
    queue        (required) the queue to consume; declared (durable) when missing, used as it
                 is otherwise.
    instance     (optional) names the stream ``<connector>-<instance>`` so that several
                 processes can consume one queue for one connector.

Each delivery's body (bytes) goes through the application's source encoder to the worker.
Deliveries are consumed with manual acknowledgement and a prefetch of 10000 (or the
connector's ``max_credits`` when larger; at most 65535): the broker's count of unacknowledged
deliveries includes those the worker has received but not yet acknowledged, which a worker with
resilience does only at its next checkpoint, so a prefetch of just the credit window would let
no more than ``max_credits`` messages through per checkpoint. An encoder failure is logged and
the delivery rejected without requeue (dropped, or dead-lettered if the queue has a dead-letter
exchange); an encoder result of None is acknowledged at once.

Delivery is at-least-once. Message ids come from this program's own counter, continuing from
the worker's NOTIFY_ACK + 1 (delivery tags restart on every channel); the broker acknowledgement
follows the worker's. What the worker had not acknowledged when this program, its broker
connection or the worker went away is delivered again, so it may reach the worker twice, never
zero times. After losing RabbitMQ it reconnects (0.2 s backing off to 5 s, logged).

Logs go to stderr; the first line names the connector, the broker and the worker's address.
SIGINT and SIGTERM stop it cleanly: it ends its stream, waits up to 2 s for the worker's last
acknowledgement, passes it on to the broker and closes (the broker requeues the rest); exit
code 0. Exit code 1 means the worker refused the connector, 2 a usage or configuration error (a
bad URL, or pika missing: ``pip install 'wallaroo-py[rabbitmq]'``).

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, NamedTuple

import wallaroo
import wallaroo.experimental
import wallaroo.experimental.connector_wire_messages as cwm
from wallaroo.experimental.program import ProgramRun, UsageError, configure_logging, import_client

log = logging.getLogger("rabbitmq_source")

FIRST_DELAY = 0.2
MAX_DELAY = 5.0
STOP_GRACE = 2.0
# Deliveries held at once: waiting for credits, or sent and not yet acknowledged by the
# worker (with resilience, until its next checkpoint). Not tied to the credit window.
PREFETCH = 10_000


class Delivery(NamedTuple):
    """One message from the broker: the channel it came on (a counter) and its tag there."""

    channel: int
    tag: int
    body: bytes


class WorkerFeed(wallaroo.experimental.AtLeastOnceSourceConnector):
    """The worker's side. Its own thread pulls deliveries from ``inbox`` (``__next__``) while
    the worker grants credits, numbers them, holds them until the worker acknowledges them, then
    settles them. The hooks run in that thread (holding the connector's lock); :meth:`start`
    and :meth:`finish` in the main thread.

    Args:
        config: the application's source connector.
        stream: the stream's name and id.
        inbox: the broker's deliveries.
        settle: acknowledges (True) or rejects (False) deliveries; with ``cumulative``, the
            deliveries acknowledged are the oldest unsettled ones; callable from any thread.
        current_channel: the number of the broker channel deliveries can be settled on.
    """

    def __init__(
        self,
        config: wallaroo.experimental.SourceConnectorConfig,
        stream: tuple[str, int],
        inbox: queue.SimpleQueue[Delivery],
        settle: Callable[[list[tuple[Delivery, bool]], bool], None],
        current_channel: Callable[[], int],
    ) -> None:
        super().__init__(
            cwm.SOURCE_VERSION, config.cookie, config.name, stream[0], config.host, config.port
        )
        self.stream_name, self.stream_id = stream
        self._encode = config.encoder.encode
        self._inbox, self._settle, self._current_channel = inbox, settle, current_channel
        self._held: collections.deque[tuple[int, Delivery, bytes]] = collections.deque()
        self._replay: collections.deque[tuple[int, bytes]] = collections.deque()  # to resend
        self._next_id = 0
        self._streaming = False
        self._pulling = True
        self._ending = False
        self.ended = threading.Event()
        self.notify(self.stream_id, self.stream_name)  # sent once connected

    def __next__(self) -> cwm.Message | None:
        if self._streaming and self._pulling and self._replay:  # first what must be sent again
            return self._message(*self._replay.popleft())
        while self._streaming and self._pulling:
            try:
                delivery = self._inbox.get_nowait()
            except queue.Empty:
                return None
            if delivery.channel != self._current_channel():
                continue  # its channel is closed: the broker delivers it again
            try:
                payload = self._encode(delivery.body)
            except Exception as exc:
                log.warning("the encoder failed on a delivery (%s: %s); rejected it",
                            type(exc).__name__, exc)  # fmt: skip
                self._settle([(delivery, False)], False)
                continue
            if payload is None:
                self._settle([(delivery, True)], False)
                continue
            self._held.append((self._next_id, delivery, payload))
            self._next_id += 1
            return self._message(self._next_id - 1, payload)
        return None

    def _message(self, message_id: int, payload: bytes) -> cwm.Message:
        return cwm.Message(self.stream_id, message_id, event_time=0, key=None, message=payload)

    def _release(self, point_of_ref: int) -> None:
        """The worker has every message up to ``point_of_ref``: settle their deliveries."""
        done = []
        while self._held and self._held[0][0] <= point_of_ref:
            done.append((self._held.popleft()[1], True))
        if done:  # the oldest held; every delivery before them is settled already
            self._settle(done, True)

    def stream_opened(self, stream: wallaroo.experimental.Stream) -> None:
        """Resume after the worker's position: what it has is settled, the rest is numbered
        from its position + 1 and sent again, by :meth:`__next__` as credits allow (a write
        from a hook would not wait for credits)."""
        start = 0
        if stream.point_of_ref != cwm.NONE_SEEN:
            self._release(stream.point_of_ref)
            start = stream.point_of_ref + 1
        held = [(start + i, d, p) for i, (_, d, p) in enumerate(self._held)]
        self._held = collections.deque(held)
        self._next_id = start + len(held)
        self._replay = collections.deque((message_id, p) for message_id, _, p in held)
        self._streaming = True
        log.info(
            "connected to the worker at %s:%d: stream '%s' (id %d), next message id %d",
            self.host, self.port, self.stream_name, self.stream_id, start,
        )  # fmt: skip

    def stream_closed(self, stream: wallaroo.experimental.Stream) -> None:  # noqa: ARG002
        """The worker connection is gone: stop pulling until the stream is open again."""
        self._streaming = False

    def stream_acked(self, stream: wallaroo.experimental.Stream) -> None:
        """Settle what the worker acknowledged; after :meth:`finish`, note the last ACK."""
        if stream.point_of_ref != cwm.NONE_SEEN:
            self._release(stream.point_of_ref)
        if self._ending and not self._held:
            self.ended.set()

    def start(self, stop: threading.Event) -> bool:
        """Connect once the worker listens (probed first: ``connect()`` does not retry).
        Returns False if stopped first.

        Raises:
            ConnectorError: the worker refused the connector (a bad cookie).
        """
        delay, logged = 0.05, False
        while not stop.is_set():
            try:
                socket.create_connection((self.host, self.port), timeout=1.0).close()
                try:
                    self.connect()
                except wallaroo.experimental.ConnectorError:
                    socket.create_connection((self.host, self.port), timeout=1.0).close()
                    raise  # the worker is there, so it refused the connector
                return True
            except OSError:
                if not logged:
                    log.info("waiting for the worker at %s:%d; retrying", self.host, self.port)
                    logged = True
                stop.wait(delay)
                delay = min(delay * 2, 1.0)
        return False

    def finish(self, timeout: float) -> bool:
        """Stop pulling, end the stream and wait up to ``timeout`` seconds for the worker to
        acknowledge everything sent (which settles it). Any thread. Returns whether it did."""
        self._pulling = False
        self._ending = True
        try:
            self.end_of_stream(self.stream_id)
        except wallaroo.experimental.ProtocolError:
            return False  # not connected: nothing more will be acknowledged
        return self.ended.wait(timeout)


class Broker:
    """The broker's side, run in the main thread (pika's BlockingConnection is not
    thread-safe): consumes into ``inbox`` and settles deliveries that :meth:`settle` queued.

    Args:
        pika_module: the imported ``pika`` package.
        parameters: the connection parameters (from the AMQP URL).
        queue_name: the queue to consume.
        prefetch: how many unacknowledged deliveries the broker may hand over.
        inbox: where deliveries go.
        stop: set by SIGINT/SIGTERM.

    Attributes:
        wake: called (in the broker's thread) after each turn of the loop that delivered
            something, so that the worker's side sends it at once.
    """

    def __init__(
        self,
        pika_module: ModuleType,
        parameters: Any,
        queue_name: str,
        prefetch: int,
        inbox: queue.SimpleQueue[Delivery],
        stop: threading.Event,
    ) -> None:
        self.pika, self.parameters, self.queue = pika_module, parameters, queue_name
        self.address = f"{parameters.host}:{parameters.port}"
        self.prefetch, self.inbox, self.stop = prefetch, inbox, stop
        self.channel_number = 0
        self.consumed = False
        self._settled: queue.SimpleQueue[tuple[list[tuple[Delivery, bool]], bool]]
        self._settled = queue.SimpleQueue()
        self._connection: Any = None
        self._channel: Any = None
        self._cancelled = False
        self._delivered = False
        self.wake: Callable[[], None] = lambda: None

    def settle(self, items: list[tuple[Delivery, bool]], cumulative: bool = False) -> None:
        """Queue acknowledgements (True) or rejections (False); wake the broker's thread.
        ``cumulative``: ``items`` are acknowledgements, and every delivery of their channel
        older than the last of them is settled (now or before), so one AMQP ack with
        ``multiple`` settles them all (the worker's acknowledgements cover hundreds of
        deliveries: one ack each would hold up the deliveries behind them). Callable from any
        thread."""
        self._settled.put((items, cumulative))
        connection = self._connection
        if connection is not None:
            # The loop settles at least every 0.1 s anyway: a failed wake-up is harmless.
            with contextlib.suppress(Exception):
                connection.add_callback_threadsafe(self._drain)

    def run(self, alive: Callable[[], bool]) -> None:
        """Consume until ``stop`` is set or ``alive()`` is false, reconnecting (logged) after
        losing the broker."""
        errors = (self.pika.exceptions.AMQPError, OSError)
        delay = FIRST_DELAY
        while not self.stop.is_set() and alive():
            try:
                self._open(again=self.consumed)
                delay = FIRST_DELAY
                while not self.stop.is_set() and alive():
                    self._connection.process_data_events(time_limit=0.1)  # returns on events
                    if self._delivered:
                        self._delivered = False
                        self.wake()
                    self._drain()
                    if self._cancelled:
                        raise ConnectionError("the broker cancelled the consumer")
            except errors as exc:
                self._discard()
                log.warning(
                    "%s RabbitMQ at %s (%s: %s); retrying in %.1f s%s",
                    "lost" if self.consumed else "cannot reach", self.address,
                    type(exc).__name__, exc, delay,
                    "; unacknowledged deliveries will come again" if self.consumed else "",
                )  # fmt: skip
                self.stop.wait(delay)
                delay = min(delay * 2, MAX_DELAY)

    def _open(self, *, again: bool) -> None:
        connection = self.pika.BlockingConnection(self.parameters)
        self._connection = connection
        channel = connection.channel()
        try:
            channel.queue_declare(self.queue, passive=True)
        except self.pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            channel = connection.channel()
            channel.queue_declare(self.queue, durable=True)
            log.info("declared the missing queue '%s' (durable)", self.queue)
        channel.basic_qos(prefetch_count=self.prefetch)
        self.channel_number += 1
        number, inbox = self.channel_number, self.inbox

        def deliver(_channel: Any, method: Any, _properties: Any, body: bytes) -> None:
            inbox.put(Delivery(number, method.delivery_tag, body))
            self._delivered = True

        channel.basic_consume(self.queue, deliver, auto_ack=False)
        channel.add_on_cancel_callback(self._on_cancel)
        self._channel, self._cancelled, self.consumed = channel, False, True
        log.info("consuming queue '%s' at RabbitMQ %s (prefetch %d)%s", self.queue,
                 self.address, self.prefetch, " again" if again else "")  # fmt: skip

    def _on_cancel(self, _frame: Any) -> None:
        self._cancelled = True  # the queue was deleted: reconnect, which declares it again

    def _drain(self) -> None:
        """Settle what was queued (broker's thread only); deliveries of a closed channel are
        skipped: the broker delivers them again."""
        channel, number = self._channel, self.channel_number
        while True:
            try:
                items, cumulative = self._settled.get_nowait()
            except queue.Empty:
                return
            if channel is None or not channel.is_open:
                continue
            current = [(d, ok) for d, ok in items if d.channel == number]
            if cumulative and current:
                channel.basic_ack(current[-1][0].tag, multiple=True)
                continue
            for delivery, ok in current:
                if ok:
                    channel.basic_ack(delivery.tag)
                else:
                    channel.basic_nack(delivery.tag, requeue=False)

    def _discard(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self.channel_number += 1  # whatever is still held or queued belongs to a dead channel
        if connection is not None and connection.is_open:
            with contextlib.suppress(self.pika.exceptions.AMQPError, OSError):
                connection.close()

    def close(self) -> None:
        """Settle what is queued, then close; the broker requeues what is unacknowledged."""
        errors = (self.pika.exceptions.AMQPError, OSError)
        if self._connection is not None:
            with contextlib.suppress(*errors):
                self._drain()
                self._connection.close()
        self._connection = self._channel = None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    logging.getLogger("pika").setLevel(logging.CRITICAL)  # its failures are reported below
    stop = threading.Event()
    args = list(sys.argv if argv is None else argv)
    with ProgramRun(log, stop=stop) as run:  # a signal sets ``stop``: the broker loop returns
        pika_module = import_client(
            "pika", "rabbitmq", "the RabbitMQ client library pika is missing ({error}); "
            "install it with: {install}",
        )  # fmt: skip
        # Used only to read the command line and the application's settings: this program
        # needs the acknowledgements as they come, which AtLeastOnceSourceConnector gives.
        source = wallaroo.experimental.SourceConnector(args, required_params=["amqpurl", "queue"])
        config, params = source.config, source.params
        try:
            parameters = pika_module.URLParameters(params.amqpurl)
        except (ValueError, pika_module.exceptions.AMQPError) as exc:
            raise UsageError(f"--{config.name}-amqpurl is not an AMQP URL: {exc}") from exc
        parameters.connection_attempts, parameters.socket_timeout = 1, 5
        inbox: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        prefetch = min(max(config.max_credits, PREFETCH), 65535)  # AMQP's limit
        broker = Broker(pika_module, parameters, params.queue, prefetch, inbox, stop)
        feed = WorkerFeed(config, (source.stream_name, source.stream_id), inbox, broker.settle,
                          lambda: broker.channel_number)  # fmt: skip
        broker.wake = feed.wake  # deliveries are sent at once, not at the feed's next poll
        # On exit, the last registered first: end the stream and wait for the worker's last
        # acknowledgements, pass them on to the broker and close it, close the worker's side.
        run.callback(feed.shutdown)
        run.callback(broker.close)
        run.callback(feed.finish, STOP_GRACE)
        log.info(
            "rabbitmq_source for connector '%s': consuming queue '%s' at RabbitMQ %s (vhost "
            "'%s'), sending to the worker at %s:%d", config.name, params.queue, broker.address,
            parameters.virtual_host, config.host, config.port,
        )  # fmt: skip
        if feed.start(stop):
            broker.run(alive=lambda: feed.join(0) is None)
        error = feed.join(0)
        if error is not None:
            log.error("the connection to the worker failed: %s", error)
            return 1
        return 0
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
