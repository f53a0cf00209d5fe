#!/usr/bin/env python3
"""postgres_notify_source: turn the inserts into a PostgreSQL table into a stream, with a
trigger that NOTIFYs each new row and a LISTEN that sends each notification to Wallaroo.

Usage::

    postgres_notify_source --application-module app --connector orders \\
        --orders-connection postgresql://postgres@127.0.0.1:5432/test --orders-table orders

Parameters (prefixed with the connector's name):
    connection   (required) a libpq connection string (DSN or URI).
    table        (required) the table, ``name`` or ``schema.name``, taken literally (quoted, so
                 case matters).
    channel      (optional) the notification channel (default ``wallaroo_<table>``, dots
                 replaced by ``_``).
    column       (optional) send only this column's value, as text (a NULL sends an empty
                 payload); by default the whole row as JSON (``row_to_json``).
    instance     (optional) names the stream ``<connector>-<instance>`` so that several
                 processes can feed one connector.

At start (and after every reconnection) it creates, idempotently, the trigger function
``wallaroo_notify_insert()`` and an ``AFTER INSERT ... FOR EACH ROW`` trigger named
``wallaroo_notify_<channel>`` on the table, which calls ``pg_notify(channel, payload)``; then it
LISTENs on the channel and writes each notification's payload (a ``str``) through the
application's source encoder to the worker. The trigger stays when the program stops; drop it
with ``DROP TRIGGER wallaroo_notify_<channel> ON <table>``. PostgreSQL limits a payload to
7999 bytes: an INSERT whose payload is longer fails, so choose ``column`` for wide rows.

Delivery is at-most-once across a restart of this program or a lost database connection:
PostgreSQL delivers a notification only to sessions listening when the inserting transaction
commits, so rows inserted while this program is not running or is reconnecting (0.2 s backing
off to 5 s, logged) are not sent; the table itself still holds them. A notification once
received is held until the worker acknowledges it and sent again after a reconnection to the
worker.

Logs go to stderr; the first line names the connector, the database and the worker's address.
SIGINT and SIGTERM stop it cleanly (exit code 0); 1 means the worker refused the connector,
2 a usage or configuration error (a missing table or column, or psycopg missing:
``pip install 'wallaroo-py[postgres]'``).

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import wallaroo.experimental
from wallaroo.experimental.program import (
    ProgramRun,
    UsageError,
    configure_logging,
    first_line,
    import_client,
    send_forever,
)

if TYPE_CHECKING:
    import psycopg

PROGRAM = "postgres_notify_source"
log = logging.getLogger(PROGRAM)

FIRST_DELAY = 0.2
MAX_DELAY = 5.0

TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION wallaroo_notify_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_NARGS > 1 THEN
        PERFORM pg_notify(TG_ARGV[0], to_jsonb(NEW) ->> TG_ARGV[1]);
    ELSE
        PERFORM pg_notify(TG_ARGV[0], row_to_json(NEW)::text);
    END IF;
    RETURN NULL;
END;
$$
"""


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


