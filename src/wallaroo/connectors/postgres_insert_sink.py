#!/usr/bin/env python3
"""postgres_insert_sink: receive a connector sink's output from Wallaroo and INSERT each one as
a row of a PostgreSQL table.

Usage::

    postgres_insert_sink --application-module app --connector counts \\
        --counts-connection postgresql://postgres@127.0.0.1:5432/test \\
        --counts-table word_counts --counts-columns word,count

Parameters (prefixed with the connector's name):
    connection   (required) a libpq connection string (DSN or URI).
    table        (required) the table, ``name`` or ``schema.name``, taken literally (quoted, so
                 case matters).
    columns      (required) comma-separated column names, in the order of the tuple the
                 application's sink decoder returns.
    deadletter_path (optional) where outputs the sink decoder rejects are kept (default
                 ``./wallaroo-deadletter/<connector>-sink.jsonl``).

It listens for the worker at the address the application gives the connector. The sink decoder
returns one tuple (or list) per row, as many values as ``columns`` names (a single column may
take a bare value); psycopg adapts the values (str, int, float, bytes, datetime, None, ...).
Rows are inserted in batches, with ``executemany`` in one transaction per batch. A batch the
database rejects for its data (a constraint, a value of the wrong type) is inserted again row by
row, and each failing row is a dead letter; so is an output that is not a row of the right
length, and one the decoder rejects: kept in the dead-letter file (JSON Lines, the worker's
format) and logged, rate-limited.

The table is appended to: at-least-once. When PostgreSQL cannot be reached the batch is held and
inserted again (0.2 s backing off to 5 s, logged) once it is back, while the worker is slowed
down (the connector's buffer pushes back); a batch whose COMMIT was cut off by a lost connection
may therefore be inserted twice. On SIGINT or SIGTERM it stops listening, inserts what it
already received (retrying for at most 2 s, then a warning names how many rows were not
written) and exits with code 0.

Logs go to stderr; the first line names the connector, the worker's address and the database.
Exit code 1 means the worker's address could not be bound, 2 a usage or configuration error
(a missing table or column, or psycopg missing: ``pip install 'wallaroo-py[postgres]'``).

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import wallaroo.experimental
from wallaroo.experimental.program import (
    ProgramRun,
    UsageError,
    configure_logging,
    first_line,
    import_client,
    read_outputs,
    read_remaining,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

PROGRAM = "postgres_insert_sink"
log = logging.getLogger(PROGRAM)

READ_BATCH = 1024
FIRST_DELAY = 0.2
MAX_DELAY = 5.0
STOP_GRACE = 2.0


def describe(psycopg_module: ModuleType, dsn: str) -> str:
    """``host:port/dbname`` of a connection string, for the log (never the password).

    Raises:
        UsageError: the connection string cannot be parsed.
    """
    try:
        info = psycopg_module.conninfo.conninfo_to_dict(dsn)
    except psycopg_module.ProgrammingError as exc:
        raise UsageError(f"cannot parse the connection string: {exc}") from exc
    host = info.get("host") or info.get("hostaddr") or "the default host"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or '(default database)'}"


def session_name(psycopg_module: ModuleType, dsn: str, connector: str) -> dict[str, str]:
    """The ``application_name`` that shows this program in ``pg_stat_activity``, unless the
    connection string sets one."""
    if "application_name" in psycopg_module.conninfo.conninfo_to_dict(dsn):
        return {}
    return {"application_name": f"wallaroo {PROGRAM} {connector}"[:63]}


class TableWriter:
    """Inserts rows into one table, reconnecting while PostgreSQL is unreachable.

    Args:
        psycopg_module: the imported ``psycopg`` package.
        dsn: the connection string.
        table: the table's name (``schema.name`` allowed).
        columns: the column names.
        stop: set by SIGINT/SIGTERM; from then on, retrying gives up after ``STOP_GRACE`` s.
        naming: extra connection parameters (the ``application_name``).
        reject: called with each row the database rejects for its data and the error (the
            program makes it a dead letter); by default the row is logged.
    """

    def __init__(
        self,
        psycopg_module: ModuleType,
        dsn: str,
        table: str,
        columns: list[str],
        stop: threading.Event,
        naming: dict[str, str],
        reject: Callable[[tuple[Any, ...], BaseException], None] | None = None,
    ) -> None:
        from psycopg import sql

        self.pg, self.naming = psycopg_module, naming
        self.reject = reject or _log_rejected
        self.dsn, self.table, self.columns = dsn, table, columns
        self.stop = stop
        self.inserted = self.rejected = 0
        target = sql.Identifier(*table.split("."))
        names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        self.insert: sql.Composed = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            target, names, sql.SQL(", ").join(sql.Placeholder() * len(columns))
        )
        self.probe: sql.Composed = sql.SQL("SELECT {} FROM {} LIMIT 0").format(names, target)
        self._conn: psycopg.Connection[Any] | None = None
        self._lost = False
        self._delay = FIRST_DELAY
        self._give_up_at: float | None = None

    def connect(self, *, holding: bool = False) -> bool:
        """Connect (retrying while PostgreSQL is unreachable) and check the table's columns.

        Args:
            holding: rows wait to be inserted, so a stop gives up only after ``STOP_GRACE`` s.

        Returns:
            True when connected; False when the program is stopping and gave up.

        Raises:
            UsageError: the table or a column does not exist, or access is denied.
        """
        while self._conn is None:
            try:
                conn = self.pg.connect(self.dsn, autocommit=True, connect_timeout=5, **self.naming)
            except self.pg.OperationalError as exc:
                if not self._retry(f"cannot reach PostgreSQL ({first_line(exc)})", holding=holding):
                    return False
                continue
            try:
                conn.execute(self.probe)
            except self.pg.ProgrammingError as exc:
                conn.close()
                columns = ", ".join(self.columns)
                raise UsageError(
                    f"cannot insert into {self.table} ({columns}): {first_line(exc)}"
                ) from exc
            self._conn, info = conn, conn.info
            log.info(
                "connected to PostgreSQL at %s:%s/%s%s", info.host, info.port, info.dbname,
                "; inserting again" if self._lost else "",
            )  # fmt: skip
            self._lost, self._delay = False, FIRST_DELAY
        return True

    def write(self, rows: list[tuple[Any, ...]]) -> bool:
        """Insert ``rows`` in one transaction, holding them while PostgreSQL is unreachable.

        Returns:
            True once inserted (rows the database rejects go to ``reject``); False when
            the program is stopping and gave up (nothing more is inserted).

        Raises:
            UsageError: the table or a column disappeared.
        """
        while True:
            if not self.connect(holding=True):
                return False
            conn = self._conn
            if conn is None:
                continue
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(self.insert, rows)
            except self.pg.OperationalError as exc:
                if conn.closed or conn.broken:
                    self._drop()
                if not self._retry(
                    f"lost PostgreSQL ({first_line(exc)}); holding {len(rows)} rows"
                ):
                    return False
                continue
            except (self.pg.DataError, self.pg.IntegrityError, self.pg.ProgrammingError) as exc:
                if isinstance(exc, self.pg.errors.UndefinedTable | self.pg.errors.UndefinedColumn):
                    raise UsageError(f"cannot insert into {self.table}: {first_line(exc)}") from exc
                rows = self._one_by_one(conn, rows)
                if not rows:
                    return True
                if conn.closed or conn.broken:
                    self._drop()
                if not self._retry(f"lost PostgreSQL; holding {len(rows)} rows"):
                    return False
                continue
            self.inserted += len(rows)
            return True

    def _retry(self, problem: str, *, holding: bool = True) -> bool:
        """Log ``problem`` (once per outage) and wait before the next attempt; False when the
        program is stopping and holds nothing, or its grace period is over."""
        if not self._lost:
            log.warning("%s; retrying", problem)
            self._lost = True
        if self.stop.is_set() and not holding:
            return False
        if self.stop.is_set():
            now = time.monotonic()
            if self._give_up_at is None:
                self._give_up_at = now + STOP_GRACE
            if now >= self._give_up_at:
                return False
        self.stop.wait(self._delay if not self.stop.is_set() else 0.1)
        self._delay = min(self._delay * 2, MAX_DELAY)
        return True

    def _one_by_one(
        self, conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        """Insert each row in its own transaction (after the batch failed); log and drop the
        rows the database rejects. Returns the rows not tried because the connection failed."""
        for index, row in enumerate(rows):
            try:
                with conn.transaction():
                    conn.execute(self.insert, row)
            except self.pg.OperationalError:
                return rows[index:]
            except (self.pg.DataError, self.pg.IntegrityError, self.pg.ProgrammingError) as exc:
                self.rejected += 1
                self.reject(row, exc)
                continue
            self.inserted += 1
        return []

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close the connection. Idempotent."""
        self._drop()


