"""The worker's connector sources: handshake, credits, streams, de-duplication, bad input."""

import asyncio
import json
import logging

from helpers import COOKIE, Collector, RawClient, checked_app, with_worker

from wallaroo.protocol.frames import (
    NONE_SEEN,
    Ack,
    EosMessage,
    Error,
    Hello,
    Message,
    Notify,
    NotifyAck,
    Ok,
)
from wallaroo.worker.runtime import WorkerOptions

HELLO = Hello("0.0.1", COOKIE, "test", "instance")


def run(scenario, tmp_path, **app_kw):
    async def main():
        sink = Collector()
        port = await sink.start()
        try:
            return await with_worker(
                checked_app(port, **app_kw),
                lambda w: scenario(w, w.addresses["feed"][1], sink),
                WorkerOptions(resilience_dir=str(tmp_path)),
            )
        finally:
            await sink.close()

    return asyncio.run(main())


async def opened(port, stream_id=1, name="s1", por=0):
    c = await RawClient.open(port)
    c.send(HELLO)
    ok = await c.expect(Ok)
    c.send(Notify(stream_id, name, por))
    ack = await c.expect(NotifyAck)
    return c, ok, ack


def test_messages_flow_and_credits_are_granted_after_processing(tmp_path):
    async def scenario(worker, port, sink):
        c, ok, ack = await opened(port)
        assert ok.initial_credits == 10
        assert (ack.success, ack.point_of_ref) == (True, NONE_SEEN)
        c.send(*(Message(1, i, 0, None, f"ok {i}".encode()) for i in range(8)))
        acked = await c.expect(Ack)
        # 9 frames spent (NOTIFY + 8 messages), credits topped back up to 10.
        assert acked.credits == 9
        assert dict(acked.acks)[1] == 7
        lines = await sink.wait_lines(8)
        assert lines == [f"ok {i}" for i in range(8)]
        c.close()

    run(scenario, tmp_path, max_credits=10, refill=3)


def test_default_listen_address_is_loopback(tmp_path):
    async def scenario(worker, port, sink):
        assert all(host == "127.0.0.1" for host, _ in worker.addresses.values())

    run(scenario, tmp_path)


def test_bad_cookie_and_version_get_an_error_and_a_close_and_the_worker_goes_on(tmp_path, caplog):
    async def scenario(worker, port, sink):
        for hello, words in (
            (Hello("0.0.1", "wrong", "p", "i"), "bad cookie"),
            (Hello("9.9.9", COOKIE, "p", "i"), "unknown protocol version"),
        ):
            c = await RawClient.open(port)
            c.send(hello)
            frames = await c.until_closed()
            (error,) = [f for f in frames if isinstance(f, Error)]
            assert words in error.message
            assert "Dragons" not in error.message
        c, _, _ = await opened(port)
        c.send(Message(1, 0, 0, None, b"ok still served"))
        assert await sink.wait_lines(1) == ["ok still served"]
        c.close()

    with caplog.at_level(logging.WARNING, logger="wallaroo.worker"):
        run(scenario, tmp_path)
    incidents = [r for r in caplog.records if "connection closed" in r.getMessage()]
    assert len(incidents) == 2


def test_malformed_frames_get_an_error_and_a_close(tmp_path):
    cases = {
        "zero length": b"\x00\x00\x00\x00",
        "unknown type": b"\x00\x00\x00\x01\x63",
        "too long": b"\xff\xff\xff\xff\x05",
        "wrong direction": Ok(5).encode(),
        "message before hello": Message(1, 0, 0, None, b"ok").encode(),
    }

    async def scenario(worker, port, sink):
        for name, data in cases.items():
            c = await RawClient.open(port)
            if name != "message before hello":
                c.send(HELLO)
            c.send(data)
            frames = await c.until_closed()
            assert any(isinstance(f, Error) for f in frames), name
        stats = worker.statistics()
        (feed,) = [s for s in stats.sources if s.name == "feed"]
        assert feed.errors == len(cases)

    run(scenario, tmp_path)


def test_truncated_frame_then_eof_is_closed(tmp_path):
    async def scenario(worker, port, sink):
        c = await RawClient.open(port)
        c.send(HELLO, Message(1, 0, 0, None, b"ok").encode()[:7])
        c.writer.write_eof()
        await c.until_closed()

    run(scenario, tmp_path)


