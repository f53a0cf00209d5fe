"""Framed TCP sources (``TCPSourceConfig``): a header gives each message's length.

The decoder's ``header_length`` and ``payload_length`` cut the byte stream into messages; a
frame longer than ``--max-frame-size`` closes the connection (logged in one line), and the
worker and its other connections carry on.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import cast

from wallaroo.configs import TCPSourceConfig
from wallaroo.decorators import Decoder
from wallaroo.engine.local import LocalEngine
from wallaroo.errors import FrameError
from wallaroo.plan.physical import SourcePlan
from wallaroo.protocol.reader import HeaderReader, LengthPrefixedReader
from wallaroo.worker.flow import Gate
from wallaroo.worker.ingress import MAX_BATCH, Listener, batch_slice

__all__ = ["TCPSourceListener"]


class TCPSourceListener(Listener):
    """Listens for framed TCP input: a header of the decoder's length and format per message."""

    kind = "TCP source"

    def __init__(
        self,
        plan: SourcePlan,
        engine: LocalEngine,
        gate: Gate,
        log: logging.Logger,
        max_frame_size: int,
    ) -> None:
        super().__init__(plan, engine, gate, log, max_frame_size)
        config: TCPSourceConfig = plan.config
        decoder = config.decoder
        self.header_length = int(decoder.header_length())
        self.read_header: HeaderReader
        if isinstance(decoder, Decoder):
            self.read_header = struct.Struct(decoder.length_fmt).unpack_from
        else:
            self.read_header = _custom_header(decoder.payload_length, self.header_length)

    def _protocol(self) -> asyncio.Protocol:
        return _FramedConnection(self)


class _FramedConnection(asyncio.Protocol):
    def __init__(self, listener: TCPSourceListener) -> None:
        self.listener = listener
        self.reader = LengthPrefixedReader(
            listener.header_length, listener.read_header, listener.max_frame_size
        )
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.process = listener.runner.run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # stream servers give Transports
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.listener.connections.add(self)
        self.listener.connections_total += 1

    def data_received(self, data: bytes) -> None:
        if self.reader.error is not None:  # closing after a bad frame
            return
        try:
            payloads = self.reader.feed(data)
        except FrameError as exc:
            self._bad(str(exc))
            return
        for start in range(0, len(payloads), MAX_BATCH):
            try:
                self.process(batch_slice(payloads, start, start + MAX_BATCH))
            except Exception as exc:
                self.listener.lost(
                    exc, batch_slice(payloads, start, start + MAX_BATCH), f"input from {self.peer}"
                )
        self.listener.messages += len(payloads)
        if self.transport is not None:
            self.listener.gate.hold(self.transport)

    def _bad(self, reason: str) -> None:
        self.listener.errors += 1
        self.listener.log.warning(
            "TCP source '%s' from %s: %s; connection closed",
            self.listener.plan.name,
            self.peer,
            reason,
        )
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.reader.pending and self.reader.error is None:
            self.listener.log.warning(
                "TCP source '%s' from %s closed with %d bytes of an incomplete frame",
                self.listener.plan.name,
                self.peer,
                self.reader.pending,
            )
        self.listener.connections.discard(self)
        if self.transport is not None:
            self.listener.gate.forget(self.transport)
        self.transport = None


def _custom_header(payload_length: Callable[[bytes], int], header_length: int) -> HeaderReader:
    """A :data:`HeaderReader` over a decoder's own ``payload_length(header_bytes)``."""

    def read_header(data: bytes, offset: int) -> tuple[int, ...]:
        return (int(payload_length(data[offset : offset + header_length])),)

    return read_header
