"""Sinks of the worker: TCP sinks and connector sinks. The worker connects out to both.

Both keep connecting (with back-off) until their peer is up, and reconnect when it goes away.
Output produced while there is no connection waits in a bounded buffer; past its high-water mark
the worker's :class:`~wallaroo.worker.flow.Gate` closes and the sources stop reading, so nothing
is dropped for lack of room. Bytes already handed to a connection that then breaks may be lost:
without checkpoints a TCP sink is at-most-once for them (the checkpoint issue adds 2PC).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, cast

from wallaroo.worker.flow import Gate, WaterMarks

__all__ = ["SinkOutput", "SinkOutputStatistics", "TCPSinkOutput", "batch_size"]


@dataclass(frozen=True, slots=True)
class SinkOutputStatistics:
    """A snapshot of one sink output's connection and buffer.

    Attributes:
        name: the sink's name.
        address: ``host:port`` of the peer (the bootstrap servers for a Kafka sink).
        connected: the connection is up and output flows (a connector sink: it also answered
            the intro); a Kafka sink: the brokers are not known to be unreachable.
        connects: connections made so far (always 1 for a Kafka sink).
        buffered_bytes: bytes accepted and not yet handed on (see :attr:`SinkOutput.
            buffered_bytes`).
        bytes_written: bytes handed to the connection since start, framing included (a
            Kafka sink: record bytes the brokers acknowledged).
    """

    name: str
    address: str
    connected: bool
    connects: int
    buffered_bytes: int
    bytes_written: int


def batch_size(payloads: list[bytes], nbytes: int | None) -> int:
    """``nbytes``, the size of ``payloads`` a caller passed on, else their lengths summed now."""
    return sum(map(len, payloads)) if nbytes is None else nbytes


class SinkOutput(asyncio.Protocol):
    """A reconnecting outgoing connection with a bounded buffer (a ``SinkPort``)."""

    kind = "sink"

    def __init__(self, name: str, host: str, port: int, gate: Gate, log: logging.Logger) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._log = log
        self._transport: asyncio.Transport | None = None
        self._ready = False
        self._writing_paused = False
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._lost: asyncio.Future[None] | None = None
        self._stopping = False
        self._connects = 0
        self._written = 0
        self._water = WaterMarks(gate, name)
        self._connecting: asyncio.Future[Any] | None = None

    # -- SinkPort -----------------------------------------------------------------------------
    def write(self, payloads: list[bytes]) -> None:
        """Queue encoded outputs; they are sent as soon as the connection is ready."""
        self.write_sized(payloads, None)

    def write_sized(self, payloads: list[bytes], nbytes: int | None) -> None:
        """:meth:`write`, with ``nbytes`` the sum of the payloads' lengths when the caller has
        it (the engine's ``SinkRunner`` does). Lengths are summed once per batch at most: by
        the caller, or else here only if the batch has to wait (see :func:`batch_size`)."""
        if self._ready and not self._writing_paused and not self._pending:
            self._send(payloads, nbytes)
            return
        self._keep(payloads, nbytes)
        self._update_water()

    def _keep(self, payloads: list[bytes], nbytes: int | None) -> None:
        self._pending.extend(payloads)
        self._pending_bytes += batch_size(payloads, nbytes)

    def _send(self, payloads: list[bytes], nbytes: int | None) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():  # lost: keep it for the reconnection
            self._keep(payloads, nbytes)
            return
        data = self._frame(payloads)
        self._written += len(data)
        transport.write(data)

    def _frame(self, payloads: list[bytes]) -> bytes:
        return b"".join(payloads)

    def _flush(self) -> None:
        if self._pending and self._ready and not self._writing_paused:
            pending, nbytes = self._pending, self._pending_bytes
            self._pending, self._pending_bytes = [], 0
            self._send(pending, nbytes)
        self._update_water()

    def _update_water(self) -> None:
        self._water.update(self.buffered_bytes, stalled=self._writing_paused)

    @property
    def buffered_bytes(self) -> int:
        """Bytes accepted and not yet sent: queued here, plus those in the transport's buffer."""
        transport = self._transport
        in_transport = transport.get_write_buffer_size() if transport is not None else 0
        return self._pending_bytes + in_transport

    # -- connection life ----------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, and reconnect after every loss, until :meth:`stop`."""
        delay = 0.05
        waiting_logged = False
        while not self._stopping:
            try:
                transport = await self._connect()
            except OSError as exc:
                if self.stopping():  # the worker stopped while this connection was being made
                    break
                if not waiting_logged:
                    self._log.info(
                        "waiting for %s '%s' at %s:%d (%s); retrying",
                        self.kind,
                        self.name,
                        self.host,
                        self.port,
                        exc.strerror or exc,
                    )
                    waiting_logged = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if transport is None or self.stopping():  # stopped while connecting
                if transport is not None:
                    transport.close()
                break
            delay = 0.05
            waiting_logged = False
            lost = self._lost
            if lost is not None:
                await lost
            if not self._stopping:
                self._log.warning(
                    "lost the connection to %s '%s' at %s:%d; reconnecting",
                    self.kind,
                    self.name,
                    self.host,
                    self.port,
                )

    async def _connect(self) -> asyncio.BaseTransport | None:
        """One connection attempt; None when :meth:`stop` gave up on it while under way.

        Raises:
            OSError: the attempt failed.
        """
        loop = asyncio.get_running_loop()
        attempt = asyncio.ensure_future(loop.create_connection(lambda: self, self.host, self.port))
        self._connecting = attempt
        try:
            transport, _ = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            if not attempt.cancelled():  # this task itself was cancelled, not the attempt
                attempt.cancel()
                raise
            return None
        finally:
            self._connecting = None
        return transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The connection is up: count it and start sending (after the intro, for a connector
        sink).
        """
        self._transport = cast(asyncio.Transport, transport)  # TCP connections are Transports
        self._transport.set_write_buffer_limits(high=4 * 1024 * 1024)
        self._lost = asyncio.get_running_loop().create_future()
        self._connects += 1
        self._log.info("connected to %s '%s' at %s:%d", self.kind, self.name, self.host, self.port)
        self._connected()

    def _connected(self) -> None:
        self._ready = True
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone: let :meth:`run` reconnect. Queued output waits for the next
        connection; what the transport still held is lost.
        """
        self._transport = None
        self._ready = False
        self._writing_paused = False
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        self._update_water()

    def pause_writing(self) -> None:
        """The transport's buffer is full: queue output here, and close the gate."""
        self._writing_paused = True
        self._update_water()

    def resume_writing(self) -> None:
        """The transport drained: send what is queued."""
        self._writing_paused = False
        self._flush()

    async def drain(self, timeout: float) -> bool:
        """Wait until everything queued is written (or ``timeout``); True if it was."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.buffered_bytes and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        return not self.buffered_bytes

    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping

    def stop(self) -> None:
        """Stop sending and connecting: close the connection, give up on an attempt that is
        under way (a peer that does not answer cannot hold the shutdown up), log nothing more."""
        self._stopping = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._transport is not None:
            self._transport.close()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def statistics(self) -> SinkOutputStatistics:
        """A snapshot of the connection and buffer."""
        return SinkOutputStatistics(
            self.name,
            f"{self.host}:{self.port}",
            self._ready,
            self._connects,
            self.buffered_bytes,
            self._written,
        )


class TCPSinkOutput(SinkOutput):
    """Writes each output's bytes as they are (the encoder does any framing)."""

    kind = "TCP sink"

    def data_received(self, data: bytes) -> None:
        """A TCP sink does not expect replies; anything the peer sends is ignored."""
