"""postgres_notify_source and postgres_insert_sink against the machine's PostgreSQL, with a real
worker: rows inserted into one table -> NOTIFY -> worker -> INSERT into another table."""

from __future__ import annotations

import base64
import json
import pickle
import signal

import psycopg
import pytest
from connector_helpers import assert_a_missing_library_is_one_line, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

APP = ["--application-module", "postgres_pipeline"]


@pytest.fixture
def db(postgres_dsn):
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def tables(db, uid):
    """(source table, destination table), dropped at the end with the source's trigger."""
    source, destination = f"src_{uid}", f"dst_{uid}"
    db.execute(f"CREATE TABLE {source} (id serial PRIMARY KEY, word text, n integer)")
    db.execute(f"CREATE TABLE {destination} (word text, n integer)")
    yield source, destination
    db.execute(f"DROP TABLE {source}, {destination}")


@pytest.fixture
def worker_env(procs):
    procs.env["ROWS_PORT"], procs.env["COPIES_PORT"] = str(free_port()), str(free_port())
    return procs.env


def source_args(dsn: str, table: str, *extra: str) -> list[str]:
    return [*APP, "--connector", "rows", "--rows-connection", dsn, "--rows-table", table, *extra]


def sink_args(dsn: str, table: str) -> list[str]:
    return [*APP, "--connector", "copies", "--copies-connection", dsn, "--copies-table", table,
            "--copies-columns", "word,n"]  # fmt: skip


def insert(db, table: str, first: int, count: int, per_transaction: int = 500) -> None:
    """Insert rows (w<i>, i) for i in [first, first + count)."""
    rows = [(f"w{i}", i) for i in range(first, first + count)]
    for start in range(0, count, per_transaction):
        with db.transaction(), db.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} (word, n) VALUES (%s, %s)",
                rows[start : start + per_transaction],
            )


def copied(db, table: str) -> set[tuple[str, int]]:
    return set(db.execute(f"SELECT word, n FROM {table}").fetchall())


def count(db, table: str) -> int:
    return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def expected(first: int, count_: int) -> set[tuple[str, int]]:
    return {(f"W{i}", 2 * i) for i in range(first, first + count_)}


def start_pipeline(procs, launch, dsn, tables, way="executable"):
    source_table, destination = tables
    sink = launch("postgres_insert_sink", way, *sink_args(dsn, destination))
    worker = procs.machida("postgres_pipeline")
    source = launch("postgres_notify_source", way, *source_args(dsn, source_table))
    source.wait_for("listening on channel")
    sink.wait_for("worker 'worker' connected")
    return source, worker, sink


def test_every_inserted_row_reaches_the_other_table_transformed(
    procs, launch, wait_until, worker_env, db, tables, postgres_dsn
):
    source_table, destination = tables
    source, worker, sink = start_pipeline(procs, launch, postgres_dsn, tables)
    insert(db, source_table, 0, 2000)
    wait_until(lambda: count(db, destination) >= 2000, "2000 rows copied")
    assert copied(db, destination) == expected(0, 2000)
    assert count(db, destination) == 2000
    assert source.stop() == 0 and sink.stop(signal.SIGINT) == 0
    assert "ERROR" not in source.output + sink.output + worker.output
    first = source.lines[0]
    assert f"streaming inserts into {source_table} (channel 'wallaroo_{source_table}')" in first
    assert f"worker at 127.0.0.1:{worker_env['ROWS_PORT']}" in first
    assert "PostgreSQL 127.0.0.1:5432/test" in first
    assert f"listening for the worker on 127.0.0.1:{worker_env['COPIES_PORT']}" in sink.lines[0]


def test_each_way_of_running_the_programs_and_the_column_parameter(
    procs, launch, wait_until, worker_env, db, tables, postgres_dsn, uid
):
    """One worker; each way (the seed's templates folder included) starts a fresh source and
    sink, carries 10 rows and stops them with a signal (exit code 0). The templates send only
    the ``word`` column, on a channel of their own."""
    source_table, destination = tables
    worker = procs.machida("postgres_pipeline")
    ways = ["template", "python -m", "wallaroo connector", "copied file"]
    for round_, way in enumerate(ways):
        extra = ["--rows-column", "word", "--rows-channel", f"words_{uid}"] if round_ == 0 else []
        sink = launch("postgres_insert_sink", way, *sink_args(postgres_dsn, destination))
        source = launch("postgres_notify_source", way,
                        *source_args(postgres_dsn, source_table, *extra))  # fmt: skip
        source.wait_for("listening on channel")
        sink.wait_for("worker 'worker' connected")
        insert(db, source_table, 10 * round_, 10)
        wait_until(lambda n=10 * round_ + 10: count(db, destination) >= n, f"{way}: 10 rows")
        sig = signal.SIGINT if round_ % 2 else signal.SIGTERM
        assert source.stop(sig) == 0, source.output
        assert sink.stop(sig) == 0, sink.output
    words_only = {(f"W{i}", 0) for i in range(10)}
    assert copied(db, destination) == words_only | expected(10, 30)
    assert worker.popen.poll() is None
    triggers = db.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass", [source_table]
    ).fetchall()
    assert {name for (name,) in triggers} == {
        f"wallaroo_notify_words_{uid}",
        f"wallaroo_notify_wallaroo_{source_table}",
    }