class Listener:
    """A LISTEN on the channel the table's trigger notifies, surviving lost connections.

    Args:
        psycopg_module: the imported ``psycopg`` package.
        dsn: the connection string.
        table: the table (``schema.name`` allowed).
        channel: the notification channel.
        column: the column to send, or None for the whole row as JSON.
        naming: extra connection parameters (the ``application_name``).
    """

    def __init__(
        self,
        psycopg_module: ModuleType,
        dsn: str,
        table: str,
        channel: str,
        column: str | None,
        naming: dict[str, str],
    ) -> None:
        self.pg, self.naming = psycopg_module, naming
        self.dsn, self.table, self.channel, self.column = dsn, table, channel, column
        self._conn: psycopg.Connection[Any] | None = None

    def open(self, *, again: bool = False) -> None:
        """Connect, install the trigger and LISTEN; retry (0.2 s backing off to 5 s) while
        PostgreSQL is unreachable. Logs once listening.

        Raises:
            UsageError: the table or column does not exist, or access is denied.
        """
        delay = FIRST_DELAY
        logged = again
        while True:
            try:
                conn = self.pg.connect(self.dsn, autocommit=True, connect_timeout=5, **self.naming)
            except self.pg.OperationalError as exc:
                if not logged:
                    log.info("waiting for PostgreSQL (%s); retrying", first_line(exc))
                    logged = True
                time.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
                continue
            try:
                self._install(conn)
            except self.pg.ProgrammingError as exc:
                conn.close()
                raise UsageError(f"cannot stream table {self.table}: {first_line(exc)}") from exc
            except self.pg.Error as exc:  # lost again, or a concurrent installation
                conn.close()
                log.info("setting up the trigger failed (%s); retrying", first_line(exc))
                time.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
                continue
            self._conn, info = conn, conn.info
            log.info(
                "listening on channel '%s' for inserts into %s at PostgreSQL %s:%s/%s%s",
                self.channel, self.table, info.host, info.port, info.dbname,
                " again; rows inserted meanwhile were not sent" if again else "",
            )  # fmt: skip
            return

    def _install(self, conn: psycopg.Connection[Any]) -> None:
        from psycopg import sql

        table = sql.Identifier(*self.table.split("."))
        trigger = sql.Identifier(f"wallaroo_notify_{self.channel}")
        arguments = [sql.Literal(self.channel)]
        if self.column is not None:
            conn.execute(sql.SQL("SELECT {} FROM {} LIMIT 0").format(
                sql.Identifier(self.column), table))  # fmt: skip
            arguments.append(sql.Literal(self.column))
        else:
            conn.execute(sql.SQL("SELECT FROM {} LIMIT 0").format(table))
        with conn.transaction():
            conn.execute(TRIGGER_FUNCTION)
            conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(trigger, table))
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER {} AFTER INSERT ON {} FOR EACH ROW "
                    "EXECUTE FUNCTION wallaroo_notify_insert({})"
                ).format(trigger, table, sql.SQL(", ").join(arguments))
            )
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))

    def receive(self, timeout: float = 1.0) -> list[str]:
        """Wait up to ``timeout`` seconds for notifications; return the payloads that came
        together. After losing PostgreSQL, reconnect (logged) and return nothing."""
        conn = self._conn
        if conn is None:
            self.open(again=True)
            return []
        try:
            return [n.payload for n in conn.notifies(timeout=timeout, stop_after=1)]
        except self.pg.OperationalError as exc:
            log.warning("lost PostgreSQL (%s); reconnecting", first_line(exc))
            self.close()
            self.open(again=True)
            return []

    def close(self) -> None:
        """Close the connection (the trigger stays). Idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    args = list(sys.argv if argv is None else argv)
    with ProgramRun(log) as run:  # a signal raises Stop: exit code 0
        psycopg_module = import_client(
            "psycopg", "postgres", "the PostgreSQL client library psycopg is missing ({error}); "
            "install it with: {install}",
        )  # fmt: skip
        connector = wallaroo.experimental.SourceConnector(
            args, required_params=["connection", "table"], optional_params=["channel", "column"]
        )
        run.callback(connector.close, timeout=2.0)
        params, name = connector.params, connector.config.name
        channel = params.channel or f"wallaroo_{params.table.replace('.', '_')}"
        database = describe(psycopg_module, params.connection)
        naming = session_name(psycopg_module, params.connection, name)
        listener = Listener(
            psycopg_module, params.connection, params.table, channel, params.column, naming
        )
        run.callback(listener.close)  # the last registered is closed first
        log.info(
            "postgres_notify_source for connector '%s': streaming inserts into %s (channel "
            "'%s') at PostgreSQL %s, sending to the worker at %s:%d", name, params.table,
            channel, database, connector.config.host, connector.config.port,
        )  # fmt: skip
        connector.connect()
        listener.open()
        send_forever(connector, listener.receive)
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
