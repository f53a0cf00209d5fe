"""Spool files: one worker's transaction kept on disk between its PHASE1 and its PHASE2.

A transactional sink that hands output to a system of its own transactions (Kafka, say) cannot
open that transaction at PHASE1 and keep it across a crash. It spools instead: the output of
the open transaction is appended to ``<connector>.<worker>.open`` as it arrives
(:class:`SpoolWriter`, not durable), and at PHASE1, before the vote, the file gets a trailer and
is made durable under the name ``<connector>.<worker>.prepared`` (:meth:`SpoolWriter.seal`).
PHASE2 reads it back (:func:`read_spool`) and delivers it; :class:`~wallaroo.experimental.
spooled_sink.SpooledSink` drives these steps.

The format: :data:`SPOOL_MAGIC`, then each payload as a 4-byte big-endian length and its bytes,
then (once sealed) a JSON trailer ``{"txn", "start", "end", "count", "crc32", "worker"}``, its
4-byte length and :data:`TRAILER_MAGIC`. A sealed file that does not add up is corrupt and is
refused (``ValueError``), never skipped: the worker was promised its transaction.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from wallaroo.experimental.transactional import Transaction

__all__ = [
    "SPOOL_MAGIC",
    "TRAILER_MAGIC",
    "SpoolWriter",
    "Spooled",
    "fsync_dir",
    "read_spool",
    "spool_paths",
]

SPOOL_MAGIC = b"WKSPOOL1"
"""The first bytes of a spool file."""
TRAILER_MAGIC = b"WKTX"
"""The last bytes of a sealed (prepared) spool file."""
_FRAME = struct.Struct(">I")
_WORKER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def spool_paths(spool_dir: str, connector: str, worker: str) -> tuple[str, str]:
    """``(open, prepared)``: the spool files of ``worker`` in ``spool_dir``,
    ``<connector>.<worker>.open`` and ``<connector>.<worker>.prepared``.

    Raises:
        ValueError: the worker's name cannot be part of a file name.
    """
    if not _WORKER_NAME.fullmatch(worker):
        raise ValueError(f"worker name {worker!r} cannot be part of a file name")
    base = os.path.join(spool_dir, f"{connector}.{worker}")
    return f"{base}.open", f"{base}.prepared"


@dataclass(frozen=True, slots=True)
class Spooled:
    """A prepared transaction read back from its spool file.

    Attributes:
        txn: the transaction the trailer names.
        payloads: its payloads, in order; their lengths add up to ``txn.end - txn.start``.
    """

    txn: Transaction
    payloads: list[bytes]


class SpoolWriter:
    """The open transaction's spool file: each payload, length-prefixed, as it arrives.

    Nothing is durable until :meth:`seal`.

    Args:
        path: the open spool file (created, or truncated).
        start: the offset of the transaction's first byte in the worker's output.

    Attributes:
        start: as given; ``end`` the offset just past the last payload written.
        count: how many payloads were written; ``crc`` their CRC-32.

    Raises:
        OSError: the file cannot be created or written.
    """

    def __init__(self, path: str, start: int) -> None:
        self.path, self.start, self.end = path, start, start
        self.count = 0
        self.crc = 0
        self._file = open(path, "wb")  # noqa: SIM115 - closed by seal() or discard()
        self._file.write(SPOOL_MAGIC)

    def write(self, payloads: Sequence[bytes]) -> None:
        """Append payloads (buffered)."""
        parts: list[bytes] = []
        for payload in payloads:
            parts += (_FRAME.pack(len(payload)), payload)
            self.crc = zlib.crc32(payload, self.crc)
            self.end += len(payload)
        self.count += len(payloads)
        self._file.write(b"".join(parts))

    def seal(self, txn: Transaction, worker: str, prepared: str) -> None:
        """Write the trailer, fsync, rename to ``prepared`` and fsync the directory: from then
        on the transaction survives a crash of this process or of the machine.

        Raises:
            OSError: the file cannot be made durable (then nothing was promised).
        """
        meta = {"txn": txn.txn_id, "start": txn.start, "end": txn.end, "count": self.count,
                "crc32": self.crc, "worker": worker}  # fmt: skip
        trailer = json.dumps(meta).encode()
        self._file.write(trailer + _FRAME.pack(len(trailer)) + TRAILER_MAGIC)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.path, prepared)
        fsync_dir(prepared)

    def discard(self) -> None:
        """Close and delete the file (its output is not voted on)."""
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


def read_spool(path: str) -> Spooled | None:
    """Read a prepared spool file; None when there is none.

    Raises:
        OSError: the file exists but cannot be read.
        ValueError: the file is corrupt (a bad trailer, frames that do not add up, a CRC-32
            that does not match); it is never ignored, since the worker was promised it.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    body = len(SPOOL_MAGIC)
    if not data.startswith(SPOOL_MAGIC) or not data.endswith(TRAILER_MAGIC) or len(data) < body + 8:
        raise ValueError(f"spool file {path} is corrupt: no header or trailer")
    (size,) = _FRAME.unpack_from(data, len(data) - 8)
    end = len(data) - 8 - size
    try:
        if end < body:
            raise ValueError("the trailer runs into the header")
        meta = json.loads(data[end : len(data) - 8])
        txn = Transaction(str(meta["txn"]), int(meta["start"]), int(meta["end"]))
        count, crc = int(meta["count"]), int(meta["crc32"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"spool file {path} is corrupt: bad trailer ({exc})") from exc
    payloads = []
    pos, check = body, 0
    while pos < end:
        (length,) = _FRAME.unpack_from(data, pos) if pos + 4 <= end else (end,)  # (end,): torn
        if pos + 4 + length > end:
            raise ValueError(f"spool file {path} is corrupt: a frame at {pos} runs past the end")
        payload = data[pos + 4 : pos + 4 + length]
        payloads.append(payload)
        check = zlib.crc32(payload, check)
        pos += 4 + length
    if (count, crc, txn.end - txn.start) != (len(payloads), check, sum(map(len, payloads))):
        raise ValueError(f"spool file {path} is corrupt: its payloads do not match its trailer")
    return Spooled(txn, payloads)


def fsync_dir(path: str) -> None:
    """Make a rename or a deletion in the directory of ``path`` durable.

    Raises:
        OSError: the directory cannot be opened or synced.
    """
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
