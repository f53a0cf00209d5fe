"""``SourceConnector``: the seed's one-stream source connector client.

A connector program builds one, calls :meth:`SourceConnector.connect` and then
:meth:`SourceConnector.write` for every external record. The settings (address, cookie, credits,
encoder) come from the application module named by ``--application-module``; the connector's
name from ``--connector``.

Delivery: every message is held until the worker acknowledges it. After a lost connection or a
RESTART the connector reconnects, re-notifies its stream and sends again, in order, every held
message the worker's NOTIFY_ACK does not cover (the worker drops duplicates by message id). So
nothing is lost while this process runs; messages held when the process dies are lost.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from wallaroo.decorators import to_bytes
from wallaroo.errors import ConnectorError
from wallaroo.experimental.client_args import param_list, parse_connector_args
from wallaroo.experimental.client_link import ClientLink, LinkLostError, log, stream_id_for
from wallaroo.experimental.discovery import find_source_connector
from wallaroo.protocol.client_session import ClientSession
from wallaroo.protocol.events import Acked, Rejected, RestartRequested
from wallaroo.protocol.frames import MAX_FRAME_SIZE, NONE_SEEN

__all__ = ["SourceConnector", "SourceConnectorStatistics"]

_Entry = tuple[bytes, int, bytes | None]  # payload, event time, key


@dataclass(frozen=True, slots=True)
class SourceConnectorStatistics:
    """A snapshot of a :class:`SourceConnector`."""

    connector: str
    stream_name: str
    stream_id: int
    address: str
    connected: bool
    next_message_id: int
    unacked: int
    pending: int
    credits: int
    messages_written: int
    reconnects: int


def _key_bytes(key: Any) -> bytes | None:
    if key is None or type(key) is bytes:
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, bytearray | memoryview):
        return bytes(key)
    raise TypeError(f"a message key must be str, bytes or None, got {type(key).__name__}")


class SourceConnector:
    """The source side of a connector program: sends values to the worker as one stream.

    Args:
        args: the command line (``sys.argv`` when None or empty); it is also what the app's
            ``application_setup(args)`` receives.
        required_params: names of ``--<connector>-<name>`` parameters that must be given.
        optional_params: names of parameters that may be given. ``instance`` is always
            accepted: ``--<connector>-instance NAME`` names the stream ``<connector>-NAME`` so
            several processes can feed one connector.
        max_unacked: how many messages may wait for the worker's acknowledgement before
            :meth:`write` blocks (raised to twice the connector's ``max_credits`` if lower).

    Attributes:
        params: the parsed parameters (``params.application``, ``params.connector_name``, one
            attribute per parameter).
        config: the application's :class:`~wallaroo.configs.SourceConnectorConfig`.
        stream_name: the stream's name; ``stream_id`` its id (first 8 bytes, big-endian, of the
            SHA-256 of the name).

    Raises:
        SystemExit: a required parameter is missing (argparse's usage message, exit code 2).
        ConfigurationError: the application module cannot be loaded or has no source connector
            named by ``--connector``.

    Not thread-safe: use one connector from one thread (the one that writes). The connector
    reads the worker's ACKs and RESTARTs itself, inside :meth:`write`; call :meth:`poll` while
    idle so a lost worker is noticed without waiting for the next write.
    """

    def __init__(
        self,
        args: Sequence[str] | None = None,
        required_params: Iterable[str] = (),
        optional_params: Iterable[str] = (),
        *,
        max_unacked: int = 65536,
    ) -> None:
        argv = list(args or sys.argv)  # as the original: an empty list means sys.argv too
        required = param_list(required_params, "required_params")
        optional = param_list(optional_params, "optional_params")
        if "instance" not in required and "instance" not in optional:
            optional.append("instance")
        self.params = parse_connector_args(argv, required, optional)
        self.config = find_source_connector(
            self.params.application, self.params.connector_name, argv
        )
        instance = getattr(self.params, "instance", None)
        self.stream_name = f"{self.config.name}-{instance}" if instance else self.config.name
        self.stream_id = stream_id_for(self.stream_name)
        self._encoder = self.config.encoder
        self._limit = max(int(max_unacked), 2 * self.config.max_credits)
        self._host = self.config.host
        self._port = self.config.port
        self._link: ClientLink | None = None
        self._unacked: deque[_Entry] = deque()  # sent, not yet acknowledged
        self._pending: deque[_Entry] = deque()  # not sent on the current connection
        self._first_id = 0  # message id of _unacked[0] (then _pending[0] follows them)
        self._ever_sent = False
        self._closing = False
        self._eos_sent = False
        self._eos_acked = False
        self._written = 0
        self._reconnects = 0

    # -- public API -------------------------------------------------------------------------
    def connect(
        self, host: str | None = None, port: int | None = None, *, timeout: float | None = None
    ) -> None:
        """Connect to the worker, complete the handshake and open the stream.

        Retries (0.05 s, backing off to 1 s, one log line) while the worker is not up. The
        first message id is the NOTIFY_ACK's point of reference + 1 (0 for a stream the worker
        has not seen). Connecting again moves to the new address and re-sends what is held.

        Args:
            host: overrides the connector's host from the application.
            port: overrides its port.
            timeout: give up after this many seconds (None: keep trying).

        Raises:
            ConnectorError: the worker refused the connector (bad cookie), the stream stays
                held by another connection, the connector is closed, or ``timeout`` passed.
        """
        if self._closing:
            raise ConnectorError("this source connector is closed; create a new one")
        if self._link is not None:
            self._drop_link()
        self._host = host or self.config.host
        self._port = self.config.port if port is None else int(port)
        self._establish(timeout)
        self._flush()

    def write(self, message: Any, event_time: int = 0, key: str | bytes | None = None) -> None:
        """Encode ``message`` with the application's encoder and send it.

        Returns once the message is handed to the socket. Blocks while the worker grants no
        credits, while ``max_unacked`` messages wait for acknowledgement, and while the
        connection is being re-established after a loss or a RESTART (held messages are then
        sent again first). An encoder result of None sends nothing; a ``str`` is sent as UTF-8.

        Args:
            message: the value to send.
            event_time: milliseconds since the Unix epoch; 0 means "not given".
            key: the routing key (``str`` as UTF-8, or bytes); None for none.

        Raises:
            ConnectorError: not connected (call :meth:`connect`), closed, the worker answered
                ERROR, or the encoded message is too large for one frame.
            TypeError: the encoder returned something other than bytes, str or None, or the
                key is not str or bytes.
        """
        payload = self._encode(message)
        if payload is not None:
            self._submit([payload], int(event_time), _key_bytes(key))

    def write_many(
        self, messages: Iterable[Any], event_time: int = 0, key: str | bytes | None = None
    ) -> int:
        """Like :meth:`write` for many messages sharing ``event_time`` and ``key``, sent in as
        few socket writes as credits allow. Returns the number of messages sent."""
        payloads = [p for p in map(self._encode, messages) if p is not None]
        self._submit(payloads, int(event_time), _key_bytes(key))
        return len(payloads)

    def poll(self, timeout: float = 0.0) -> None:
        """Handle what the worker sent, for up to ``timeout`` seconds, without writing.

        Call it while there is nothing to write: ACKs free held messages, and a worker that
        went away (a crash, a RESTART) is noticed at once, reconnected to, and sent again what
        it had not acknowledged, instead of at the next :meth:`write`. Blocks while the worker
        is down.

        Raises:
            ConnectorError: the worker answered ERROR.
        """
        if self._closing or self._link is None:
            return
        self._service(timeout)
        self._flush()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is pending, end the stream (EOS) and wait up to ``timeout`` seconds for the
        worker's acknowledgement, then close the connection. Never reconnects; messages still
        unacknowledged then are reported in a warning log line (they may be lost).
        Idempotent."""
        if self._closing:
            return
        self._closing = True
        link = self._link
        if link is None:
            return
        deadline = time.monotonic() + timeout
        try:
            if not link.broken:
                self._flush(deadline)
                link.send(link.session.eos(self.stream_id))
                self._eos_sent = True
                while self._unacked or not self._eos_acked:
                    self._service(max(deadline - time.monotonic(), 0.0), deadline)
        except (ConnectorError, TimeoutError) as exc:
            log.warning("closing stream '%s': %s", self.stream_name, exc)
        finally:
            held = len(self._unacked) + len(self._pending)
            if held:
                log.warning(
                    "closed stream '%s' with %d messages the worker has not acknowledged",
                    self.stream_name,
                    held,
                )
            self._drop_link()

    def statistics(self) -> SourceConnectorStatistics:
        """Return a snapshot of the connector's counters."""
        link = self._link
        return SourceConnectorStatistics(
            connector=self.config.name,
            stream_name=self.stream_name,
            stream_id=self.stream_id,
            address=f"{self._host}:{self._port}",
            connected=link is not None and not link.broken,
            next_message_id=self._next_id,
            unacked=len(self._unacked),
            pending=len(self._pending),
            credits=link.session.credits if link is not None else 0,
            messages_written=self._written,
            reconnects=self._reconnects,
        )

    def __enter__(self) -> SourceConnector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------------
    @property
    def _next_id(self) -> int:
        return self._first_id + len(self._unacked) + len(self._pending)

    def _encode(self, message: Any) -> bytes | None:
        payload = to_bytes(self._encoder.encode(message))
        if payload is not None and len(payload) > MAX_FRAME_SIZE - 64 * 1024:
            raise ConnectorError(
                f"a message of {len(payload)} bytes is too large for one frame "
                f"(at most {MAX_FRAME_SIZE - 64 * 1024}); split it"
            )
        return payload

    def _live_link(self) -> ClientLink:
        if self._link is None:
            raise ConnectorError("the source connector is not connected; call connect() first")
        return self._link

    def _submit(self, payloads: list[bytes], event_time: int, key: bytes | None) -> None:
        if self._closing:
            raise ConnectorError("this source connector is closed; create a new one")
        self._live_link()
        done = 0
        while done < len(payloads):
            room = self._limit - len(self._unacked) - len(self._pending)
            if room <= 0:
                self._flush()
                self._service(1.0)
                continue
            chunk = payloads[done : done + room]
            self._pending.extend((p, event_time, key) for p in chunk)
            done += len(chunk)
            self._flush()
        self._written += len(payloads)

    def _flush(self, deadline: float | None = None) -> None:
        """Send every pending message as credits allow, reading ACKs when they run out."""
        while self._pending:
            link = self._live_link()
            credits = link.session.credits
            if credits <= 0:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("the worker granted no credits in time")
                self._service(1.0 if deadline is None else deadline - time.monotonic(), deadline)
                continue
            first = self._first_id + len(self._unacked)
            batch = [self._pending.popleft() for _ in range(min(credits, len(self._pending)))]
            data = self._frames(link.session, first, batch)
            self._unacked.extend(batch)  # held before sending: a failed send is replayed
            self._ever_sent = True
            try:
                link.send(data)
            except LinkLostError as exc:
                self._reconnect(str(exc))
                continue
            self._service(0.0, deadline)

    def _frames(self, session: ClientSession, first: int, batch: list[_Entry]) -> bytes:
        parts: list[bytes] = []
        ids = itertools.count(first)
        for (event_time, key), group in itertools.groupby(batch, key=lambda e: (e[1], e[2])):
            items = [(next(ids), entry[0]) for entry in group]
            parts.append(session.messages(self.stream_id, items, event_time, key))
        return b"".join(parts)

    # -- the worker's side ------------------------------------------------------------------
    def _service(self, timeout: float, deadline: float | None = None) -> None:
        """Handle what the worker sent within ``timeout`` seconds (ACKs, RESTART, ERROR)."""
        link = self._live_link()
        try:
            events = link.poll(max(timeout, 0.0))
        except LinkLostError as exc:
            self._reconnect(str(exc))
            return
        for event in events:
            if isinstance(event, Acked):
                self._prune(event.acks)
            elif isinstance(event, RestartRequested):
                self._reconnect("the worker asked for a restart", event.address)
                return
            elif isinstance(event, Rejected):
                self._drop_link()
                raise ConnectorError(f"the worker closed the connection: {event.message}")
        if deadline is not None and time.monotonic() >= deadline and self._closing:
            raise TimeoutError("the worker did not acknowledge the end of the stream in time")

    def _prune(self, acks: tuple[tuple[int, int], ...]) -> None:
        for stream_id, point_of_ref in acks:
            if stream_id != self.stream_id:
                continue
            if self._eos_sent:
                self._eos_acked = True
            if point_of_ref == NONE_SEEN:
                continue
            count = min(point_of_ref - self._first_id + 1, len(self._unacked))
            if count > 0:
                for _ in range(count):
                    self._unacked.popleft()
                self._first_id += count

    # -- (re)connecting ---------------------------------------------------------------------
    def _drop_link(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
        # Nothing is known to be received on a closed connection: hold it all for a resend.
        self._pending.extendleft(reversed(self._unacked))
        self._unacked.clear()

    def _reconnect(self, reason: str, address: str = "") -> None:
        self._drop_link()
        if self._closing:
            raise LinkLostError(reason)
        if address:
            host, _, port = address.rpartition(":")
            self._host, self._port = host or self._host, int(port)
        self._reconnects += 1
        log.warning("%s; reconnecting to the worker at %s:%d", reason, self._host, self._port)
        self._establish(None)

    def _establish(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.01)
            link = ClientLink.open(
                self._host,
                self._port,
                cookie=self.config.cookie,
                program_name=self.config.name,
                instance_name=self.stream_name,
                timeout=remaining,
            )
            try:
                advisory = self._next_id - 1 if self._ever_sent and self._next_id else NONE_SEEN
                point_of_ref = link.open_stream(self.stream_id, self.stream_name, advisory)
                if point_of_ref is None:
                    raise ConnectorError(
                        f"stream '{self.stream_name}' is fed by another connection; give each "
                        f"process its own --{self.config.name}-instance"
                    )
            except LinkLostError as exc:
                link.close()
                log.info("lost the worker while opening the stream (%s); retrying", exc)
                time.sleep(0.2)
                continue
            except BaseException:
                link.close()
                raise
            self._link = link
            self._resume_at(point_of_ref)
            where = f"{self._host}:{self._port}: stream '{self.stream_name}' (id {self.stream_id})"
            log.info("connected to the worker at %s, next message id %d", where, self._next_id)
            return

    def _resume_at(self, point_of_ref: int) -> None:
        """Renumber what is held from the worker's position: drop what it already has."""
        held = list(self._unacked) + list(self._pending)
        if point_of_ref == NONE_SEEN:
            start = 0
        else:
            start = point_of_ref + 1
            held = held[min(max(start - self._first_id, 0), len(held)) :]
        self._unacked.clear()
        self._pending = deque(held)
        self._first_id = start
