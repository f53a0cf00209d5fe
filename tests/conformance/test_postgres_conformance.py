"""The conformance checks of wallaroo.testing, run against postgres_notify_source and
postgres_insert_sink with the machine's PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from conformance_helpers import (
    MESSAGES,
    assert_sink_conforms,
    assert_source_conforms,
    check_sink,
    check_source,
    sent_pairs,
    unique,
    wait_for,
)
from psycopg import sql

from wallaroo.testing import ConformanceReport

SOURCE_SESSION = "wallaroo postgres_notify_source conformance"  # its application_name


@pytest.fixture
def db(postgres_dsn):
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        yield connection


@contextmanager
def new_table(db) -> Iterator[str]:
    """A fresh table, dropped at the end (with the source's trigger)."""
    name = unique("conformance")
    create = "CREATE TABLE {} (id serial PRIMARY KEY, name text, value text)"
    db.execute(sql.SQL(create).format(sql.Identifier(name)))
    try:
        yield name
    finally:
        db.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))


@pytest.fixture
def table(db):
    with new_table(db) as name:
        yield name


def listening(db, channel: str) -> bool:
    """Whether the source's session has LISTENed on ``channel``: its last statement, finished
    (idle: in autocommit, a LISTEN takes effect when it completes)."""
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'idle'"
        " AND query LIKE 'LISTEN %%' AND position(%s in query) > 0",
        (SOURCE_SESSION, channel),
    ).fetchone()
    return bool(row and row[0])


@pytest.mark.slow
def test_postgres_notify_source_conforms(db, postgres_dsn):
    def attempt() -> ConformanceReport:
        with new_table(db) as table:
            channel = f"wallaroo_{table}"
            insert = sql.SQL("INSERT INTO {} (value) VALUES (%s)").format(sql.Identifier(table))

            def feed(start: int, count: int) -> list[bytes]:
                # A notification reaches only sessions listening when the row commits; the
                # source LISTENs after it connected to the worker, and stays listening while it
                # reconnects to the worker.
                wait_for(lambda: listening(db, channel), f"the source to LISTEN on {channel}")
                values = [f"row-{i}" for i in range(start, start + count)]
                with db.transaction(), db.cursor() as cur:
                    cur.executemany(insert, [(v,) for v in values])
                return [v.encode() for v in values]

            return check_source(
                "postgres_notify_source",
                feed,
                params={"connection": postgres_dsn, "table": table, "column": "value"},
            )

    assert_source_conforms(attempt())


@pytest.mark.slow
def test_postgres_insert_sink_conforms(db, table, postgres_dsn):
    select = sql.SQL("SELECT name, value FROM {}").format(sql.Identifier(table))

    def delivered(sent) -> bool:
        return sent_pairs(sent) <= set(db.execute(select).fetchall())

    report = check_sink(
        "postgres_insert_sink",
        delivered,
        params={"connection": postgres_dsn, "table": table, "columns": "name,value"},
    )
    assert_sink_conforms(report)
    rows = db.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
    assert rows.fetchone()[0] == 2 * MESSAGES  # appended once each
