"""Fuzz the worker's connector source: 10,000 connections, one case each.

Cases: random bytes, valid sessions truncated at a random point, valid sessions with random
mutations, length headers beyond the maximum frame size. Every connection must end (an ERROR
frame or a close); oversized headers must get an ERROR; afterwards a good connector is still
served and every one of its messages arrives.
"""

import asyncio
import random

from helpers import COOKIE, Collector, RawClient, checked_app, with_worker

from wallaroo.protocol.frames import EosMessage, Error, Hello, Message, Notify
from wallaroo.worker.runtime import WorkerOptions

CASES = 10_000
SEED = 20261126


def valid_session(rng, stream_id):
    frames = [
        Hello("0.0.1", COOKIE, "fuzz", "i").encode(),
        Notify(stream_id, f"fuzz-{stream_id}", 0).encode(),
    ]
    for i in range(rng.randint(0, 5)):
        payload = rng.choice([b"ok fuzz", b"bad", b"", bytes(rng.randbytes(rng.randint(0, 20)))])
        key = rng.choice([None, b"k"])
        frames.append(Message(stream_id, i, rng.randint(-5, 5), key, payload or None).encode())
    if rng.random() < 0.5:
        frames.append(EosMessage(stream_id).encode())
    return b"".join(frames)


def make_case(rng, n):
    kind = ("random", "truncated", "mutated", "oversized")[n % 4]
    stream_id = 10_000 + n
    if kind == "random":
        data = rng.randbytes(rng.randint(0, 300))
    elif kind == "truncated":
        session = valid_session(rng, stream_id)
        data = session[: rng.randint(0, len(session) - 1)]
    elif kind == "mutated":
        data = bytearray(valid_session(rng, stream_id))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
    else:
        size = rng.choice([16 * 1024 * 1024 + 1, 2**31, 2**32 - 1])
        prefix = Hello("0.0.1", COOKIE, "fuzz", "i").encode() if rng.random() < 0.5 else b""
        data = prefix + size.to_bytes(4, "big") + b"\x05" + rng.randbytes(10)
    return kind, data


async def one_case(port, kind, data, limit):
    async with limit:
        c = await RawClient.open(port)
        c.send(data)
        c.writer.write_eof()
        frames = await c.until_closed(timeout=20)
        return kind, any(isinstance(f, Error) for f in frames)


def test_fuzzed_connections_get_an_error_or_a_close_and_a_good_connector_is_still_served(tmp_path):
    rng = random.Random(SEED)
    cases = [make_case(rng, n) for n in range(CASES)]

    async def scenario(worker, port, sink):
        limit = asyncio.Semaphore(64)
        results = await asyncio.gather(*(one_case(port, k, d, limit) for k, d in cases))
        assert len(results) == CASES  # every connection ended: ERROR frame or close
        assert all(errored for kind, errored in results if kind == "oversized")
        # A good connector after all that: all its messages arrive.
        good = await RawClient.open(port)
        good.send(Hello("0.0.1", COOKIE, "good", "i"), Notify(1, "good", 0))
        good.send(
            b"".join(Message(1, i, 0, None, f"ok good {i}".encode()).encode() for i in range(1000))
        )

        async def good_lines():
            while len(lines := [x for x in sink.lines() if x.startswith("ok good")]) < 1000:
                sink.changed.clear()
                await sink.changed.wait()
            return lines

        lines = await asyncio.wait_for(good_lines(), 30)
        assert lines == [f"ok good {i}" for i in range(1000)]
        good.close()
        return worker.statistics()

    async def main():
        sink = Collector()
        port = await sink.start()
        try:
            return await with_worker(
                checked_app(port),
                lambda w: scenario(w, w.addresses["feed"][1], sink),
                WorkerOptions(resilience_dir=str(tmp_path)),
            )
        finally:
            await sink.close()

    stats = asyncio.run(main())
    (feed,) = [s for s in stats.sources if s.name == "feed"]
    assert feed.connections_total == CASES + 1
    assert feed.errors > CASES // 4