def test_message_on_an_unopened_stream(tmp_path):
    async def scenario(worker, port, sink):
        c, _, _ = await opened(port)
        c.send(Message(99, 0, 0, None, b"ok"))
        frames = await c.until_closed()
        (error,) = [f for f in frames if isinstance(f, Error)]
        assert "99" in error.message

    run(scenario, tmp_path)


def test_a_payload_the_decoder_rejects_is_a_dead_letter_with_its_ids(tmp_path):
    async def scenario(worker, port, sink):
        c, _, _ = await opened(port, stream_id=42)
        c.send(
            Message(42, 5, 0, None, b"ok a"),
            Message(42, 6, 0, None, b"bad"),
            Message(42, 7, 0, None, b"ok b"),
        )
        assert await sink.wait_lines(2) == ["ok a", "ok b"]
        c.close()

    run(scenario, tmp_path)
    (line,) = (tmp_path / "deadletter.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert (record["stream_id"], record["message_id"]) == (42, 6)
    assert record["stage"] == "decoder decode"
    assert "not ok" in record["message"]


def test_one_owner_per_stream_and_resume_after_reconnect_with_dedup(tmp_path):
    async def scenario(worker, port, sink):
        first, _, _ = await opened(port, stream_id=7)
        first.send(Message(7, 1, 0, None, b"ok 1"), Message(7, 2, 0, None, b"ok 2"))
        await sink.wait_lines(2)
        second, _, refused = await opened(port, stream_id=7)
        assert refused.success is False
        second.close()
        first.close()
        await asyncio.sleep(0.2)
        again, _, ack = await opened(port, stream_id=7)
        assert (ack.success, ack.point_of_ref) == (True, 2)
        # A replay from the start: ids <= 2 are skipped, 3 is new.
        again.send(*(Message(7, i, 0, None, f"ok {i}".encode()) for i in (1, 2, 3)))
        assert await sink.wait_lines(3) == ["ok 1", "ok 2", "ok 3"]
        again.close()

    run(scenario, tmp_path)


def test_eos_is_acked_and_the_stream_can_be_reopened(tmp_path):
    async def scenario(worker, port, sink):
        c, _, _ = await opened(port, stream_id=3)
        c.send(Message(3, 10, 0, None, b"ok x"), EosMessage(3))
        ack = await c.expect(Ack)
        assert (3, 10) in ack.acks
        c.send(Notify(3, "s3", 0))
        reopened = await c.expect(NotifyAck)
        assert (reopened.success, reopened.point_of_ref) == (True, 10)
        c.close()

    run(scenario, tmp_path)


def test_a_trickle_of_messages_is_acknowledged_soon(tmp_path):
    async def scenario(worker, port, sink):
        c, _, _ = await opened(port, stream_id=5)
        c.send(*(Message(5, i, 0, None, b"ok") for i in range(3)))
        ack = await c.expect(Ack, timeout=2)
        assert (5, 2) in ack.acks
        c.close()

    run(scenario, tmp_path)  # 4096 credits: far from a refill


def dead_letter_lines(caplog):
    return [r for r in caplog.records if "dead letter" in r.getMessage()]


def test_a_dead_letter_is_logged_once_with_the_file_then_summarised(tmp_path, caplog):
    """10,000 undecodable messages of one stage in a burst: three log lines in all (the first,
    one summary when its 10 s have passed, the total at shutdown)."""

    async def scenario(worker, port, sink):
        c, _, _ = await opened(port)
        c.send(*(Message(1, i, 0, None, b"bad %d" % i) for i in range(10_000)))
        c.send(Message(1, 10_000, 0, None, b"ok last"))
        assert await sink.wait_lines(1, timeout=30) == ["ok last"]
        first = dead_letter_lines(caplog)
        assert len(first) == 1
        await asyncio.sleep(11.2)  # the worker's periodic flush logs the summary
        c.close()

    with caplog.at_level(logging.INFO, logger="wallaroo.worker"):
        run(scenario, tmp_path, max_credits=20_000, refill=1_000)
    lines = dead_letter_lines(caplog)
    assert [r.levelno for r in lines] == [logging.WARNING] * 3, [r.getMessage() for r in lines]
    first, summary, total = (r.getMessage() for r in lines)
    path = str(tmp_path / "deadletter.jsonl")
    assert "stage 'decoder decode'" in first and "not ok" in first and path in first
    assert "9,999 more dead letters in the last" in summary and "(10,000 in all)" in summary
    assert total == f"10000 dead letters in all (stage 'decoder decode': 10000); kept in {path}"
    assert len((tmp_path / "deadletter.jsonl").read_text().splitlines()) == 10_000


def test_connectors_connecting_and_leaving_are_one_info_line_each(tmp_path, caplog):
    async def scenario(worker, port, sink):
        c, _, _ = await opened(port)
        c.close()
        stranger = await RawClient.open(port)  # never says HELLO: not worth a line
        stranger.close()
        deadline = asyncio.get_running_loop().time() + 5
        while worker.listeners[0].connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)

    with caplog.at_level(logging.INFO, logger="wallaroo.worker"):
        run(scenario, tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("connector t")]
    assert len(lines) == 2, lines
    assert "connector test (instance) from 127.0.0.1:" in lines[0]
    assert lines[0].endswith("connected to connector source 'feed'")
    assert lines[1].endswith("disconnected from connector source 'feed'")