def test_at_most_once_rows_inserted_while_the_source_is_away_are_not_sent(
    procs, launch, wait_until, worker_env, db, tables, postgres_dsn
):
    """The guarantee docs/connectors/postgres.md states: rows inserted while the source is not
    listening are never sent; those before and after are."""
    source_table, destination = tables
    source, _, _ = start_pipeline(procs, launch, postgres_dsn, tables)
    insert(db, source_table, 0, 100)
    wait_until(lambda: count(db, destination) >= 100, "the first 100")
    assert source.stop() == 0
    insert(db, source_table, 100, 100)
    again = launch("postgres_notify_source", "executable",
                   *source_args(postgres_dsn, source_table))  # fmt: skip
    again.wait_for("listening on channel")
    insert(db, source_table, 200, 100)
    wait_until(lambda: count(db, destination) >= 200, "the last 100")
    assert copied(db, destination) == expected(0, 100) | expected(200, 100)
    assert count(db, source_table) == 300  # the table itself has them all


def terminate(db, application_name: str) -> int:
    """Terminate the server side of the sessions of that name (the programs name theirs)."""
    rows = db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        [application_name],
    ).fetchall()
    return len(rows)


def test_both_programs_reconnect_after_losing_their_database_session(
    procs, launch, wait_until, worker_env, db, tables, postgres_dsn
):
    source_table, destination = tables
    source, _, sink = start_pipeline(procs, launch, postgres_dsn, tables)
    insert(db, source_table, 0, 50)
    wait_until(lambda: count(db, destination) >= 50, "the first 50")
    assert terminate(db, "wallaroo postgres_notify_source rows") == 1
    assert terminate(db, "wallaroo postgres_insert_sink copies") == 1
    source.wait_for("lost PostgreSQL")
    source.wait_for("again; rows inserted meanwhile were not sent")
    insert(db, source_table, 50, 50)
    sink.wait_for("lost PostgreSQL")
    sink.wait_for("inserting again")
    wait_until(lambda: count(db, destination) >= 100, "the next 50")
    assert copied(db, destination) == expected(0, 100)


def test_rows_the_database_rejects_are_dead_letters_the_others_inserted(
    procs, launch, wait_until, worker_env, db, tables, postgres_dsn
):
    source_table, destination = tables
    db.execute(f"ALTER TABLE {destination} ADD CHECK (n < 20)")  # rejects the rows of i >= 10
    _, _, sink = start_pipeline(procs, launch, postgres_dsn, tables)
    insert(db, source_table, 0, 20, per_transaction=20)  # one batch with 10 bad rows
    dead = procs.cwd / "wallaroo-deadletter" / "copies-sink.jsonl"
    wait_until(lambda: dead.exists() and len(dead.read_text().splitlines()) >= 10, "10 letters")
    wait_until(lambda: count(db, destination) >= 10, "the 10 good rows")
    assert copied(db, destination) == expected(0, 10)
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(letters) == 10
    assert {r["stage"] for r in letters} == {f"postgres_insert_sink INSERT INTO {destination}"}
    assert all("check constraint" in r["message"] for r in letters), letters[0]
    assert sorted(pickle.loads(base64.b64decode(r["payload"])) for r in letters) == sorted(
        (f"W{i}", 2 * i) for i in range(10, 20)
    )
    assert sink.output.count("dead letter") <= 2  # the first, and at most one summary


def test_the_sink_waits_for_an_unreachable_database_and_stops_cleanly(procs, launch, worker_env):
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    sink = launch("postgres_insert_sink", "executable", *sink_args(dsn, "t"))
    sink.wait_for("cannot reach PostgreSQL")
    assert sink.stop() == 0, sink.output


@pytest.mark.parametrize("program", ["postgres_notify_source", "postgres_insert_sink"])
def test_a_missing_table_exits_2_naming_it(procs, launch, worker_env, postgres_dsn, program, uid):
    args = (source_args if program == "postgres_notify_source" else sink_args)(
        postgres_dsn, f"missing_{uid}"
    )
    if program == "postgres_notify_source":
        procs.machida("postgres_pipeline")  # the source connects to the worker first
    proc = launch(program, "executable", *args)
    assert proc.popen.wait(20) == 2, proc.output
    assert f'relation "missing_{uid}" does not exist' in proc.output


@pytest.mark.parametrize("program", ["postgres_notify_source", "postgres_insert_sink"])
def test_a_missing_client_library_gives_one_line_naming_the_extra(procs, program):
    assert_a_missing_library_is_one_line(
        procs, "psycopg", "postgres", program, *APP, "--connector", "x"
    )
