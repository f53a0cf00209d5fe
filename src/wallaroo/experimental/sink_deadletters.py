"""The dead letters of a ``SinkConnector``: outputs its program could not take.

An output the application's sink decoder rejects is not dropped: it is appended, with the
error, to a JSON Lines file in the worker's dead-letter format
(:class:`~wallaroo.engine.deadletter.DeadLetterLog`), counted, and logged: the first one in
full (a WARNING naming the file), then at most one summary line per ``interval`` while more
arrive, and the total when the connector closes (:class:`~wallaroo.logsummary.LogSummary`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from wallaroo.engine.deadletter import DeadLetterLog
from wallaroo.engine.directories import deadletter_directory
from wallaroo.errors import ConnectorError
from wallaroo.logsummary import LogSummary, clip

__all__ = ["DEADLETTER_PARAM", "SinkDeadLetters", "default_path"]

DEADLETTER_PARAM = "deadletter_path"
"""The program parameter ``--<connector>-deadletter_path`` every sink connector accepts."""

log = logging.getLogger("wallaroo.connector")


def default_path(connector: str) -> Path:
    """``./wallaroo-deadletter/<connector>-sink.jsonl``, in the current directory."""
    return deadletter_directory() / f"{connector}-sink.jsonl"


class SinkDeadLetters:
    """Records a sink connector's dead letters; thread-safe.

    Args:
        path: the JSON Lines file (made absolute; its directory is created with the first
            dead letter).
        connector: the connector's name (log lines).
        pipelines: the names of the pipelines whose output goes to the connector (the records'
            ``pipeline``).
        stage: the records' ``stage``, ``sink decoder <decoder name>``.
        interval: seconds between two summary lines.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        connector: str,
        pipelines: tuple[str, ...],
        stage: str,
        *,
        interval: float = 10.0,
    ) -> None:
        self.path = Path(os.path.abspath(path))
        self.stage = stage
        self._connector = connector
        self._pipeline = ", ".join(pipelines)
        self._log = DeadLetterLog(self.path, worker="", keep=100)
        self._summary = LogSummary(log, interval=interval, what="dead letters")
        self._cause = f"sink connector '{connector}'"
        self._total_logged = 0

    @property
    def total(self) -> int:
        """How many dead letters were recorded."""
        return self._log.total

    def record(
        self,
        payload: Any,
        error: BaseException,
        *,
        worker: str | None = None,
        stream_id: int | None = None,
        message_id: int | None = None,
        stage: str | None = None,
    ) -> None:
        """Append one dead letter to the file and log it (rate-limited).

        Raises:
            ConnectorError: the file cannot be written (the OSError chained).
        """
        try:
            letter = self._log.record(
                pipeline=self._pipeline,
                stage=stage or self.stage,
                exc=error,
                value=payload,
                stream_id=stream_id,
                message_id=message_id,
                worker=worker or "",
            )
        except OSError as exc:
            raise ConnectorError(
                f"sink connector '{self._connector}' cannot write its dead-letter file "
                f"{self.path}: {exc.strerror or exc}; give a writable one with "
                f"--{self._connector}-{DEADLETTER_PARAM}"
            ) from exc
        where = "" if worker is None else f" from worker '{clip(worker, 60)}'"
        if message_id is not None:
            where += f" (message id {message_id})"
        size = f"{len(payload)} bytes" if isinstance(payload, bytes) else type(payload).__name__
        self._summary.event(
            self._cause,
            "%s: dead letter at %s, an output of %s%s: %s: %s; kept in %s (more are "
            "summarised every %.0f s)",
            self._cause,
            stage or self.stage,
            size,
            where,
            letter.error_type,
            clip(letter.message),
            self.path,
            self._summary.interval,
        )

    def flush(self) -> None:
        """Log the summary line that is due, if any; cheap when there is none."""
        if self._log.total:
            self._summary.flush()

    def log_total(self) -> None:
        """Log the number of dead letters in all, once more than one was recorded and the
        number changed since it was last logged."""
        total = self._log.total
        if total > 1 and total != self._total_logged:
            self._total_logged = total
            log.warning("%s: %d dead letters in all; kept in %s", self._cause, total, self.path)

    def close(self) -> None:
        """Log the total (:meth:`log_total`) and close the file; a later :meth:`record`
        opens it again."""
        self.flush()
        self.log_total()
        self._log.close()