def _log_rejected(row: tuple[Any, ...], exc: BaseException) -> None:
    log.warning("PostgreSQL rejected the row %.200r: %s; dropped", row, first_line(exc))


class Rows:
    """Turns decoded outputs into rows of ``width`` values; what does not fit is a dead letter
    of ``connector``."""

    def __init__(self, width: int, connector: wallaroo.experimental.SinkConnector) -> None:
        self.width = width
        self.connector = connector

    def collect(self, values: list[Any]) -> list[tuple[Any, ...]]:
        """The rows among ``values``; the others are dead letters."""
        rows: list[tuple[Any, ...]] = []
        for value in values:
            if isinstance(value, tuple | list) and len(value) == self.width:
                rows.append(tuple(value))
            elif self.width == 1 and not isinstance(value, tuple | list):
                rows.append((value,))
            else:
                error = ValueError(
                    f"the sink decoder must return a row of {self.width} values, not {value!r:.200}"
                )
                self.connector.dead_letter(value, error, stage="postgres_insert_sink row")
        return rows


def serve(
    connector: wallaroo.experimental.SinkConnector, writer: TableWriter, stop: threading.Event
) -> None:
    """Insert what the worker sends until ``stop`` is set; then stop listening, insert what was
    already received (retrying for at most ``STOP_GRACE`` seconds) and return."""
    rows = Rows(len(writer.columns), connector)
    while not stop.is_set():
        values = read_outputs(connector, log, READ_BATCH, timeout=0.2)
        if values:
            writer.write(rows.collect(values))
    left = 0
    for values in read_remaining(connector, log, READ_BATCH):
        batch = rows.collect(values)
        if batch and (left or not writer.write(batch)):
            left += len(batch)
    if left:
        log.warning("stopped with %d received rows not inserted", left)


