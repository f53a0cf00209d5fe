#!/usr/bin/env python3
"""file_source: send the records of files to Wallaroo, at least once, resuming where the worker
says.

Usage::

    file_source --application-module sequence_check --connector sequences \\
        --sequences-files /data/in.0,/data/in.1

Parameters (prefixed with the connector's name):
    files      (required) comma-separated paths of the files to send.
    framing    (optional) ``lines`` (default: one record per line, without its ``\\n`` or
               ``\\r\\n``) or ``u32`` (each record a big-endian u32 length, then that many bytes).
    rate       (optional) at most this many records per second over all the files (default:
               as fast as the worker takes them).
    follow     (optional) ``true``: at the end of a file wait for more records (as
               ``tail -f``), never end the streams, and run until SIGINT or SIGTERM. Default
               ``false``: end each file's stream at its end and exit once every end is
               acknowledged.
    poll_interval  (optional) with ``follow``, seconds between two looks for more at the end
               of the files (default 0.005): a record appended waits at most that long.
    instance   (optional) a name for this process, in its log lines and its HELLO.

One connector stream per file, named by the file's absolute path (so a restarted connector
resumes the same streams); the stream id is derived from the name. Every record goes through
the application's source encoder (None: skipped; ``str``: UTF-8) and is sent with the file's
absolute path as its key. A record's message id, its *point of reference*, is the byte offset
just *after* it in the file: ids grow strictly, and the worker's rule "id <= last seen is a
duplicate" drops what is sent twice.

Each stream resumes at the offset the worker gives in its NOTIFY_ACK: the last record the
worker's last checkpoint covers (with ``--run-with-resilience``), so after a crash of the
worker the file is replayed from exactly there, and after a restart of this program it
continues where the worker says; nothing is kept on this side. Without ``follow`` the end of a
file ends its stream (EOS); the file is done once the worker acknowledges its end (with
resilience: once a checkpoint covers the file's last record), and the program exits with code
0 when every file is done. If the connection is lost before that, the stream is resumed and
ended again.

Failure semantics: the worker being away (not started yet, crashed, restarting) is waited for
indefinitely, reconnecting with back-off. A resume offset that cannot be right for the file
(beyond its end, or, with ``lines``, not just after a newline: the file was replaced or
truncated) stops the program with exit code 1, as do a refused cookie and an encoder that
fails. A truncated last ``u32`` record at the end of a file is logged and not sent (with
``follow`` it is waited for). Files are expected to grow only; a file changed before the
offset it resumes at is not detected beyond the checks above.

Logs go to stderr; the first line names the connector, the files and the worker's address.
SIGINT and SIGTERM stop it cleanly (exit code 0) without ending the streams: a restart resumes
them. Exit code 1 means a connection failure or a fatal error of the connector's thread, 2 a
usage or configuration error (a missing or unreadable file, a bad parameter value).

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
from collections.abc import Sequence
from typing import IO, Final

import wallaroo.experimental as wx
from wallaroo.experimental.connector_wire_messages import Message
from wallaroo.experimental.file_sources import Throttle
from wallaroo.experimental.program import (
    ProgramRun,
    configure_logging,
    positive_number,
    to_bytes,
)

log = logging.getLogger("file_source")

NONE_SEEN: Final = 2**64 - 1
"""The point of reference that means "nothing seen": start from the beginning."""
FRAMINGS: Final = ("lines", "u32")
PROTOCOL_VERSION: Final = "0.0.1"
POLL_INTERVAL: Final = 0.005  # seconds between looks at the end of followed files
MAX_RECORD: Final = 15 * 1024 * 1024  # a record must fit in one frame (16 MiB, with headroom)
_HEADER: Final = struct.Struct(">I")

# The states of a file's stream.
JOINING: Final = "joining"  # NOTIFY sent (or due once connected), waiting for NOTIFY_ACK
OPEN: Final = "open"  # sending records
ENDING: Final = "ending"  # EOS sent, waiting for the worker to acknowledge the end
DONE: Final = "done"  # the end is acknowledged; the stream is forgotten


class RecordFile:
    """One file read record by record; a record's point of reference is the offset after it.

    Args:
        path: the file (opened at once, read-only).
        framing: ``lines`` or ``u32``.
        follow: at the end, wait for more instead of ending; a partial last record is then
            waited for too.

    Raises:
        OSError: the file cannot be opened.
    """

    def __init__(self, path: str, framing: str, follow: bool) -> None:
        self.path = path
        self.framing = framing
        self.follow = follow
        self._file: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.position = 0

    def seek(self, point_of_ref: int) -> None:
        """Continue after the record that ends at ``point_of_ref`` (NONE_SEEN: the start).

        Raises:
            ValueError: the offset cannot be a record boundary of this file (beyond its end,
                or, for lines, not just after a newline).
        """
        offset = 0 if point_of_ref == NONE_SEEN else point_of_ref
        size = os.fstat(self._file.fileno()).st_size
        if offset > size:
            raise ValueError(
                f"{self.path}: the worker resumes it at offset {offset}, beyond its end "
                f"({size} bytes); was the file replaced or truncated?"
            )
        if self.framing == "lines" and 0 < offset < size:
            self._file.seek(offset - 1)
            if self._file.read(1) != b"\n":
                raise ValueError(
                    f"{self.path}: the worker resumes it at offset {offset}, which is not the "
                    "start of a line; was the file changed?"
                )
        self._file.seek(offset)
        self.position = offset

    def read(self) -> bytes | None:
        """The next record (its point of reference is then :attr:`position`), or None when
        there is no complete record now.

        Raises:
            ValueError: a ``u32`` record longer than :data:`MAX_RECORD`.
        """
        start = self.position
        record = self._read_line() if self.framing == "lines" else self._read_framed()
        if record is None:
            self._file.seek(start)
            return None
        self.position = self._file.tell()
        return record

    def _read_line(self) -> bytes | None:
        line = self._file.readline()
        if not line:
            return None
        if line.endswith(b"\n"):
            return line[:-2] if line.endswith(b"\r\n") else line[:-1]
        # A last line without its newline: a whole record at the end of a finished file, an
        # unfinished one in a file that is still being written.
        return None if self.follow else line

    def _read_framed(self) -> bytes | None:
        header = self._file.read(4)
        if len(header) == 4:
            (size,) = _HEADER.unpack(header)
            if size > MAX_RECORD:
                raise ValueError(
                    f"{self.path}: a record of {size} bytes at offset {self.position} is larger "
                    f"than {MAX_RECORD}; is the file really u32-framed?"
                )
            body = self._file.read(size)
            if len(body) == size:
                return body
        if header and not self.follow:
            log.warning(
                "%s: a truncated record at offset %d, the end of the file, is not sent",
                self.path, self.position,
            )  # fmt: skip
        return None

    def close(self) -> None:
        self._file.close()


class FileStream:
    """A file and the state of its connector stream."""

    def __init__(self, record_file: RecordFile) -> None:
        self.file = record_file
        self.name = record_file.path
        self.stream_id = wx.stream_id_for(self.name)
        self.key = self.name.encode("utf-8")
        self.state = JOINING
        self.sent = NONE_SEEN  # point of reference of the last record sent or resumed after


class FileSource(wx.AtLeastOnceSourceConnector):
    """Sends files round-robin, one stream each (see the module docstring).

    Args:
        config: the application's source connector (address, cookie, encoder).
        files: the files, already opened.
        throttle: the record rate limit shared by every file.
        instance_name: this process's name in the HELLO.
        poll_interval: seconds between two looks for more at the end of the files.

    The connector's thread calls :meth:`__next__` while the worker grants credits, and the
    hooks; they run with the connector's lock held.
    """

    def __init__(
        self,
        config: wx.SourceConnectorConfig,
        files: Sequence[RecordFile],
        throttle: Throttle,
        instance_name: str,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        super().__init__(
            PROTOCOL_VERSION, config.cookie, "file_source", instance_name, config.host, config.port
        )
        if any(f.follow for f in files):  # nothing wakes us when a file grows: look often
            self.idle_poll = poll_interval
        self._encoder = config.encoder
        self._throttle = throttle
        self._files: dict[int, FileStream] = {}
        for record_file in files:
            stream = FileStream(record_file)
            if stream.stream_id in self._files:
                raise ValueError(f"{stream.name} is given twice")
            self._files[stream.stream_id] = stream
        self._order = list(self._files)
        self._index = -1
        for stream in self._files.values():
            self.notify(stream.stream_id, stream.name, NONE_SEEN)

    def done(self) -> int:
        """How many files are done (their end acknowledged)."""
        with self._lock:
            return sum(1 for s in self._files.values() if s.state == DONE)

    # -- records ----------------------------------------------------------------------------
    def __next__(self) -> Message | None:
        """The next record of the next open file, None if none has one now.

        Raises:
            ValueError: a record the file's framing cannot hold (stops the connector).
            TypeError: the encoder returned something other than bytes, str or None.
        """
        for _ in range(len(self._order)):
            self._index = (self._index + 1) % len(self._order)
            stream = self._files[self._order[self._index]]
            if stream.state != OPEN:
                continue
            message = self._next_record(stream)
            if message is not None:
                return message
        return None

    def _next_record(self, stream: FileStream) -> Message | None:
        while self._throttle.ready():
            record = stream.file.read()
            if record is None:
                if not stream.file.follow:
                    stream.state = ENDING
                    self.end_of_stream(stream.stream_id)
                    log.info(
                        "%s: end of file at offset %d; waiting for the worker to acknowledge it",
                        stream.name, stream.file.position,
                    )  # fmt: skip
                return None
            self._throttle.spend()
            payload = to_bytes(self._encoder.encode(record), "the source encoder's result")
            if payload is not None:  # the encoder may filter records out
                stream.sent = stream.file.position
                return Message(stream.stream_id, stream.sent, 0, stream.key, payload)
        return None

    # -- hooks ------------------------------------------------------------------------------
    def stream_opened(self, stream: wx.Stream) -> None:
        """Resume the file at the worker's position.

        Raises:
            ValueError: the position cannot be right for the file (stops the connector).
        """
        entry = self._files.get(stream.id)
        if entry is None or entry.state == DONE:
            return
        entry.file.seek(stream.point_of_ref)
        entry.sent = stream.point_of_ref
        entry.state = OPEN
        if stream.point_of_ref == NONE_SEEN:
            log.info("%s: starting from the beginning", entry.name)
        else:
            log.info("%s: resuming at offset %d", entry.name, stream.point_of_ref)

    def stream_closed(self, stream: wx.Stream) -> None:
        """The connection is gone: wait for the stream to be opened again (an end not yet
        acknowledged is sent again after the resumed records)."""
        entry = self._files.get(stream.id)
        if entry is not None and entry.state in (OPEN, ENDING):
            entry.state = JOINING

    def stream_acked(self, stream: wx.Stream) -> None:
        """An ending file is done once the worker acknowledges its last record; stop when
        every file is done."""
        entry = self._files.get(stream.id)
        if entry is None or entry.state != ENDING:
            return
        acked = stream.point_of_ref
        if entry.sent != NONE_SEEN and (acked == NONE_SEEN or acked < entry.sent):
            return
        entry.state = DONE
        entry.file.close()
        self.remove_stream(stream.id)
        log.info("%s: every record acknowledged, up to offset %d", entry.name, entry.file.position)
        if all(s.state == DONE for s in self._files.values()):
            self.shutdown()


def parse_options(
    connector: str,
    framing: str | None,
    rate: str | None,
    follow: str | None,
    poll_interval: str | None = None,
) -> tuple[str, float | None, bool, float]:
    """``(framing, rate, follow, poll_interval)`` from the parameters' strings.

    Raises:
        ValueError: ``framing`` or ``follow`` is not valid (the message names the flag).
        UsageError: ``rate`` or ``poll_interval`` is not a positive number.
    """
    framing = framing or "lines"
    if framing not in FRAMINGS:
        raise ValueError(f"--{connector}-framing must be 'lines' or 'u32', got {framing!r}")
    limit = None if rate is None else positive_number(f"--{connector}-rate", rate)
    flag = (follow or "false").lower()
    if flag not in ("true", "false", "yes", "no", "1", "0"):
        raise ValueError(f"--{connector}-follow must be 'true' or 'false', got {follow!r}")
    poll = POLL_INTERVAL
    if poll_interval is not None:
        poll = positive_number(
            f"--{connector}-poll_interval", poll_interval, "a positive number of seconds"
        )
    return framing, limit, flag in ("true", "yes", "1"), poll


def open_files(files: str, framing: str, follow: bool) -> list[RecordFile]:
    """Open every file of the comma-separated list ``files``.

    Raises:
        ValueError: no file is given, one is not a readable regular file, or one is given twice.
    """
    paths = [os.path.abspath(p.strip()) for p in files.split(",") if p.strip()]
    if not paths:
        raise ValueError("no file to send: give --<connector>-files a comma-separated list")
    if len(set(paths)) != len(paths):
        raise ValueError(f"a file is given twice in {files!r}")
    opened: list[RecordFile] = []
    try:
        for path in paths:
            if not os.path.isfile(path):
                raise ValueError(f"{path} is not a file")
            opened.append(RecordFile(path, framing, follow))
    except (OSError, ValueError) as exc:
        for record_file in opened:
            record_file.close()
        raise ValueError(str(exc)) from exc
    return opened


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until every file is done, or SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    args = list(sys.argv if argv is None else argv)
    with ProgramRun(log, errors=(ValueError,)) as run:  # a signal raises Stop: exit code 0
        params = wx.parse_connector_args(
            args, ["files"], ["framing", "rate", "follow", "poll_interval", "instance"]
        )
        config = wx.find_source_connector(params.application, params.connector_name, args)
        framing, rate, follow, poll = parse_options(
            config.name, params.framing, params.rate, params.follow, params.poll_interval
        )
        files = open_files(params.files, framing, follow)
        for record_file in files:
            run.callback(record_file.close)
        instance = params.instance or "file_source"
        source = FileSource(config, files, Throttle(rate), instance, poll)
        run.callback(source.shutdown)  # the last registered is closed first
        log.info(
            "file_source%s for connector '%s': sending %d files (%s, %s%s%s) to the worker "
            "at %s:%d",
            f" '{params.instance}'" if params.instance else "", config.name, len(files),
            ", ".join(f.path for f in files), framing,
            f", at most {rate:g} records/s" if rate else "", ", following" if follow else "",
            config.host, config.port,
        )  # fmt: skip
        source.connect(retry=True)
        error = source.join()
        if error is not None:
            log.error("the connector stopped: %s", error)
            return 1
        log.info("every file is sent and acknowledged (%d files)", source.done())
        return 0
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
