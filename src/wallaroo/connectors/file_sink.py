#!/usr/bin/env python3
"""file_sink: a durable, transactional sink: each worker's committed output in a file.

Usage::

    file_sink --application-module celsius --connector fahrenheit_conversion \\
        --fahrenheit_conversion-path /data/out

Parameters (prefixed with the connector's name):
    path          (required) output file prefix: worker W's output goes to ``<path>.W``.
    txnlog        (optional) transaction log prefix, default ``<path>.txnlog``: ``<txnlog>.W``.
    abort_rules   (optional) a file of fault-injection rules (below).
    instance      (optional) a name for this process in its log lines.

It listens for the workers at the connector's address and takes part in each checkpoint's
two-phase commit. Every payload (the encoder's bytes) is appended to the worker's output file
at its offset. PHASE1 fsyncs the file and appends ``1-ok`` to the transaction log (or
``1-rollback`` when it votes abort: missing or duplicate output, a range that does not match);
PHASE2 appends ``2-ok`` (commit) or ``2-rollback`` and truncates the file back (abort). Every
log record is fsynced before the worker hears of it. When a worker (re)connects, and after a
restart of this program, the log is replayed: the file is truncated to the end of the
transaction waiting for its phase 2 (reported to the worker, which commits or aborts it) or
else of the last commit. So after any crash of either side, the first ``committed`` bytes of
the file, ``committed`` being the last ``2-ok`` end, are exactly the output the worker
committed; :func:`read_committed` returns them. The file must hold the worker's output from
offset 0: keep these files as long as the worker's resilience directory.

The transaction log has one JSON object per line: ``op`` (``1-ok``, ``1-rollback``, ``2-ok``,
``2-rollback``, ``discard``), ``txn``, ``start``, ``end``, ``time`` and, for ``1-rollback``,
``reason``. A torn last line (a crash while writing it) is ignored and cut off.

Abort rules: one JSON object per line (``#`` comments and blank lines allowed), the first that
matches a PHASE1 applies: ``txn_id`` (a regular expression searched in the transaction id) or
``local_txn`` (the n-th PHASE1 of that worker since this program started, from 1), optional
``worker``; ``vote`` (``"commit"`` or ``"abort"``); optional ``close`` (``"before_reply"``:
close the connection instead of replying, the vote being recorded; ``"after_reply"``). A rule
never turns an abort into a commit. For example::

    {"local_txn": 3, "vote": "abort", "close": "after_reply"}
    {"txn_id": "c_id=7$", "vote": "commit", "close": "before_reply"}

Logs go to stderr; the first line names the connector, the address and the files. SIGINT and
SIGTERM stop it cleanly (exit code 0); 1 means a socket failure, 2 a usage or configuration
error. This file is self-contained and uses only the public API: copy it to write your own
transactional sink (see docs/connectors/file_sink.md).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import wallaroo.experimental as wx
from wallaroo.experimental.program import ProgramRun, configure_logging

log = logging.getLogger("file_sink")

_WORKER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


# -- abort rules ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AbortRule:
    """One fault-injection rule (see the module docstring)."""

    line: int
    vote: bool
    close: str | None = None
    txn_id: re.Pattern[str] | None = None
    local_txn: int | None = None
    worker: str | None = None

    def matches(self, worker: str, txn_id: str, number: int) -> bool:
        """True if this rule applies to the ``number``-th PHASE1 of ``worker``."""
        if self.worker is not None and self.worker != worker:
            return False
        if self.txn_id is not None:
            return self.txn_id.search(txn_id) is not None
        return self.local_txn == number


def load_abort_rules(path: str) -> list[AbortRule]:
    """Read an abort-rules file.

    Raises:
        OSError: the file cannot be read.
        ValueError: a line is not a valid rule (the message names the line).
    """
    rules = []
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            if text.strip() and not text.lstrip().startswith("#"):
                try:
                    rules.append(_rule(number, json.loads(text)))
                except (ValueError, TypeError, re.error) as exc:
                    raise ValueError(f"{path}, line {number}: {exc}") from exc
    return rules


def _rule(number: int, spec: Any) -> AbortRule:
    if not isinstance(spec, dict):
        raise ValueError("a rule is a JSON object")
    unknown = set(spec) - {"txn_id", "local_txn", "worker", "vote", "close"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    if ("txn_id" in spec) == ("local_txn" in spec):
        raise ValueError("give exactly one of 'txn_id' and 'local_txn'")
    if spec.get("vote") not in ("commit", "abort"):
        raise ValueError("vote must be 'commit' or 'abort'")
    if spec.get("close") not in (None, "before_reply", "after_reply"):
        raise ValueError("close must be 'before_reply' or 'after_reply'")
    local = spec.get("local_txn")
    if local is not None and (type(local) is not int or local < 1):
        raise ValueError("'local_txn' must be a whole number from 1")
    return AbortRule(
        line=number,
        vote=spec["vote"] == "commit",
        close=spec.get("close"),
        txn_id=re.compile(spec["txn_id"]) if "txn_id" in spec else None,
        local_txn=local,
        worker=spec.get("worker"),
    )


# -- the transaction log ----------------------------------------------------------------------


def worker_paths(path: str, worker: str, txnlog: str | None = None) -> tuple[str, str]:
    """``(output file, transaction log)`` of ``worker`` for the parameters ``path``, ``txnlog``.

    Raises:
        ValueError: the worker's name cannot be part of a file name.
    """
    if not _WORKER_NAME.fullmatch(worker):
        raise ValueError(f"worker name {worker!r} cannot be part of a file name")
    return f"{path}.{worker}", f"{txnlog or path + '.txnlog'}.{worker}"


def read_txnlog(path: str) -> tuple[list[dict[str, Any]], int]:
    """Return the records of a transaction log and the length of its complete lines.

    A missing file has no records. A last line without its newline (torn by a crash) is left
    out.

    Raises:
        ValueError: a complete line is not a record (the log is corrupt).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], 0
    good = data.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(data[:good].splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not _is_record(record):
            raise ValueError(f"transaction log {path} is corrupt at line {number}")
        records.append(record)
    return records, good


def _is_record(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("op"), str)
        and isinstance(record.get("txn"), str)
        and all(type(record.get(key)) is int and record[key] >= 0 for key in ("start", "end"))
    )


def log_state(records: Sequence[dict[str, Any]]) -> tuple[int, wx.Transaction | None]:
    """Replay log records: ``(end of the last commit, transaction awaiting its phase 2)``."""
    committed, prepared = 0, None
    for record in records:
        op = record["op"]
        if op == "1-ok":
            prepared = wx.Transaction(record["txn"], record["start"], record["end"])
        elif op == "2-ok":
            committed, prepared = record["end"], None
        elif op == "2-rollback" and prepared is not None and prepared.txn_id == record["txn"]:
            prepared = None
    return committed, prepared


def read_committed(output: str, txnlog: str) -> bytes:
    """The committed content of a worker's output file, given its transaction log.

    Raises:
        OSError: the output file cannot be read.
        ValueError: the log is corrupt, or the file is shorter than its committed content.
    """
    committed, _ = log_state(read_txnlog(txnlog)[0])
    with open(output, "rb") as f:
        data = f.read(committed)
    if len(data) < committed:
        raise ValueError(f"{output} holds {len(data)} bytes, but {committed} were committed")
    return data


# -- the sink ---------------------------------------------------------------------------------


class FileSink(wx.TransactionalSink):
    """One worker's output file and transaction log (see the module docstring)."""

    def __init__(self, worker: str, output: str, txnlog: str, rules: Sequence[AbortRule]) -> None:
        self._worker, self._output_path, self._txnlog_path = worker, output, txnlog
        self._rules = rules
        self._phase1s = 0
        new = not os.path.exists(output) or not os.path.exists(txnlog)
        self._out = open(output, "a+b")  # noqa: SIM115 - kept open for the sink's lifetime
        self._log = open(txnlog, "a+b")  # noqa: SIM115
        if new:  # the new names must survive a crash of the machine too
            _fsync_dir(output)
            _fsync_dir(txnlog)
        self._committed = self._end = 0

    def recover(self) -> wx.SinkRecovery:
        records, good = read_txnlog(self._txnlog_path)
        if os.fstat(self._log.fileno()).st_size > good:
            log.warning("%s: cutting off a torn last line", self._txnlog_path)
            self._log.truncate(good)
            os.fsync(self._log.fileno())
        committed, prepared = log_state(records)
        end = committed if prepared is None else prepared.end
        self._out.flush()
        size = os.fstat(self._out.fileno()).st_size
        if size < end:
            raise ValueError(
                f"{self._output_path} holds {size} bytes but its transaction log says {end} "
                "were made durable: the two files do not belong together"
            )
        if size > end:
            self._out.truncate(end)
            os.fsync(self._out.fileno())
        self._committed, self._end = committed, end
        log.info(
            "worker '%s': %d bytes committed%s", self._worker, committed,
            "" if prepared is None else f", {prepared.txn_id} awaits its phase 2",
        )  # fmt: skip
        return wx.SinkRecovery(committed, prepared)

    def append(self, offset: int, payloads: Sequence[bytes]) -> None:
        if offset != self._end:
            raise ValueError(f"output at offset {offset}, but the file ends at {self._end}")
        data = b"".join(payloads)
        self._out.write(data)  # "a+b": always at the end of the file
        self._out.flush()  # visible at once (not durable before PHASE1)
        self._end += len(data)

    def prepare(self, txn: wx.Transaction, problem: str | None) -> bool:
        self._phase1s += 1
        rule = next(
            (r for r in self._rules if r.matches(self._worker, txn.txn_id, self._phase1s)), None
        )
        if rule is not None:
            log.info(
                "abort rule of line %d applies to %s (local transaction %d): vote %s%s",
                rule.line, txn.txn_id, self._phase1s, "commit" if rule.vote else "abort",
                f", close {rule.close.replace('_', ' ')}" if rule.close else "",
            )  # fmt: skip
            problem = problem or (None if rule.vote else f"abort rule of line {rule.line}")
            if rule.close is not None:
                self.disconnect(after_reply=rule.close == "after_reply")
        if problem is None and txn.end != self._end:
            problem = f"the transaction ends at {txn.end}, the file at {self._end}"
        if problem is not None:
            self._record("1-rollback", txn, reason=problem)
            return False
        self._out.flush()
        os.fsync(self._out.fileno())
        self._record("1-ok", txn)
        return True

    def commit(self, txn: wx.Transaction) -> None:
        self._record("2-ok", txn)
        self._committed = txn.end

    def abort(self, txn: wx.Transaction) -> None:
        if not self._committed <= txn.start <= self._end:  # never cut committed output
            raise ValueError(
                f"cannot go back to offset {txn.start}: {self._committed} bytes are committed "
                f"and the file ends at {self._end}"
            )
        self._record("2-rollback" if txn.txn_id else "discard", txn)
        self._out.flush()
        self._out.truncate(txn.start)
        os.fsync(self._out.fileno())
        self._end = txn.start

    def close(self) -> None:
        self._out.close()
        self._log.close()

    def _record(self, op: str, txn: wx.Transaction, **extra: str) -> None:
        """Append a record to the transaction log and make it durable."""
        record = {"op": op, "txn": txn.txn_id, "start": txn.start, "end": txn.end}
        line = json.dumps({**record, **extra, "time": round(time.time(), 6)}) + "\n"
        self._log.write(line.encode())
        self._log.flush()
        os.fsync(self._log.fileno())


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the program ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    args = list(sys.argv if argv is None else argv)
    optional = ["txnlog", "abort_rules", "instance"]
    # A signal raises Stop: exit code 0. An OSError here is the rules file: exit code 2.
    with ProgramRun(log, errors=(ValueError,), failures=(wx.ConnectorError,)) as run:
        params = wx.parse_connector_args(args, ["path"], optional)
        rules = load_abort_rules(params.abort_rules) if params.abort_rules else []
        for prefix in (params.path, params.txnlog or params.path):
            if not os.path.isdir(os.path.dirname(os.path.abspath(prefix))):
                raise ValueError(f"the directory of {prefix} does not exist")

        def make_sink(worker: str) -> FileSink:
            output, txnlog = worker_paths(params.path, worker, params.txnlog)
            return FileSink(worker, output, txnlog, rules)

        connector = wx.SinkConnector(args, ["path"], optional, sink_factory=make_sink)
        run.callback(connector.close)
        connector.listen()
        host, port = connector.address
        log.info(
            "file_sink%s for connector '%s': listening for the worker on %s:%d, writing to "
            "%s.<worker>, transaction log %s.<worker>%s",
            f" '{params.instance}'" if params.instance else "", connector.config.name, host,
            port, params.path, params.txnlog or params.path + ".txnlog",
            f", {len(rules)} abort rules from {params.abort_rules}" if rules else "",
        )  # fmt: skip
        error = connector.join()
        log.error("the connector stopped: %s", error)
        return 1
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
