"""``wallaroo send``: send framed messages to a TCP source (like the original giles sender).

Every message goes out with a 4-byte big-endian length header, the framing of
``@wallaroo.decoder(header_length=4, length_fmt=">I")``. On a terminal a progress bar shows
the count and rate while it sends; the last line (on stderr, unless ``--quiet``) gives the
count, bytes, time and rate.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import struct
import sys
import time
from collections.abc import Iterator, Sequence

from wallaroo.args import parse_address
from wallaroo.cli.progress import Progress
from wallaroo.errors import WallarooParameterError

__all__ = ["main"]

_HEADER = struct.Struct(">I")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wallaroo send",
        description="Send u32-framed messages to a worker's TCP source. Without --file it sends "
        "increasing integers as text ('0', '1', ...).",
    )
    p.add_argument("--host", required=True, help="HOST:PORT of the TCP source")
    p.add_argument(
        "--file",
        "-f",
        action="append",
        default=[],
        help="newline-separated file; each line is one message (repeatable)",
    )
    p.add_argument(
        "--messages",
        "-m",
        type=int,
        default=None,
        help="number of messages to send (default: every line once, or 100)",
    )
    p.add_argument(
        "--repeat",
        "-r",
        action="store_true",
        help="start the files again until --messages are sent",
    )
    p.add_argument(
        "--batch-size", "-s", type=int, default=1000, help="messages per write (default 1000)"
    )
    p.add_argument(
        "--interval",
        "-i",
        type=int,
        default=0,
        help="nanoseconds to wait between batches (default 0)",
    )
    p.add_argument(
        "--binary",
        "-y",
        action="store_true",
        help="the files hold binary records, not lines (with --msg-size or --variable-size)",
    )
    p.add_argument(
        "--msg-size",
        "-g",
        type=int,
        default=None,
        help="with --binary: fixed record size in bytes, header included",
    )
    p.add_argument(
        "--variable-size",
        "-z",
        action="store_true",
        help="with --binary: records are already u32-framed; sent as they are",
    )
    p.add_argument(
        "--u64", "-u", action="store_true", help="send 8-byte big-endian counters instead of text"
    )
    p.add_argument(
        "--start-from", "-v", type=int, default=0, help="first counter value (default 0)"
    )
    p.add_argument(
        "--no-write", "-w", action="store_true", help="build the messages but do not send them"
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        help="seconds to keep retrying while the worker is not up (default 30)",
    )
    p.add_argument(
        "--quiet", "-q", action="store_true", help="no progress bar and no summary on stderr"
    )
    return p


def _records(args: argparse.Namespace) -> Iterator[bytes]:
    """Framed messages, endlessly when repeating."""
    if args.u64 or not args.file:
        counter = itertools.count(args.start_from)
        if args.u64:
            return (_HEADER.pack(8) + struct.pack(">Q", n) for n in counter)
        return (_frame(str(n).encode()) for n in counter)

    def once() -> Iterator[bytes]:
        for path in args.file:
            with open(path, "rb") as f:
                data = f.read()
            yield from _split(data, args)

    if args.repeat:
        return itertools.chain.from_iterable(once() for _ in itertools.count())
    return once()


def _frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


def _split(data: bytes, args: argparse.Namespace) -> Iterator[bytes]:
    if not args.binary:
        for line in data.split(b"\n"):
            if line:
                yield _frame(line.rstrip(b"\r"))
    elif args.variable_size:
        pos = 0
        while pos + 4 <= len(data):
            (n,) = _HEADER.unpack_from(data, pos)
            yield data[pos : pos + 4 + n]
            pos += 4 + n
    else:
        size = args.msg_size
        if not size or size <= 4:
            raise WallarooParameterError("--binary needs --msg-size (> 4) or --variable-size")
        for pos in range(0, len(data) - size + 1, size):
            yield data[pos : pos + size]


def _connect(address: tuple[str, int], timeout: float) -> socket.socket:
    """Connect, retrying every 0.1 s for up to ``timeout`` seconds.

    Raises:
        OSError: still failing at the deadline; the message names the address, the reason and
            how long it retried.
    """
    started = time.monotonic()
    while True:
        try:
            return socket.create_connection(address)
        except OSError as exc:
            waited = time.monotonic() - started
            if waited >= timeout:
                reason = exc.strerror or str(exc)
                raise OSError(
                    exc.errno,
                    f"cannot connect to {address[0]}:{address[1]}: {reason} (retried for "
                    f"{waited:.1f} s; --connect-timeout sets how long)",
                ) from exc
            time.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> int:
    """``wallaroo send``: send the messages; return 0, 1 when sending failed part way, or 2
    for bad options or when the source cannot be reached.
    """
    args = _parser().parse_args(argv)
    try:
        host, port = parse_address(args.host, "--host")
        records = _records(args)
        limit = (
            args.messages
            if args.messages is not None
            else (None if args.file and not args.repeat else 100)
        )
        if args.batch_size < 1:
            raise WallarooParameterError("--batch-size must be at least 1")
        sock = None if args.no_write else _connect((host, int(port)), args.connect_timeout)
    except (WallarooParameterError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"wallaroo send: error: {reason}", file=sys.stderr)
        return 2
    sent = nbytes = 0
    start = time.perf_counter()
    stream = records if limit is None else itertools.islice(records, limit)
    progress = Progress(sys.stderr, limit) if sys.stderr.isatty() and not args.quiet else None
    try:
        while batch := list(itertools.islice(stream, args.batch_size)):
            data = b"".join(batch)
            if sock is not None:
                sock.sendall(data)
            sent += len(batch)
            nbytes += len(data)
            if progress is not None:
                progress.update(sent)
            if args.interval:
                time.sleep(args.interval / 1e9)
    except OSError as exc:
        if progress is not None:
            progress.close()
        print(f"wallaroo send: error after {sent} messages: {exc}", file=sys.stderr)
        return 1
    finally:
        if sock is not None:
            sock.close()
    if progress is not None:
        progress.close()
    elapsed = time.perf_counter() - start
    if not args.quiet:
        rate = sent / elapsed if elapsed > 0 else float("inf")
        verb = "built (not sent: --no-write)" if args.no_write else "sent"
        print(
            f"wallaroo send: {verb} {sent} messages ({nbytes} bytes) in {elapsed:.2f} s, "
            f"{rate:,.0f} msg/s",
            file=sys.stderr,
        )
    return 0
