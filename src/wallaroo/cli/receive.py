"""``wallaroo receive``: accept a worker's TCP sink and print what it writes (like the original
``data_receiver``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct
import sys
from collections.abc import Sequence
from typing import BinaryIO

from wallaroo.args import parse_address
from wallaroo.errors import WallarooParameterError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wallaroo receive",
        description="Listen for a worker's TCP sink and write what arrives to stdout.",
    )
    p.add_argument("--listen", "-l", required=True, help="HOST:PORT to listen on (port 0: any)")
    p.add_argument(
        "--framed",
        action="store_true",
        help="input is u32-length-framed; write each payload followed by a newline",
    )
    p.add_argument("--no-write", action="store_true", help="count, do not write")
    p.add_argument("--output", "-o", default=None, help="write to this file instead of stdout")
    p.add_argument("--buffer-size", type=int, default=65536, help="read size (default 65536)")
    return p


class _Receiver:
    def __init__(self, out: BinaryIO | None, framed: bool) -> None:
        self.out = out
        self.framed = framed
        self.messages = 0
        self.nbytes = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = b""
        try:
            while data := await reader.read(1 << 16):
                self.nbytes += len(data)
                if self.framed:
                    buf += data
                    data, buf = self._unframe(buf)
                else:
                    self.messages += data.count(b"\n")
                if self.out is not None and data:
                    self.out.write(data)
                    self.out.flush()
        finally:
            writer.close()

    def _unframe(self, buf: bytes) -> tuple[bytes, bytes]:
        out = []
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = struct.unpack_from(">I", buf, pos)
            if len(buf) - pos - 4 < n:
                break
            out.append(buf[pos + 4 : pos + 4 + n] + b"\n")
            pos += 4 + n
            self.messages += 1
        return b"".join(out), buf[pos:]


async def _serve(host: str, port: int, receiver: _Receiver) -> None:
    server = await asyncio.start_server(receiver.handle, host, port)
    bound = server.sockets[0].getsockname()
    print(f"wallaroo receive: listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """``wallaroo receive --listen HOST:PORT``: print what the sink writes until SIGINT or
    SIGTERM; return 0, or 2 for a bad address or one it cannot listen on.
    """
    args = _parser().parse_args(argv)
    try:
        host, port = parse_address(args.listen, "--listen")
    except WallarooParameterError as exc:
        print(f"wallaroo receive: error: {exc}", file=sys.stderr)
        return 2
    out: BinaryIO | None = None
    if not args.no_write:
        out = open(args.output, "ab") if args.output else sys.stdout.buffer  # noqa: SIM115
    receiver = _Receiver(out, args.framed)
    try:
        asyncio.run(_serve(host, int(port), receiver))
    except OSError as exc:
        print(f"wallaroo receive: error: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 2
    finally:
        if out is not None and args.output:
            out.close()
    print(f"wallaroo receive: received {receiver.nbytes} bytes", file=sys.stderr)
    return 0
