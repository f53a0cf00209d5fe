import asyncio
import re
from collections import Counter

import alerts_windowed as aw

import wallaroo
from wallaroo.loader import load_application
from wallaroo.testing import Harness, MockClock
from wallaroo.worker.runtime import Worker, WorkerOptions

S = 1_000_000_000
RANGE, SLIDE = 9 * S, 3 * S


def expected_totals(n, start, step, threshold, users=10):
    """Per 9 s window sliding by 3 s, each user's total, computed directly."""
    times = [start + i * step for i in range(n)]
    out = Counter()
    first = ((times[0] - RANGE) // SLIDE + 1) * SLIDE
    for w in range(first, times[-1] + 1, SLIDE):
        totals = Counter()
        for i, t in enumerate(times):
            if w <= t < w + RANGE:
                totals[f"user{i % users}"] += aw.amount_of(i)
        for user, total in totals.items():
            if abs(total) > threshold:
                out[f"{user}:{total}"] += 1
    return out


def test_window_totals_in_the_testing_harness():
    clock = MockClock(start_ns=1000 * S, auto_advance_ns=S // 4)  # 4 transactions a second
    h = Harness("alerts_windowed", args=["--out", "127.0.0.1:7002", "--threshold", "1500",
                                         "--transactions", "400"], clock=clock)
    h.generate("transactions", 10_000, batch_size=1)
    h.end_of_input()
    got = Counter(p.decode().strip() for p in h.result().output())
    assert got == expected_totals(400, 1000 * S, S // 4, 1500)
    assert sum(got.values()) > 0


def test_window_totals_under_the_worker(tmp_path):
    """A real worker, ingest time: every window covers a contiguous run of each user's
    transactions, and each transaction counts in exactly range/slide = 3 windows."""
    n, users = 3000, 10

    async def main():
        received = bytearray()

        async def collect(reader, writer):
            while data := await reader.read(65536):
                received.extend(data)
            writer.close()

        server = await asyncio.start_server(collect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loaded = load_application("alerts_windowed", ["--out", f"127.0.0.1:{port}",
                                                      "--threshold", "-1",
                                                      "--transactions", str(n)])
        worker = Worker(loaded, WorkerOptions(resilience_dir=str(tmp_path)))
        ready = asyncio.Event()
        task = asyncio.create_task(worker.run(ready=lambda _: ready.set()))
        await ready.wait()
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:  # idle windows fire after 9 s
            stats = worker.engine.statistics().windows[0]
            if stats.open_windows == 0 and stats.fired > 0:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.3)
        worker.stop()
        await task
        server.close()
        return bytes(received)

    data = asyncio.run(main())
    lines = re.findall(r"^(user\d+):(-?\d+)$", data.decode(), re.M)
    amounts = {f"user{u}": [aw.amount_of(i) for i in range(u, n, users)] for u in range(users)}
    for user, total in lines:
        runs = amounts[user]
        sums = {sum(runs[a:b]) for a in range(len(runs)) for b in range(a + 1, len(runs) + 1)}
        assert int(total) in sums, (user, total)
    per_user = Counter()
    for user, total in lines:
        per_user[user] += int(total)
    assert per_user == Counter({u: 3 * sum(a) for u, a in amounts.items() if sum(a)})


def test_the_window_is_nine_seconds_sliding_by_three():
    app = aw.application_setup(["--out", "127.0.0.1:1"])
    (pipeline,) = app.pipelines
    window = pipeline.flow.steps[1].spec
    assert (window.range_ns, window.slide_ns) == (wallaroo.seconds(9), wallaroo.seconds(3))
