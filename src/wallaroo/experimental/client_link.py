"""The parts of a source connector below its API: one blocking TCP connection to a worker,
carrying a sans-IO :class:`~wallaroo.protocol.client_session.ClientSession`, and the messages
held until the worker acknowledges them.

:meth:`ClientLink.open` connects (retrying while the worker is not up, if asked to) and does the
HELLO/OK handshake; the connector then writes frames the session made with :meth:`ClientLink.send`
and turns the worker's bytes into events with :meth:`ClientLink.poll` or :meth:`ClientLink.read`.
A lost connection surfaces as :class:`LinkLostError`, whatever the socket said.
:class:`Held` numbers the messages and builds their frames; it does no I/O.
"""

from __future__ import annotations

import itertools
import logging
import selectors
import socket
import threading
import time

from wallaroo.errors import ConnectorError, UnexpectedSocketError
from wallaroo.protocol.client_session import ClientSession
from wallaroo.protocol.events import (
    Accepted,
    ClientEvent,
    NotifyAcked,
    Rejected,
    RestartRequested,
)
from wallaroo.protocol.frames import NONE_SEEN, SOURCE_VERSION
from wallaroo.protocol.stream_registry import stream_id_for

__all__ = ["ClientLink", "Held", "LinkLostError", "connect_stream", "stream_id_for"]

log = logging.getLogger("wallaroo.connector")

FIRST_RETRY_DELAY = 0.05
MAX_RETRY_DELAY = 1.0
RECV_SIZE = 256 * 1024


class LinkLostError(UnexpectedSocketError):
    """The connection to the worker is gone (closed, reset, or never completed its handshake)."""


