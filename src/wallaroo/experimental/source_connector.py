"""``SourceConnector``: the seed's one-stream source connector client.

A connector program builds one, calls :meth:`SourceConnector.connect` and then
:meth:`SourceConnector.write` for every external record (or :meth:`SourceConnector.write_many`
for a batch). The settings (address, cookie, credits, encoder) come from the application module
named by ``--application-module``; the connector's name from ``--connector``.

Delivery: every message is held until the worker acknowledges it. After a lost connection or a
RESTART the connector reconnects, re-notifies its stream and sends again, in order, every held
message the worker's NOTIFY_ACK does not cover (the worker drops duplicates by message id). So
nothing is lost while this process runs; messages held when the process dies are lost.

Buffering: :meth:`~SourceConnector.write` gathers messages for up to ``linger`` seconds (1 ms by
default) and sends them with one socket write, which costs a few microseconds per message
instead of a system call per message; see its docstring for exactly when a message is sent.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from wallaroo.decorators import Encoder, to_bytes
from wallaroo.errors import ConnectorError
from wallaroo.experimental.client_args import param_list, parse_connector_args
from wallaroo.experimental.client_link import ClientLink, LinkLostError, log, stream_id_for
from wallaroo.experimental.discovery import find_source_connector
from wallaroo.experimental.source_stream import SourceStream
from wallaroo.protocol.frames import MAX_FRAME_SIZE

__all__ = ["SourceConnector", "SourceConnectorStatistics"]

MAX_PAYLOAD = MAX_FRAME_SIZE - 64 * 1024
BUFFER_MESSAGES = 1024  # write() sends its buffer once it holds this many messages
BUFFER_BYTES = 64 * 1024  # ... or this many payload bytes
EXIT_FLUSH_TIMEOUT = 5.0  # seconds the interpreter's exit may wait to send what is buffered


@dataclass(frozen=True, slots=True)
class SourceConnectorStatistics:
    """A snapshot of a :class:`SourceConnector`. ``pending`` counts the held messages not sent
    on the current connection (buffered by :meth:`~SourceConnector.write`, waiting for credits,
    or to be sent again after a reconnect); ``unacked`` those sent and not yet acknowledged."""

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


def _check_size(payloads: list[bytes]) -> None:
    if payloads and max(map(len, payloads)) > MAX_PAYLOAD:
        size = max(map(len, payloads))
        raise ConnectorError(
            f"a message of {size} bytes is too large for one frame (at most {MAX_PAYLOAD}); "
            "split it"
        )


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
            With resilience the worker acknowledges at its checkpoints, so this bounds the
            rate at about ``max_unacked`` per checkpoint interval; the memory it costs is the
            held payloads (about 20 MB for 262,144 messages of 16 bytes).
        linger: the longest a message given to :meth:`write` waits in the buffer before it is
            sent, in seconds (0: :meth:`write` sends before it returns, as the seed did). A
            longer linger adds latency under a slow trickle of writes and saves nothing more
            under a fast one (the buffer then fills first).

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

    Use one connector from one thread (the one that writes); a background thread of its own
    sends what :meth:`write` buffered (every method holds a lock against it). The connector
    reads the worker's ACKs and RESTARTs while sending; call :meth:`poll` while idle so a lost
    worker is noticed without waiting for the next write.
    """

    def __init__(
        self,
        args: Sequence[str] | None = None,
        required_params: Iterable[str] | Mapping[str, str] = (),
        optional_params: Iterable[str] | Mapping[str, str] = (),
        *,
        max_unacked: int = 262_144,
        linger: float = 0.001,
    ) -> None:
        argv = list(args or sys.argv)  # as the original: an empty list means sys.argv too
        required = param_list(required_params, "required_params")
        optional = param_list(optional_params, "optional_params")
        if "instance" not in required and "instance" not in optional:
            optional.append("instance")
        self.params = parse_connector_args(
            argv, _with_help(required, required_params), _with_help(optional, optional_params)
        )
        self.config = find_source_connector(
            self.params.application, self.params.connector_name, argv
        )
        instance = getattr(self.params, "instance", None)
        self.stream_name = f"{self.config.name}-{instance}" if instance else self.config.name
        self.stream_id = stream_id_for(self.stream_name)
        encoder = self.config.encoder
        # Encoder.encode is to_bytes(fn(value)): call fn, and coerce a batch's results at once.
        self._encode_fn = encoder.fn if type(encoder) is Encoder else encoder.encode
        self._limit = max(int(max_unacked), 2 * self.config.max_credits)
        self._linger = max(float(linger), 0.0)
        # The connection and every message not yet acknowledged (used with the lock held).
        self._stream = SourceStream(
            self.config.cookie, self.config.name, self.stream_id, self.stream_name,
            self.config.host, self.config.port,
        )  # fmt: skip
        self._held = self._stream.held
        self._lock = threading.RLock()
        self._wakeup = threading.Condition(self._lock)
        self._flusher: threading.Thread | None = None
        self._buffered = self._buffered_bytes = 0  # written by write() since the last flush
        self._buffered_since: float | None = None  # when the oldest of them was written
        self._failure: Exception | None = None  # the flusher's error, for the next call
        self._written = 0

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
        with self._lock:
            stream = self._stream
            if stream.closing:
                raise ConnectorError("this source connector is closed; create a new one")
            if stream.link is not None:
                stream.drop_link()
            self._failure = None
            stream.host = host or self.config.host
            stream.port = self.config.port if port is None else int(port)
            stream.establish(timeout)
            self._flush()
            self._start_flusher()

    def write(self, message: Any, event_time: int = 0, key: str | bytes | None = None) -> None:
        """Encode ``message`` with the application's encoder and send it.

        The message goes into a buffer, which is handed to the socket: by this call, if the
        buffer then holds 1,024 messages or 64 KiB of payload, or its oldest message was
        written ``linger`` seconds ago or more (always, with ``linger=0``); otherwise by the
        connector's thread once its oldest message is ``linger`` seconds old (later if the
        worker grants no credits then), or earlier by :meth:`flush`, :meth:`poll`,
        :meth:`write_many` or :meth:`close`. At the interpreter's exit, what is buffered is
        sent too (for up to 5 s). If the connector's thread finds the connection lost or the
        worker refusing it, the next call reconnects or raises that error.

        Sending blocks while the worker grants no credits, while ``max_unacked`` messages wait
        for acknowledgement, and while the connection is being re-established after a loss or
        a RESTART (held messages are then sent again first). An encoder result of None sends
        nothing; a ``str`` is sent as UTF-8.

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
        payload = to_bytes(self._encode_fn(message))
        if payload is None:
            return
        if len(payload) > MAX_PAYLOAD:
            _check_size([payload])
        key_bytes = to_bytes(key, "a message key")
        with self._lock:
            self._ready_link()
            self._stream.wait_for_room(self._limit)
            self._held.append(payload, int(event_time), key_bytes)
            self._written += 1
            self._buffered += 1
            self._buffered_bytes += len(payload)
            now = time.monotonic()
            if self._buffered_since is None:
                self._buffered_since = now
                self._wakeup.notify()
            if (
                self._buffered >= BUFFER_MESSAGES
                or self._buffered_bytes >= BUFFER_BYTES
                or now - self._buffered_since >= self._linger
            ):
                self._flush()

    def write_many(
        self, messages: Iterable[Any], event_time: int = 0, key: str | bytes | None = None
    ) -> int:
        """Like :meth:`write` for many messages sharing ``event_time`` and ``key``, and sent
        (with anything :meth:`write` buffered before them) before this call returns, in as few
        socket writes as credits allow. Returns the number of messages sent."""
        payloads = list(map(self._encode_fn, messages))
        if set(map(type, payloads)) - {bytes}:  # a str, a bytearray or None among them
            payloads = [p for p in map(to_bytes, payloads) if p is not None]
        _check_size(payloads)
        key_bytes = to_bytes(key, "a message key")
        with self._lock:
            self._ready_link()
            done = 0
            while done < len(payloads):
                self._stream.wait_for_room(self._limit)
                chunk = payloads[done : done + self._limit - len(self._held)]
                self._held.extend(chunk, int(event_time), key_bytes)
                done += len(chunk)
                self._flush()
            self._written += len(payloads)
        return len(payloads)

    def flush(self) -> None:
        """Send what :meth:`write` buffered now (blocking while the worker grants no credits).

        Raises:
            ConnectorError: as :meth:`write`.
        """
        with self._lock:
            self._ready_link()
            self._flush()

    def poll(self, timeout: float = 0.0) -> None:
        """Send what is buffered, then handle what the worker sent, for up to ``timeout``
        seconds.

        Call it while there is nothing to write: ACKs free held messages, and a worker that
        went away (a crash, a RESTART) is noticed at once, reconnected to, and sent again what
        it had not acknowledged, instead of at the next :meth:`write`. Blocks while the worker
        is down.

        Raises:
            ConnectorError: the worker answered ERROR.
        """
        with self._lock:
            if self._stream.closing or self._stream.link is None:
                return
            self._ready_link()
            self._flush()
            self._stream.service(timeout)
            self._flush()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is pending, end the stream (EOS) and wait up to ``timeout`` seconds for the
        worker's acknowledgement, then close the connection. Never reconnects; messages still
        unacknowledged then are reported in a warning log line (they may be lost).
        Idempotent."""
        stream = self._stream
        stream.stop.set()  # the flusher thread lets go of the lock
        with self._lock:
            if stream.closing:
                return
            stream.closing = True
            self._wakeup.notify_all()
            atexit.unregister(self._flush_at_exit)
            try:
                stream.end(timeout)
            finally:
                held = len(self._held)
                if held:
                    log.warning(
                        "closed stream '%s' with %d messages the worker has not acknowledged",
                        self.stream_name,
                        held,
                    )
                stream.drop_link()
        flusher = self._flusher
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join()

    def statistics(self) -> SourceConnectorStatistics:
        """Return a snapshot of the connector's counters."""
        with self._lock:
            stream = self._stream
            link = stream.link
            return SourceConnectorStatistics(
                connector=self.config.name,
                stream_name=self.stream_name,
                stream_id=self.stream_id,
                address=f"{stream.host}:{stream.port}",
                connected=link is not None and not link.broken,
                next_message_id=self._held.next_id,
                unacked=self._held.sent,
                pending=self._held.pending,
                credits=link.session.credits if link is not None else 0,
                messages_written=self._written,
                reconnects=stream.reconnects,
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

    # -- sending (every method below runs with the lock held) -------------------------------
    def _ready_link(self) -> ClientLink:
        """The link, for a call of the application; raises what the flusher thread met."""
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        if self._stream.closing:
            raise ConnectorError("this source connector is closed; create a new one")
        return self._stream.live_link()

    def _flush(self, deadline: float | None = None) -> None:
        """Send every pending message as credits allow (the buffer is then empty)."""
        self._stream.send_pending(deadline)
        self._buffered = self._buffered_bytes = 0
        self._buffered_since = None

    def _start_flusher(self) -> None:
        if self._linger > 0 and (self._flusher is None or not self._flusher.is_alive()):
            self._flusher = threading.Thread(
                target=self._run_flusher, name=f"wallaroo-source-{self.stream_name}", daemon=True
            )
            self._flusher.start()
            atexit.register(self._flush_at_exit)

    def _run_flusher(self) -> None:
        """Send what :meth:`write` buffered once its oldest message is ``linger`` seconds old.

        It reconnects after a loss, as :meth:`write` would, but never waits for credits with
        the lock held for long, and :meth:`close` stops it at once.
        """
        with self._wakeup:
            while not self._stream.closing:
                since = self._buffered_since
                if since is None or self._stream.link is None or self._failure is not None:
                    self._wakeup.wait()
                    continue
                delay = since + self._linger - time.monotonic()
                if delay > 0:
                    self._wakeup.wait(delay)
                    continue
                try:
                    self._flush(time.monotonic() + 0.05)
                except TimeoutError:  # no credits yet: let the application in, then retry
                    self._wakeup.wait(0.01)
                except LinkLostError:  # stopped by close() while reconnecting
                    pass
                except Exception as exc:  # the worker refused us (ERROR): the next call raises
                    self._failure = exc

    def _flush_at_exit(self) -> None:
        """Send what :meth:`write` buffered before the interpreter exits (never reconnects)."""
        stream = self._stream
        stream.stop.set()
        with self._lock:
            if stream.closing or stream.link is None or stream.link.broken:
                return
            stream.closing = True
            self._wakeup.notify_all()
            try:
                self._flush(time.monotonic() + EXIT_FLUSH_TIMEOUT)
            except (ConnectorError, TimeoutError) as exc:
                log.warning("stream '%s': not all sent at exit: %s", self.stream_name, exc)


def _with_help(names: list[str], given: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """``names`` with the help texts ``given`` has for them (when it is a mapping)."""
    texts = given if isinstance(given, Mapping) else {}
    return {name: str(texts.get(name, "")) for name in names}
