"""The examples on 1, 2 and 3 Ray workers give the embedded engine's results.

Word count (a TCP source and a TCP sink): the same output lines, and per word the same counts
in the same order. The correctness app (the file source and the durable file sink, with
checkpoints): every key's values exactly once and in order, byte for byte the embedded run's.
"""

from __future__ import annotations

import socket
import sys
from collections import defaultdict

import pytest
from fault_driver import wait_until
from ray_helpers import (
    EXAMPLES,
    LineCollector,
    RayPipeline,
    free_port,
    machida_ray,
    send_framed,
    stop_worker,
)

from wallaroo.testing import run

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(180)]

sys.path.insert(0, str(EXAMPLES / "word_count"))
from test_word_count import make_lines  # noqa: E402 - found through the examples' folder


def per_word(lines: list[bytes]) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = defaultdict(list)
    for line in lines:
        word, _, count = line.partition(b" => ")
        found[word].append(count)
    return found


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_word_count_equals_the_embedded_run(ray_address, tmp_path, workers):
    lines = [line.encode() for line in make_lines(1500, seed=workers)]
    source_port = free_port()
    collector = LineCollector()
    args = ["--in", f"Split and Count@127.0.0.1:{source_port}",
            "--out", f"127.0.0.1:{collector.port}"]  # fmt: skip
    embedded = run("word_count", args=args, inputs={"Split and Count": lines})
    (expected,) = embedded.outputs.values()
    log = tmp_path / "worker.log"
    # Two workers through `wallaroo run`, the others through `machida`.
    proc = machida_ray("word_count", args, workers, ray_address, tmp_path, log,
                       wallaroo_run=workers == 2)  # fmt: skip
    try:
        send_framed(source_port, lines)
        wait_until(lambda: len(collector.lines()) >= len(expected), 90, "every count")
    finally:
        stop_worker(proc, log)
        collector.close()
    got = collector.lines()
    assert sorted(got) == sorted(expected)
    assert per_word(got) == per_word(expected)  # per word: the same counts, in the same order
    assert f"{workers} worker" in log.read_text()


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_the_correctness_app_equals_the_embedded_run(ray_address, tmp_path, workers):
    pipeline = RayPipeline(tmp_path, keys=30, per_key=150, files=2, seed=workers,
                           workers=workers, ray_address=ray_address)  # fmt: skip
    with pipeline.reporting():
        pipeline.start()
        pipeline.finish(timeout=120)
        pipeline.check_output()
    records = [r for stream in _inputs(pipeline) for r in stream]
    embedded = run("sequence_check", inputs={"sequences": records})
    (expected,) = embedded.outputs.values()
    got = pipeline.committed().splitlines(keepends=True)
    assert sorted(got) == sorted(expected)
    assert _by_key(got) == _by_key(expected)


def _inputs(pipeline: RayPipeline) -> list[list[bytes]]:
    return [path.read_bytes().splitlines() for path in pipeline.input_paths]


def _by_key(lines: list[bytes]) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = defaultdict(list)
    for line in lines:
        found[line.partition(b":")[0]].append(line)
    return found


def test_a_port_in_use_exits_2_with_one_line(ray_address, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        args = ["--in", f"Split and Count@127.0.0.1:{port}", "--out", "127.0.0.1:9"]
        log = tmp_path / "worker.log"
        proc = machida_ray("word_count", args, 2, ray_address, tmp_path, log)
        assert proc.wait(120) == 2
    (line,) = [x for x in log.read_text().splitlines() if "error:" in x]
    assert line.startswith("machida: error: TCP source 'Split and Count' cannot listen on")


def test_sliding_range_windows_on_two_workers(ray_address, tmp_path):
    """alerts_windowed (a generator source, key by user, 9 s windows sliding by 3 s) on two
    Ray workers, ingest time: as under the embedded worker, each total is the sum of a run of
    one user's consecutive transactions, and once every window has fired (idle after 9 s) each
    transaction has been counted in exactly range/slide = 3 windows."""
    sys.path.insert(0, str(EXAMPLES / "alerts_windowed"))
    import alerts_windowed as aw

    n, users = 3000, 10
    amounts = {f"user{u}": [aw.amount_of(i) for i in range(u, n, users)] for u in range(users)}
    expected = {u: 3 * sum(a) for u, a in amounts.items() if sum(a)}
    collector = LineCollector()
    args = ["--out", f"127.0.0.1:{collector.port}", "--threshold", "-1",
            "--transactions", str(n)]  # fmt: skip
    log = tmp_path / "worker.log"
    proc = machida_ray("alerts_windowed", args, 2, ray_address, tmp_path, log)

    def totals() -> list[tuple[str, int]]:
        found = [line.decode().strip().split(":") for line in collector.lines()]
        return [(user, int(total)) for user, total in found]

    def per_user() -> dict[str, int]:
        sums: dict[str, int] = defaultdict(int)
        for user, total in totals():
            sums[user] += total
        return dict(sums)

    try:
        wait_until(lambda: per_user() == expected, 90, "every window fired")
    finally:
        stop_worker(proc, log)
        collector.close()
    for user, total in totals():
        runs = amounts[user]
        sums = {sum(runs[a:b]) for a in range(len(runs)) for b in range(a + 1, len(runs) + 1)}
        assert total in sums, (user, total)
    assert "2 worker" in log.read_text()