def test_peer_text_in_the_connect_line_is_escaped(tmp_path, caplog):
    async def scenario(worker, port, sink):
        c = await RawClient.open(port)
        c.send(Hello("0.0.1", COOKIE, "evil\n2026 CRITICAL wallaroo.worker: forged\x1b[2J", "i"))
        await c.expect(Ok)
        c.close()

    with caplog.at_level(logging.INFO, logger="wallaroo.worker"):
        run(scenario, tmp_path)
    lines = [r.getMessage() for r in caplog.records if "evil" in r.getMessage()]
    assert len(lines) == 2  # connected, disconnected
    for line in lines:
        assert "\n" not in line and "\x1b" not in line
        assert "evil\\n2026 CRITICAL" in line


def test_empty_messages_are_counted_not_processed(tmp_path):
    async def scenario(worker, port, sink):
        c, _, _ = await opened(port)
        c.send(Message(1, 0, 0, None, None), Message(1, 1, 0, None, b"ok"))
        assert await sink.wait_lines(1) == ["ok"]
        (stats,) = [s for s in worker.statistics().sources if s.name == "feed"]
        assert (stats.messages, stats.empty_messages) == (1, 1)
        c.close()

    run(scenario, tmp_path)
    assert not (tmp_path / "deadletter.jsonl").exists()


def test_an_internal_engine_error_makes_dead_letters_before_the_ack(tmp_path, caplog):
    """A failure of the engine itself (not of one message) loses nothing: every message of
    the batch is a dead letter, kept in the file, before the batch is acknowledged; the
    traceback is logged once."""

    def broken(*args, **kwargs):
        raise RuntimeError("engine bug")

    async def scenario(worker, port, sink):
        worker.listeners[0].runner.run = broken
        c, _, _ = await opened(port)
        c.send(*(Message(1, i, 0, None, f"m{i}".encode()) for i in range(3)))
        acked = await c.expect(Ack)
        assert dict(acked.acks)[1] == 2
        c.send(Message(1, 3, 0, None, b"m3"))
        await c.expect(Ack)
        c.close()
        return list(worker.engine.dead_letters.records)

    with caplog.at_level(logging.WARNING, logger="wallaroo.worker"):
        letters = run(scenario, tmp_path)
    assert [(d.message_id, d.error_type) for d in letters] == [
        (0, "RuntimeError"),
        (1, "RuntimeError"),
        (2, "RuntimeError"),
        (3, "RuntimeError"),
    ]
    assert all(d.stream_id == 1 and "internal error" in d.stage for d in letters)
    kept = [json.loads(line) for line in (tmp_path / "deadletter.jsonl").read_text().splitlines()]
    assert [k["message_id"] for k in kept] == [0, 1, 2, 3]
    internal = [r for r in caplog.records if "internal error while processing" in r.getMessage()]
    assert len(internal) == 1 and internal[0].exc_info is not None
