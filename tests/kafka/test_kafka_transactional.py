"""Exactly-once to Kafka: Kafka -> kafka_source -> worker with resilience -> transactional
kafka_sink -> Kafka, read by a ``read_committed`` consumer, across SIGKILLs of the worker
(mid-stream, between its checkpoint commit and PHASE2, between PHASE1 and its checkpoint write)
and of the sink (between its commit vote and PHASE2, right after its Kafka commit, at a PHASE1
before voting), each restarted with the same command. A ``read_uncommitted`` reader may see
records of aborted Kafka transactions: nothing is asserted about it.

The sink is killed at its crash points, never at random: the test broker (Tansu) returns the
records of aborted Kafka transactions to ``read_committed`` consumers too, so a kill during a
PHASE2 produce (the one moment a Kafka transaction with records can abort) would show
duplicates that a real Kafka broker hides."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from connector_helpers import Proc, Procs, start_connector
from kafka_helpers import Kafka
from kafka_txn_app import expected_output
from kafka_txn_helpers import (
    CommittedReader,
    KeyedProducer,
    all_output,
    exactly_once_report,
    killed,
    sigkill,
    start_feed,
    start_txn_sink,
    start_worker,
)

from wallaroo.experimental.txn_spool import read_spool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

N = 6000  # at least this many records (the producer runs until the kills are done)


def crash_in_window(procs: Procs, resilience: Path, sink: Proc, point: str) -> Proc:
    """Start the worker with ``WALLAROO_CRASH_POINT=<point>:<n>``, wait for it to kill itself,
    start it again and return it once it has resolved the transaction the sink holds. A
    checkpoint may hold no output (after a worker restart kafka_source sends nothing for about
    a second; later, input that arrives just after a barrier leaves a checkpoint empty now and
    then): the sink then holds nothing, and the crash is tried again at the next checkpoint."""
    for attempt in range(6):
        crashing = start_worker(procs, resilience, WALLAROO_CRASH_POINT=f"{point}:{10 + attempt}")
        assert killed(crashing) == -signal.SIGKILL, crashing.output
        assert f"killing this worker at {point}" in crashing.output, crashing.output
        mark = len(sink.lines)
        worker = start_worker(procs, resilience)
        if "waits in the spool" in sink.wait_for("worker 'w1': ", start=mark, timeout=30):
            worker.wait_for("holds uncommitted transaction", timeout=30)
            print(f"{point}: the crash hit a transaction at attempt {attempt + 1}")
            return worker
        sigkill(worker)
    raise AssertionError(f"no {point} crash hit a transaction:\n{all_output(procs)}")


def test_worker_sigkills_and_restarts_deliver_every_record_exactly_once(
    procs: Procs, kafka: Kafka, tmp_path: Path
):
    source_topic, sink_topic = kafka.topic("txn-in"), kafka.topic("txn-out")
    spool, resilience = tmp_path / "spool", tmp_path / "res"
    spool.mkdir()
    reader = CommittedReader(kafka.bootstrap, sink_topic)
    producer = KeyedProducer(kafka.bootstrap, source_topic)
    try:
        sink = start_txn_sink(procs, kafka.bootstrap, sink_topic, spool)
        assert "in transactions (transactional.id" in sink.wait_for("kafka_sink for connector")
        worker = start_worker(procs, resilience)
        start_feed(procs, kafka.bootstrap, source_topic, kafka.group("feed"))

        assert reader.wait_for(800, 40) >= 800, all_output(procs)
        sigkill(worker)  # 1: mid-stream, a transaction open at the sink
        worker = start_worker(procs, resilience)
        before = len(reader.values())
        assert reader.wait_for(before + 600, 40) >= before + 600, all_output(procs)
        sigkill(worker)  # 2: mid-stream again
        # 3: the worker dies between its checkpoint commit and PHASE2, while the sink holds the
        # checkpoint's transaction (voted, spooled): the restarted worker commits it
        worker = crash_in_window(procs, resilience, sink, "after-write")
        assert "holds uncommitted transaction" in worker.output, worker.output
        assert "; committing it" in worker.output, worker.output
        sigkill(worker)
        # 4: the worker dies after every vote, before its checkpoint is written: the restarted
        # worker aborts the transaction the sink holds, and sends that output again
        worker = crash_in_window(procs, resilience, sink, "after-phase1")
        assert "; aborting it" in worker.output, worker.output

        produced = producer.stop(at_least=N)
        got = reader.settle(produced, timeout=60)
    finally:
        producer.stop(at_least=0)
        reader.close()
    problem = exactly_once_report(got, expected_output(produced))
    assert not problem, f"{problem}\n{all_output(procs)}"
    assert sorted(got) == sorted(expected_output(produced))
    assert sink.popen.poll() is None, sink.output  # the sink lived through it all
    assert "ERROR" not in sink.output, sink.output


def test_sink_crashes_between_its_vote_and_phase2_and_after_its_kafka_commit(
    procs: Procs, kafka: Kafka, tmp_path: Path
):
    source_topic, sink_topic = kafka.topic("txn-in"), kafka.topic("txn-out")
    spool, resilience = tmp_path / "spool", tmp_path / "res"
    spool.mkdir()
    reader = CommittedReader(kafka.bootstrap, sink_topic)
    producer = KeyedProducer(kafka.bootstrap, source_topic)
    try:
        crash = ("--results-crash_point",)
        sink = start_txn_sink(procs, kafka.bootstrap, sink_topic, spool, *crash, "after-vote:5")
        sink.wait_for("kafka_sink for connector")
        worker = start_worker(procs, resilience)
        start_feed(procs, kafka.bootstrap, source_topic, kafka.group("feed"))

        # 1: the sink voted commit on its 5th transaction and dies before applying PHASE2
        assert killed(sink) == -signal.SIGKILL, sink.output
        assert "killing this process after commit vote 5, before its phase 2" in sink.output
        assert list(spool.glob("*.prepared")), "the voted transaction is not in the spool"
        # 2: restarted, it produces that transaction from its spool when the worker commits it
        sink = start_txn_sink(procs, kafka.bootstrap, sink_topic, spool, *crash, "after-commit:3")
        sink.wait_for("from the spool in a new Kafka transaction", timeout=30)
        # ... and dies right after its 3rd Kafka commit, before deleting that spool file
        assert killed(sink) == -signal.SIGKILL, sink.output
        assert "killing this process after the Kafka commit of" in sink.output
        assert list(spool.glob("*.prepared")), "the committed transaction left no spool file"
        # 3: restarted, it finds that transaction already in Kafka and does not produce it
        # again; then it dies at a PHASE1, before voting, with its transaction open
        sink = start_txn_sink(procs, kafka.bootstrap, sink_topic, spool, *crash, "before-vote:4")
        sink.wait_for("is already in Kafka (the marker is at", timeout=30)
        mark = len(worker.lines)
        assert killed(sink) == -signal.SIGKILL, sink.output
        assert "killing this process at PHASE1 4, before its vote" in sink.output
        # 4: the worker's checkpoint aborted (it lost the sink) and it sends that output again
        sink = start_txn_sink(procs, kafka.bootstrap, sink_topic, spool)
        worker.wait_for("aborted (sinks results voted abort", timeout=30, start=mark)

        produced = producer.stop(at_least=N)
        got = reader.settle(produced, timeout=60)
    finally:
        producer.stop(at_least=0)
        reader.close()
    problem = exactly_once_report(got, expected_output(produced))
    assert not problem, f"{problem}\n{all_output(procs)}"
    assert sorted(got) == sorted(expected_output(produced))
    assert worker.popen.poll() is None, worker.output  # the worker lived through it all
    assert "ERROR" not in worker.output, worker.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--results-transactional", "true"], "transactional true needs --results-spool_dir"),
        (["--results-transactional", "maybe"], "transactional must be 'true' or 'false'"),
        (["--results-spool_dir", "."], "spool_dir need(s) transactional true"),
        (
            ["--results-transactional", "true", "--results-spool_dir", "no/such/dir"],
            "the spool directory no/such/dir does not exist",
        ),
        (
            ["--results-transactional", "true", "--results-spool_dir", ".",
             "--results-crash_point", "after-vote"],
            "crash_point must be before-vote:<n>, after-vote:<n> or after-commit:<n>",
        ),
    ],
)  # fmt: skip
def test_bad_transactional_parameters_exit_2_with_one_line(procs: Procs, extra, message):
    args = ["--application-module", "kafka_txn_app", "--connector", "results",
            "--results-topic", "t", *extra]  # fmt: skip
    proc = start_connector(procs, "kafka_sink", "python -m", *args)
    assert proc.popen.wait(20) == 2
    proc.kill()
    assert len(proc.lines) == 1, proc.output
    assert message in proc.lines[0], proc.output


def test_a_lost_spool_loses_that_transaction_loudly_until_the_marker_is_deleted(
    procs: Procs, kafka: Kafka, tmp_path: Path
):
    """What docs/connectors/kafka.md says happens when the spool directory does not survive:
    the voted transaction is lost, the sink refuses the worker's later output (its marker is
    behind) until the marker group is deleted, and nothing is ever doubled."""
    source_topic, sink_topic = kafka.topic("txn-in"), kafka.topic("txn-out")
    spool, resilience = tmp_path / "spool", tmp_path / "res"
    spool.mkdir()
    reader = CommittedReader(kafka.bootstrap, sink_topic)
    producer = KeyedProducer(kafka.bootstrap, source_topic)
    try:
        sink = start_txn_sink(
            procs, kafka.bootstrap, sink_topic, spool, "--results-crash_point", "after-vote:3"
        )
        sink.wait_for("kafka_sink for connector")
        worker = start_worker(procs, resilience)
        start_feed(procs, kafka.bootstrap, source_topic, kafka.group("feed"))
        assert killed(sink) == -signal.SIGKILL, sink.output
        (prepared,) = spool.glob("*.prepared")
        spooled = read_spool(str(prepared))
        assert spooled is not None
        lost = {payload.decode() for payload in spooled.payloads}
        prepared.unlink()  # the disk is replaced
        mark = len(worker.lines)
        sink = start_txn_sink(procs, kafka.bootstrap, sink_topic, spool)
        for _ in range(3):  # the sink keeps voting abort
            line = worker.wait_for("aborted (sinks results voted abort", timeout=30, start=mark)
            mark = worker.lines.index(line, mark) + 1
        why = ("missing data: output expected at offset", ", but the last commit ended at ")
        assert any(text in sink.output for text in why), sink.output
        stuck = len(reader.values())
        time.sleep(1.0)
        assert len(reader.values()) == stuck, "output went on past the lost transaction"
        group = f"wallaroo-kafka_sink.{sink_topic}.results.w1"  # the marker
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        admin.delete_consumer_groups([group])[group].result(10)
        sink.wait_for("nothing yet committed", timeout=30)  # it takes the worker's offset
        assert reader.wait_for(stuck + 300, 30) >= stuck + 300, all_output(procs)
        produced = producer.stop(at_least=3000)
        expected = [v for v in expected_output(produced) if v not in lost]
        got = reader.settle(len(expected), timeout=60)
    finally:
        producer.stop(at_least=0)
        reader.close()
    assert lost, "the lost transaction had no output"
    assert len(lost) == len(spooled.payloads)
    problem = exactly_once_report(got, expected)  # all but the lost ones, each once
    assert not problem, f"{problem}\n{all_output(procs)}"
