"""W2 for the Ray rows: word count fed by a generator source, with optional CPU work per word.

A generator source keeps the input inside the engine (no sender process), so the Ray rows
measure the engine: the generator's value is a line number, ``line_of`` looks the line up in
``LINES`` (the same deterministic lines in every process), then split, key by word, count
(the steps of ``word_count.py``).
``WALLAROO_BENCH_SPIN=N`` makes the count spin ``N`` rounds of integer arithmetic per word
(the bench calibrates ``N`` to about 20 µs): the CPU-heavy variant.

Environment: ``WALLAROO_BENCH_LINES`` (default 20000), ``WALLAROO_BENCH_SPIN`` (default 0),
``WALLAROO_BENCH_SINK`` (``host:port`` of the TCP sink, default 127.0.0.1:7002).
"""

import os
import random

import wallaroo
from bench.apps.word_count import WordTotal, split, word_of

WORDS = [f"w{i:03d}" for i in range(500)]


def make_lines(n, seed=6):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(n)]


LINES = make_lines(int(os.environ.get("WALLAROO_BENCH_LINES", "20000")))
SPIN = int(os.environ.get("WALLAROO_BENCH_SPIN", "0"))


class LineNumbers:
    def initial_value(self):
        return 0

    def apply(self, last):
        return last + 1 if last + 1 < len(LINES) else None


@wallaroo.computation(name="line")
def line_of(number):
    return LINES[number]


def spin(rounds):
    x = 1
    for _ in range(rounds):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


@wallaroo.state_computation(name="count word", state=WordTotal)
def count_word(word, total):
    if SPIN:
        spin(SPIN)
    total.count += 1
    return (word, total.count)


@wallaroo.encoder
def encode(item):
    return f"{item[0]} {item[1]}\n".encode()


def application_setup(args):  # noqa: ARG001 - configured by the environment
    host, _, port = os.environ.get("WALLAROO_BENCH_SINK", "127.0.0.1:7002").rpartition(":")
    pipeline = (
        wallaroo.source("lines", wallaroo.GenSourceConfig("lines", LineNumbers()))
        .to(line_of)
        .to(split)
        .key_by(word_of)
        .to(count_word)
        .to_sink(wallaroo.TCPSinkConfig(host, int(port), encode))
    )
    return wallaroo.build_application("W2 word count (generator)", pipeline)
