"""Run a worker in this process and talk to it over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import wallaroo
import wallaroo.experimental as wx
from wallaroo.loader import load_application
from wallaroo.protocol.frames import Frame
from wallaroo.protocol.reader import FrameReader
from wallaroo.worker.runtime import Worker, WorkerOptions

COOKIE = "Dragons-Love-Tacos"


class Collector:
    """A TCP server playing a TCP sink's peer; keeps every byte it receives."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.changed = asyncio.Event()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            self.data += data
            self.changed.set()
        writer.close()

    def lines(self) -> list[str]:
        return self.data.decode().splitlines()

    async def wait_lines(self, n: int, timeout: float = 10.0) -> list[str]:
        async def until() -> None:
            while len(self.lines()) < n:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.lines()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def checked_app(sink_port: int, *, max_credits: int = 4096, refill: int = 1024) -> Any:
    """A connector source (port 0) whose decoder only accepts payloads starting with b'ok'."""

    @wx.stream_message_decoder
    def decode(data: bytes) -> str:
        if not data.startswith(b"ok"):
            raise ValueError(f"not ok: {data[:10]!r}")
        return data.decode()

    enc = wx.stream_message_encoder(lambda v: v)
    out = wallaroo.encoder(lambda s: s + "\n")
    source = wx.SourceConnectorConfig(
        "feed", enc, decode, 0, cookie=COOKIE, max_credits=max_credits, refill_credits=refill
    )
    pipeline = wallaroo.source("checked", source).to_sink(
        wallaroo.TCPSinkConfig("127.0.0.1", sink_port, out)
    )
    return wallaroo.build_application("checked", pipeline)


async def with_worker(
    app: Any, scenario: Callable[[Worker], Awaitable[Any]], options: WorkerOptions | None = None
) -> Any:
    worker = Worker(load_application(app), options)
    ready = asyncio.Event()
    task = asyncio.create_task(worker.run(ready=lambda w: ready.set()))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        return await scenario(worker)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 20)


class RawClient:
    """A connector connection driven frame by frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader()
        self.received: list[Frame] = []

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, *frames: Frame | bytes) -> None:
        for f in frames:
            self.writer.write(f if isinstance(f, bytes | bytearray) else f.encode())

    async def expect(self, kind: type, timeout: float = 5.0) -> Any:
        """Read until a frame of ``kind`` arrives; return it."""

        async def until() -> Any:
            while True:
                for i, f in enumerate(self.received):
                    if isinstance(f, kind):
                        return self.received.pop(i)
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError(f"closed before {kind.__name__}; got {self.received}")
                self.received.extend(self.frames.feed(data))

        return await asyncio.wait_for(until(), timeout)

    async def until_closed(self, timeout: float = 5.0) -> list[Frame]:
        """Read everything until the worker closes; return the frames."""

        async def until() -> list[Frame]:
            while data := await self.reader.read(65536):
                with contextlib.suppress(Exception):
                    self.received.extend(self.frames.feed(data))
            return self.received

        try:
            return await asyncio.wait_for(until(), timeout)
        finally:
            self.close()

    def close(self) -> None:
        self.writer.close()


def framed(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload
