"""``wallaroo demo``: a word count through a real worker, all in this process.

A TCP sender, the worker (embedded engine, asyncio, real sockets on 127.0.0.1) and a TCP
receiver run side by side; the demo checks the final counts against ``collections.Counter`` and
prints the most frequent words and the throughput. No external service is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import struct
import time
from collections import Counter
from collections.abc import Sequence

import wallaroo
from wallaroo.loader import load_application
from wallaroo.worker.runtime import Worker, WorkerOptions

__all__ = ["main"]

_VOCABULARY = [
    *("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "stream", "processor"),
    *("python", "wallaroo", "key", "state", "window", "message", "source", "sink", "worker"),
    *("connector", "batch", "exactly", "once", "checkpoint"),
]
_LINE = re.compile(rb"(\S+) => (\d+)\n")


@wallaroo.decoder(header_length=4, length_fmt=">I")
def _decode(data: bytes) -> str:
    return data.decode()


@wallaroo.computation_multi(name="split")
def _split(line: str) -> list[str]:
    return line.split()


@wallaroo.key_extractor
def _word(word: str) -> str:
    return word


class _Total:
    def __init__(self) -> None:
        self.count = 0


@wallaroo.state_computation(name="count", state=_Total)
def _count(word: str, total: _Total) -> tuple[str, int]:
    total.count += 1
    return (word, total.count)


@wallaroo.encoder
def _encode(pair: tuple[str, int]) -> str:
    return f"{pair[0]} => {pair[1]}\n"


def _application(in_port: int, out_port: int) -> wallaroo.Pipeline:
    return (
        wallaroo.source(
            "Word Count", wallaroo.TCPSourceConfig("lines", "127.0.0.1", in_port, _decode)
        )
        .to(_split)
        .key_by(_word)
        .to(_count)
        .to_sink(wallaroo.TCPSinkConfig("127.0.0.1", out_port, _encode))
    )


async def _run(lines: list[str], deadletters: str) -> tuple[dict[str, int], int, float]:
    expected_outputs = sum(len(line.split()) for line in lines)
    received = bytearray()
    done = asyncio.Event()

    async def collect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            received.extend(data)
            if received.count(b"\n") >= expected_outputs:
                done.set()
        writer.close()

    receiver = await asyncio.start_server(collect, "127.0.0.1", 0)
    out_port = receiver.sockets[0].getsockname()[1]
    app = wallaroo.build_application("Word Count demo", _application(0, out_port))
    worker = Worker(load_application(app), WorkerOptions(resilience_dir=deadletters))
    ready = asyncio.Event()
    task = asyncio.create_task(worker.run(ready=lambda _: ready.set()))
    started = asyncio.create_task(ready.wait())
    await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.is_set():  # the worker ended before it was ready: its error, not a hang
        started.cancel()
        await task
        raise RuntimeError("the demo worker stopped before it was ready")
    in_port = worker.addresses["lines"][1]
    start = time.perf_counter()
    _, writer = await asyncio.open_connection("127.0.0.1", in_port)
    for i in range(0, len(lines), 1000):
        writer.write(
            b"".join(
                struct.pack(">I", len(b)) + b for b in (x.encode() for x in lines[i : i + 1000])
            )
        )
        await writer.drain()
    finished = asyncio.create_task(asyncio.wait_for(done.wait(), 120))
    await asyncio.wait({task, finished}, return_when=asyncio.FIRST_COMPLETED)
    if not finished.done():  # the worker failed while counting: say why
        finished.cancel()
        await task
    await finished
    elapsed = time.perf_counter() - start
    writer.close()
    worker.stop()
    await task
    receiver.close()
    final: dict[str, int] = {}
    for word, n in _LINE.findall(bytes(received)):
        final[word.decode()] = int(n)
    return final, expected_outputs, elapsed


def main(argv: Sequence[str] | None = None) -> int:
    """``wallaroo demo [options]``; return 0 when the counts match, else 1."""
    parser = argparse.ArgumentParser(
        prog="wallaroo demo",
        description="A word count through a real worker, all in this process: a TCP sender, "
        "the worker (embedded engine, asyncio, real sockets on 127.0.0.1) and a TCP receiver "
        "run side by side; the demo checks the final counts against collections.Counter and "
        "prints the most frequent words and the throughput. No external service is needed.",
    )
    parser.add_argument("--lines", type=int, default=50_000, help="lines to count (50000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the text")
    parser.add_argument(
        "--deadletters",
        default="build/demo",
        help="directory for the dead-letter file (build/demo)",
    )
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    lines = [" ".join(rng.choices(_VOCABULARY, k=rng.randint(1, 12))) for _ in range(args.lines)]
    print(
        f"wallaroo demo: counting words of {len(lines):,} lines through a worker on "
        "127.0.0.1 (TCP source -> split -> key_by(word) -> count -> TCP sink)"
    )
    final, outputs, elapsed = asyncio.run(_run(lines, args.deadletters))
    expected = Counter(w for line in lines for w in line.split())
    ok = final == dict(expected)
    for word, _ in expected.most_common(5):
        print(f"  {word:>12} => {final.get(word)}")
    print(
        f"{len(lines):,} lines, {outputs:,} outputs in {elapsed:.2f} s "
        f"({len(lines) / elapsed:,.0f} lines/s, {outputs / elapsed:,.0f} outputs/s)"
    )
    print("counts match collections.Counter: " + ("yes" if ok else "NO"))
    return 0 if ok else 1