def column_list(flag: str, value: str) -> list[str]:
    """The comma-separated column names of ``value``.

    Raises:
        UsageError: a name is empty (the message names ``flag``).
    """
    columns = [c.strip() for c in value.split(",")]
    if not all(columns):
        raise UsageError(f"{flag} must be comma-separated column names, got {value!r}")
    return columns


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    stop = threading.Event()
    args = list(sys.argv if argv is None else argv)
    with ProgramRun(log, stop=stop) as run:  # a signal sets ``stop``: serve() finishes
        psycopg_module = import_client(
            "psycopg", "postgres", "the PostgreSQL client library psycopg is missing ({error}); "
            "install it with: {install}",
        )  # fmt: skip
        connector = wallaroo.experimental.SinkConnector(
            args, required_params=["connection", "table", "columns"]
        )
        params, name = connector.params, connector.config.name
        columns = column_list(f"--{name}-columns", params.columns)
        database = describe(psycopg_module, params.connection)
        naming = session_name(psycopg_module, params.connection, name)
        writer = TableWriter(
            psycopg_module, params.connection, params.table, columns, stop, naming,
            reject=lambda row, exc: connector.dead_letter(
                row, exc, stage=f"postgres_insert_sink INSERT INTO {params.table}"
            ),
        )  # fmt: skip
        run.callback(writer.close)
        run.callback(connector.close)  # the last registered is closed first
        connector.listen()
        log.info(
            "postgres_insert_sink for connector '%s': listening for the worker on %s:%d, "
            "inserting into %s (%s) at PostgreSQL %s", name, *connector.address, params.table,
            ", ".join(columns), database,
        )  # fmt: skip
        if writer.connect():
            serve(connector, writer, stop)
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