class ClientLink:
    """One handshaken connection to a worker's connector source.

    Not thread-safe: one thread uses a link at a time. Any exception escaping :meth:`send` marks
    the link :attr:`broken` (part of a frame may have been written), after which only
    :meth:`close` makes sense.
    """

    def __init__(self, sock: socket.socket, session: ClientSession, host: str, port: int) -> None:
        self.sock = sock
        self.session = session
        self.host = host
        self.port = port
        self.broken = False
        self._selector = selectors.DefaultSelector()
        self._selector.register(sock, selectors.EVENT_READ)

    @property
    def address(self) -> str:
        """``host:port`` of the worker."""
        return f"{self.host}:{self.port}"

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        *,
        cookie: str,
        program_name: str,
        instance_name: str,
        version: str = SOURCE_VERSION,
        retry: bool = True,
        timeout: float | None = None,
        stop: threading.Event | None = None,
        handshake_timeout: float = 10.0,
    ) -> ClientLink:
        """Connect to ``host:port`` and complete the HELLO/OK handshake.

        Args:
            retry: keep trying (every 0.05 s, backing off to 1 s) while the connection is
                refused or the handshake does not complete; one log line says it is waiting.
            timeout: give up retrying after this many seconds (None: never).
            stop: give up as soon as this event is set.
            handshake_timeout: seconds to wait for the worker's OK on one attempt.

        Raises:
            ConnectorError: the worker answered ERROR (bad cookie or version: never retried), or
                the connection failed and ``retry`` is False, or ``timeout`` passed.
            LinkLostError: ``stop`` was set.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = FIRST_RETRY_DELAY
        waiting_logged = False
        while True:
            if stop is not None and stop.is_set():
                raise LinkLostError(f"stopped while connecting to the worker at {host}:{port}")
            try:
                return cls._attempt(
                    host,
                    port,
                    ClientSession(version, cookie, program_name, instance_name),
                    handshake_timeout,
                )
            except LinkLostError as exc:
                reason = exc
            if not retry:
                raise ConnectorError(f"cannot connect to the worker at {host}:{port}: {reason}")
            if deadline is not None and time.monotonic() + delay > deadline:
                raise ConnectorError(
                    f"the worker at {host}:{port} did not accept a connection within "
                    f"{timeout} s (last error: {reason}); is it running?"
                )
            if not waiting_logged:
                log.info("waiting for the worker at %s:%d (%s); retrying", host, port, reason)
                waiting_logged = True
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)

    @classmethod
    def _attempt(
        cls, host: str, port: int, session: ClientSession, handshake_timeout: float
    ) -> ClientLink:
        try:
            sock = socket.create_connection((host, port), timeout=handshake_timeout)
        except OSError as exc:
            raise LinkLostError(exc.strerror or str(exc)) from exc
        link = cls(sock, session, host, port)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(None)
            link.send(session.hello())
            deadline = time.monotonic() + handshake_timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LinkLostError(f"no answer to HELLO within {handshake_timeout} s")
                for event in link.poll(remaining):
                    if isinstance(event, Accepted):
                        return link
                    if isinstance(event, Rejected):
                        raise ConnectorError(
                            f"the worker at {host}:{port} refused the connector: {event.message}"
                        )
        except BaseException:
            link.close()
            raise

    def open_stream(
        self, stream_id: int, name: str, point_of_ref: int, *, refused_for: float = 10.0
    ) -> int | None:
        """NOTIFY a stream and wait for the worker to accept it, re-sending the NOTIFY every
        0.2 s while it is refused (held by another connection that may be closing).

        Returns:
            The NOTIFY_ACK's point of reference (2**64-1: the worker has seen nothing of the
            stream), or None if the stream was still refused after ``refused_for`` seconds.

        Raises:
            LinkLostError: the connection was lost, the worker asked for a restart, or it did
                not answer the NOTIFY within 10 s.
            ConnectorError: the worker answered ERROR.
        """
        refused_since: float | None = None
        while True:
            self.send(self.session.notify(stream_id, name, point_of_ref))
            ack = self._notify_ack(stream_id)
            if ack.success:
                return ack.point_of_ref
            now = time.monotonic()
            if refused_since is None:
                refused_since = now
                log.info("stream '%s' is held by another connection; retrying", name)
            elif now - refused_since > refused_for:
                return None
            self.poll(0.2)

    def _notify_ack(self, stream_id: int) -> NotifyAcked:
        deadline = time.monotonic() + 10.0
        while (remaining := deadline - time.monotonic()) > 0:
            for event in self.poll(remaining):
                if isinstance(event, NotifyAcked) and event.stream_id == stream_id:
                    return event
                if isinstance(event, RestartRequested):
                    raise LinkLostError("the worker asked for a restart")
                if isinstance(event, Rejected):
                    raise ConnectorError(f"the worker refused the stream: {event.message}")
        raise LinkLostError(f"no answer to NOTIFY from the worker at {self.address} in 10 s")

    def send(self, data: bytes) -> None:
        """Write all of ``data``; blocks while the worker is not reading (TCP backpressure).

        Raises:
            LinkLostError: the connection failed; the link is broken.
        """
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.broken = True
            raise LinkLostError(
                f"lost the connection to the worker at {self.address}: {exc}"
            ) from exc
        except BaseException:
            self.broken = True
            raise

    def poll(self, timeout: float | None) -> list[ClientEvent]:
        """Wait up to ``timeout`` seconds (None: forever) for the worker's bytes; return the
        events they make (an empty list on timeout).

        Raises:
            LinkLostError: the worker closed or reset the connection.
            ProtocolError: the worker broke the protocol; the session is closed.
        """
        if not self._selector.select(timeout):
            return []
        return self.read()

    def read(self) -> list[ClientEvent]:
        """Read what the socket holds (call when it is readable) and return the events.

        Raises:
            LinkLostError: the worker closed or reset the connection.
            ProtocolError: the worker broke the protocol; the session is closed.
        """
        try:
            data = self.sock.recv(RECV_SIZE)
        except OSError as exc:
            raise LinkLostError(
                f"lost the connection to the worker at {self.address}: {exc}"
            ) from exc
        if not data:
            raise LinkLostError(f"the worker at {self.address} closed the connection")
        return self.session.receive(data)

    def close(self) -> None:
        """Close the socket. Idempotent."""
        self._selector.close()
        self.sock.close()


def connect_stream(
    host: str,
    port: int,
    *,
    cookie: str,
    program_name: str,
    stream: tuple[int, str],
    point_of_ref: int,
    timeout: float | None,
    stop: threading.Event,
) -> tuple[ClientLink, int]:
    """Open a link to the worker (:meth:`ClientLink.open`, named after the stream) and the
    ``(stream id, name)`` on it, starting again while the connection is lost meanwhile.

    Returns:
        The link and the NOTIFY_ACK's point of reference (where to resume).

    Raises:
        ConnectorError: as :meth:`ClientLink.open`, or the stream stays held by another
            connection.
        LinkLostError: ``stop`` was set.
    """
    stream_id, name = stream
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.01)
        link = ClientLink.open(
            host,
            port,
            cookie=cookie,
            program_name=program_name,
            instance_name=name,
            timeout=remaining,
            stop=stop,
        )
        try:
            acked = link.open_stream(stream_id, name, point_of_ref)
            if acked is None:
                raise ConnectorError(
                    f"stream '{name}' is fed by another connection; give each process its "
                    f"own --{program_name}-instance"
                )
        except LinkLostError as exc:
            link.close()
            log.info("lost the worker while opening the stream (%s); retrying", exc)
            stop.wait(0.2)
            continue
        except BaseException:
            link.close()
            raise
        return link, acked


class Held:
    """The messages of one stream that the worker has not acknowledged yet, in id order.

    Three parallel lists (no object per message): message ``i`` has the id ``first_id + i``,
    its payload, event time and key. The first :attr:`sent` of them went out on the current
    connection and wait for an ACK; the others (:attr:`pending`) wait to be sent.
    """

    __slots__ = ("event_times", "first_id", "keys", "payloads", "sent")

    def __init__(self) -> None:
        self.first_id = 0
        self.sent = 0
        self.payloads: list[bytes] = []
        self.event_times: list[int] = []
        self.keys: list[bytes | None] = []

    def __len__(self) -> int:
        return len(self.payloads)

    @property
    def pending(self) -> int:
        """Messages not sent on the current connection."""
        return len(self.payloads) - self.sent

    @property
    def next_id(self) -> int:
        """The id the next message added gets."""
        return self.first_id + len(self.payloads)

    def append(self, payload: bytes, event_time: int, key: bytes | None) -> None:
        """Add one message, pending."""
        self.payloads.append(payload)
        self.event_times.append(event_time)
        self.keys.append(key)

    def extend(self, payloads: list[bytes], event_time: int, key: bytes | None) -> None:
        """Add messages sharing an event time and a key, pending."""
        self.payloads += payloads
        self.event_times += itertools.repeat(event_time, len(payloads))
        self.keys += itertools.repeat(key, len(payloads))

    def frames(self, session: ClientSession, stream_id: int, count: int) -> bytes:
        """Return the MESSAGE frames of the next ``count`` pending messages (one credit each
        from ``session``), which count as sent from now on.

        Raises:
            ProtocolError: the stream is not open on ``session``.
            FrameError: a message does not fit its frame; nothing counts as sent.
        """
        start = self.sent
        stop = start + count
        payloads = self.payloads[start:stop]
        times = self.event_times[start:stop]
        keys = self.keys[start:stop]
        first = self.first_id + start
        if times.count(times[0]) == count and keys.count(keys[0]) == count:
            data = session.message_run(stream_id, first, payloads, times[0], keys[0])
        else:  # one run of frames per sequence of messages sharing their time and key
            parts = []
            index = 0
            for (event_time, key), group in itertools.groupby(zip(times, keys, strict=True)):
                size = sum(1 for _ in group)
                run = payloads[index : index + size]
                parts.append(session.message_run(stream_id, first + index, run, event_time, key))
                index += size
            data = b"".join(parts)
        self.sent = stop
        return data

    def acked(self, point_of_ref: int) -> None:
        """Forget the sent messages up to and including the id ``point_of_ref``."""
        if point_of_ref == NONE_SEEN:
            return
        count = min(point_of_ref - self.first_id + 1, self.sent)
        if count > 0:
            self._drop(count)
            self.sent -= count

    def unsend(self) -> None:
        """The connection is gone: every held message is pending again."""
        self.sent = 0

    def resume_at(self, point_of_ref: int) -> None:
        """A new connection resumes after ``point_of_ref`` (the worker's NOTIFY_ACK): drop what
        the worker has, and number what is left from there (from 0 for NONE_SEEN)."""
        self.sent = 0
        if point_of_ref == NONE_SEEN:
            self.first_id = 0
            return
        self._drop(min(max(point_of_ref + 1 - self.first_id, 0), len(self.payloads)))
        self.first_id = point_of_ref + 1

    def _drop(self, count: int) -> None:
        del self.payloads[:count]
        del self.event_times[:count]
        del self.keys[:count]
        self.first_id += count
