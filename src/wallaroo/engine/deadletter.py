"""Dead letters: messages that could not be processed, kept with the reason.

A message that a decoder rejects, or that raises in user code, is never dropped silently: it
becomes a :class:`DeadLetter`, is counted, and (when the log has a path) is appended to a JSON
Lines file, one object per line::

    {"time": "2026-11-26T22:10:35.123456Z", "worker": "worker", "pipeline": "Celsius Conversion",
     "stage": "decoder decode_feed", "stream_id": 17, "message_id": 3, "key": null,
     "error_type": "struct.error", "message": "unpack requires a buffer of 4 bytes",
     "traceback": "celsius.py:31 in decode_feed", "payload": "AAE=", "payload_encoding": "raw"}

``payload`` is base64: of the raw bytes (``"raw"``) when the failing input was bytes, else of the
value serialised with the application's ``serialize`` (pickle by default; ``"pickle"``), else of
its ``repr`` in UTF-8 (``"repr"``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from wallaroo.logsummary import LogSummary, clip

__all__ = ["DeadLetter", "DeadLetterLog", "DeadLetterStatistics", "encode_payload", "last_frame"]

DEFAULT_FILENAME = "deadletter.jsonl"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message that could not be processed, as written to the dead-letter file.

    Attributes:
        time: when it was recorded, ISO 8601 in UTC with microseconds
            (``2026-11-26T22:10:35.123456Z``), from the engine's clock when the engine gave
            one, else the system clock.
        worker: the worker the message came from.
        pipeline: the pipeline it failed in.
        stage: what failed: a computation's name, ``decoder <name>``, ``encoder of sink
            <name>``, a key function's label...
        stream_id: the input stream it came on (a connector stream id), or None when unknown.
        message_id: its id on that stream (a connector message id, a Kafka offset), or None.
        key: its routing key when it failed in a keyed stage, else None.
        error_type: the exception's class, ``module.QualName`` (just ``QualName`` for builtins
            and ``__main__``).
        message: the error's text.
        traceback: the innermost frame, ``file:line in function`` (empty when there was none).
        payload: the failing input, base64 (see the module docstring).
        payload_encoding: how ``payload`` was made: ``"raw"``, ``"pickle"`` or ``"repr"``.
    """

    time: str
    worker: str
    pipeline: str
    stage: str
    stream_id: int | None
    message_id: int | None
    key: str | None
    error_type: str
    message: str
    traceback: str
    payload: str
    payload_encoding: str

    def payload_bytes(self) -> bytes:
        """The payload, base64-decoded."""
        return base64.b64decode(self.payload)

    def to_json(self) -> str:
        """The record as one line of JSON (non-ASCII kept as is), the dead-letter file's format."""
        return json.dumps(asdict(self), ensure_ascii=False, separators=(", ", ": "))


@dataclass(frozen=True, slots=True)
class DeadLetterStatistics:
    """A snapshot of a :class:`DeadLetterLog`'s counters.

    Attributes:
        total: dead letters recorded since the log was created (one that could not be written
            to the file raised instead and is not counted).
        by_stage: ``(stage, count)`` pairs, sorted by stage.
        path: the JSON Lines file, or None when the letters are kept in memory only.
    """

    total: int
    by_stage: tuple[tuple[str, int], ...]
    path: str | None


def encode_payload(value: Any, serialize: Callable[[Any], bytes] | None = None) -> tuple[str, str]:
    """Return ``(base64 text, encoding)`` for a failing input value."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii"), "raw"
    try:
        data = (serialize or pickle.dumps)(value)
        if isinstance(data, bytes):
            return base64.b64encode(data).decode("ascii"), "pickle"
    except Exception:  # noqa: S110 - any failure falls back to repr below
        pass
    text = repr(value).encode("utf-8", "replace")
    return base64.b64encode(text).decode("ascii"), "repr"


def last_frame(tb: TracebackType | None) -> str:
    """``file:line in function`` of the innermost frame of a traceback."""
    frames = traceback.extract_tb(tb)
    if not frames:
        return ""
    f = frames[-1]
    return f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}"


def error_type(exc: BaseException) -> str:
    """The name a dead letter gives ``exc``'s class: ``module.QualName``, or ``QualName`` for
    builtins and classes defined in ``__main__``.
    """
    cls = type(exc)
    module = cls.__module__
    return (
        cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"
    )


class DeadLetterLog:
    """Collects dead letters: counts them, keeps the latest in memory, appends them to a file.

    Args:
        path: the JSON Lines file to append to, or None to keep them in memory only. Its
            directory is created on the first dead letter.
        worker: the worker name written in every record.
        keep: how many of the latest records :attr:`records` keeps.
        log: where to say so, or None for no log lines. The first dead letter of each stage
            is a WARNING naming the stage, the error and the file; more from that stage give
            at most one summary line per ``summary_interval`` seconds (also from
            :meth:`flush_log`, which a periodic task calls), and :meth:`close` logs the total.
        summary_interval: seconds between two summary lines of one stage.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        worker: str = "worker",
        keep: int = 10_000,
        log: logging.Logger | None = None,
        summary_interval: float = 10.0,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self._summary = (
            LogSummary(log, interval=summary_interval, what="dead letters")
            if log is not None
            else None
        )
        self.worker = worker
        self.records: deque[DeadLetter] = deque(maxlen=keep)
        self.serialize: Callable[[Any], bytes] | None = None
        self._counts: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()
        self._file: Any = None

    def record(
        self,
        *,
        pipeline: str,
        stage: str,
        exc: BaseException,
        value: Any,
        stream_id: int | None = None,
        message_id: int | None = None,
        key: str | None = None,
        message: str | None = None,
        now_ns: int | None = None,
        worker: str | None = None,
    ) -> DeadLetter:
        """Record one dead letter and return it; ``worker`` is the worker the message came
        from (default: the log's ``worker``)."""
        payload, encoding = encode_payload(value, self.serialize)
        seconds = (now_ns / 1e9) if now_ns is not None else datetime.now(UTC).timestamp()
        stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        letter = DeadLetter(
            time=stamp,
            worker=self.worker if worker is None else worker,
            pipeline=pipeline,
            stage=stage,
            stream_id=stream_id,
            message_id=message_id,
            key=key,
            error_type=error_type(exc),
            message=message if message is not None else str(exc),
            traceback=last_frame(exc.__traceback__),
            payload=payload,
            payload_encoding=encoding,
        )
        with self._lock:
            if self.path is not None:
                self._write(letter)  # first: a letter that cannot be written is not counted
            self._total += 1
            self._counts[stage] = self._counts.get(stage, 0) + 1
            self.records.append(letter)
        if self._summary is not None:
            self._summary.event(
                f"stage {stage!r}",
                "dead letter at stage %r of pipeline %r: %s: %s; kept in %s (more from this "
                "stage are summarised every %.0f s)",
                stage,
                pipeline,
                letter.error_type,
                clip(letter.message),
                self.path if self.path is not None else "memory only",
                self._summary.interval,
            )
        return letter

    def flush_log(self) -> None:
        """Log the summary lines that are due (see ``log``); cheap when there are none."""
        if self._summary is not None:
            self._summary.flush()

    def _write(self, letter: DeadLetter) -> None:
        path = self.path
        if path is None:
            return
        if self._file is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
        self._file.write(letter.to_json() + "\n")
        self._file.flush()

    @property
    def total(self) -> int:
        """How many dead letters were recorded so far."""
        return self._total

    def close(self) -> None:
        """Close the file; with a ``log``, log the total (one line) if there were any."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            total, by_stage = self._total, sorted(self._counts.items())
        summary, self._summary = self._summary, None
        if summary is None:
            return
        summary.close(totals=False)
        if total:
            summary.log.warning(
                "%d dead letters in all (%s); kept in %s",
                total,
                ", ".join(f"stage {stage!r}: {n}" for stage, n in by_stage),
                self.path if self.path is not None else "memory only",
            )

    def statistics(self) -> DeadLetterStatistics:
        """A snapshot of the counters (safe from any thread)."""
        with self._lock:
            by_stage = tuple(sorted(self._counts.items()))
            return DeadLetterStatistics(
                self._total, by_stage, str(self.path) if self.path else None
            )
