"""``SourceStream``: one source stream's connection to the worker, under a ``SourceConnector``.

It holds every message the worker has not acknowledged (a
:class:`~wallaroo.experimental.client_link.Held`), sends the pending ones as the worker's
credits allow, handles what the worker sends back (ACK frees held messages, RESTART moves and
reconnects, ERROR raises) and, after a lost connection, reconnects, re-notifies the stream and
makes every held message the NOTIFY_ACK does not cover pending again.

It is not thread-safe: :class:`~wallaroo.experimental.source_connector.SourceConnector`, which
buffers the application's writes in front of it, calls it with its lock held.
"""

from __future__ import annotations

import threading
import time

from wallaroo.errors import ConnectorError
from wallaroo.experimental.client_link import ClientLink, Held, LinkLostError, connect_stream, log
from wallaroo.protocol.events import Acked, Rejected, RestartRequested
from wallaroo.protocol.frames import NONE_SEEN

__all__ = ["SourceStream"]


class SourceStream:
    """The connection of one stream to the worker, and the messages it has not acknowledged.

    Args:
        cookie: the connector's cookie (for HELLO).
        program_name: names the connector program in HELLO (the connector's name).
        stream_id: the stream's id; ``stream_name`` its name.
        host: the worker's address; ``port`` its port.

    Attributes:
        link: the live connection, or None (not connected, or lost).
        held: every message not yet acknowledged, in id order.
        host, port: where the worker is (a RESTART may move it).
        closing: set by the connector when it closes: a lost connection is then not
            re-established (:class:`LinkLostError` instead), and a deadline that passes while
            waiting raises ``TimeoutError``.
        stop: set to stop connecting and waiting at once.
        reconnects: how many times a lost connection was re-established.
    """

    def __init__(
        self, cookie: str, program_name: str, stream_id: int, stream_name: str, host: str, port: int
    ) -> None:
        self.cookie, self.program_name = cookie, program_name
        self.stream_id, self.stream_name = stream_id, stream_name
        self.host, self.port = host, port
        self.link: ClientLink | None = None
        self.held = Held()
        self.stop = threading.Event()
        self.closing = False
        self.reconnects = 0
        self._ever_sent = self._eos_sent = self._eos_acked = False

    def live_link(self) -> ClientLink:
        """The connection.

        Raises:
            ConnectorError: there is none (call the connector's ``connect()`` first).
        """
        if self.link is None:
            raise ConnectorError("the source connector is not connected; call connect() first")
        return self.link

    def wait_for_room(self, limit: int) -> None:
        """Send and read ACKs until fewer than ``limit`` messages are held."""
        while len(self.held) >= limit:
            self.send_pending()
            self.service(1.0)

    def send_pending(self, deadline: float | None = None) -> None:
        """Send every pending message as credits allow, reading ACKs when they run out;
        reconnects (and sends again) when the connection is lost.

        Raises:
            TimeoutError: ``deadline`` (a ``time.monotonic()``) passed with no credits.
            ConnectorError: not connected, or the worker answered ERROR.
        """
        held = self.held
        while held.pending:
            link = self.live_link()
            credits = link.session.credits
            if credits <= 0:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("the worker granted no credits in time")
                self.service(1.0 if deadline is None else deadline - time.monotonic(), deadline)
                continue
            data = held.frames(link.session, self.stream_id, min(credits, held.pending))
            self._ever_sent = True  # the frames count as sent: a failed send is replayed
            try:
                link.send(data)
            except LinkLostError as exc:
                self.reconnect(str(exc))
                continue
            self.service(0.0, deadline)

    def end(self, timeout: float) -> None:
        """Send what is pending and the end of the stream (EOS), and wait up to ``timeout``
        seconds for the worker to acknowledge it; a failure or the timeout is logged (WARNING),
        not raised."""
        link = self.link
        if link is None or link.broken:
            return
        deadline = time.monotonic() + timeout
        try:
            self.send_pending(deadline)
            link.send(link.session.eos(self.stream_id))
            self._eos_sent = True
            while self.held or not self._eos_acked:
                self.service(max(deadline - time.monotonic(), 0.0), deadline)
        except (ConnectorError, TimeoutError) as exc:
            log.warning("closing stream '%s': %s", self.stream_name, exc)

    def service(self, timeout: float, deadline: float | None = None) -> None:
        """Handle what the worker sent within ``timeout`` seconds (ACKs, RESTART, ERROR).

        Raises:
            ConnectorError: the worker answered ERROR (the connection is dropped).
            TimeoutError: while closing, ``deadline`` passed.
        """
        link = self.live_link()
        try:
            events = link.poll(max(timeout, 0.0))
        except LinkLostError as exc:
            self.reconnect(str(exc))
            return
        for event in events:
            if isinstance(event, Acked):
                for stream_id, point_of_ref in event.acks:
                    if stream_id == self.stream_id:
                        self._eos_acked = self._eos_acked or self._eos_sent
                        self.held.acked(point_of_ref)
            elif isinstance(event, RestartRequested):
                self.reconnect("the worker asked for a restart", event.address)
                return
            elif isinstance(event, Rejected):
                self.drop_link()
                raise ConnectorError(f"the worker closed the connection: {event.message}")
        if deadline is not None and time.monotonic() >= deadline and self.closing:
            raise TimeoutError("the worker did not acknowledge the end of the stream in time")

    def drop_link(self) -> None:
        """Close the connection, if any; every held message is pending again (nothing is known
        to be received on a closed connection)."""
        if self.link is not None:
            self.link.close()
            self.link = None
        self.held.unsend()

    def reconnect(self, reason: str, address: str = "") -> None:
        """Drop the connection and establish it again (at ``address``, ``host:port``, when
        given), logging ``reason``.

        Raises:
            LinkLostError: the connector is closing.
            ConnectorError: as :meth:`establish`.
        """
        self.drop_link()
        if address:
            host, _, port = address.rpartition(":")
            self.host, self.port = host or self.host, int(port)
        if self.closing:
            raise LinkLostError(reason)
        self.reconnects += 1
        log.warning("%s; reconnecting to the worker at %s:%d", reason, self.host, self.port)
        self.establish(None)

    def establish(self, timeout: float | None) -> None:
        """Connect, complete the handshake and open the stream, resuming the held messages at
        the NOTIFY_ACK's point of reference.

        Raises:
            ConnectorError: the worker refused the connector, the stream stays held by another
                connection, :attr:`stop` was set, or ``timeout`` passed.
        """
        next_id = self.held.next_id
        self.link, point_of_ref = connect_stream(
            self.host,
            self.port,
            cookie=self.cookie,
            program_name=self.program_name,
            stream=(self.stream_id, self.stream_name),
            point_of_ref=next_id - 1 if self._ever_sent and next_id else NONE_SEEN,
            timeout=timeout,
            stop=self.stop,
        )
        self.held.resume_at(point_of_ref)
        where = f"{self.host}:{self.port}: stream '{self.stream_name}' (id {self.stream_id})"
        log.info("connected to the worker at %s, next message id %d", where, self.held.next_id)
