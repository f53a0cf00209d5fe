"""The workloads' input data, their plain-Python baselines, and the checks of their outputs.

Inputs are generated from a seed, so the sender, the receiver and the in-process run of one
workload all see the same data without passing it around. The baselines of W1 and W2 are the
loops fixed in ``shared/reference/decisions.md`` ("Benchmarks"); W3's is ours (see
``docs/performance.md``).
"""

from __future__ import annotations

import hashlib
import random
import string
import struct
from collections import Counter
from collections.abc import Iterable, Sequence

SEED = 6

# W1 -------------------------------------------------------------------------------------------
_F32 = struct.Struct(">f")


def celsius_inputs(n: int, seed: int = SEED) -> list[bytes]:
    """``n`` Celsius readings as 4-byte big-endian floats."""
    rng = random.Random(seed)
    pack = _F32.pack
    return [pack(rng.uniform(-60.0, 60.0)) for _ in range(n)]


def celsius_baseline(data: Sequence[bytes]) -> list[bytes]:
    """decisions.md's W1 loop: decode, multiply, add, encode."""

    def decode(b: bytes) -> float:
        return struct.unpack(">f", b)[0]

    def multiply(x: float) -> float:
        return x * 1.8

    def add(x: float) -> float:
        return x + 32

    def encode(x: float) -> bytes:
        return struct.pack(">d", x)

    out = []
    for b in data:
        out.append(encode(add(multiply(decode(b)))))
    return out


def celsius_digest(data: Sequence[bytes]) -> str:
    """SHA-256 of the expected output stream (the 8-byte doubles, concatenated)."""
    return hashlib.sha256(b"".join(celsius_baseline(data))).hexdigest()


# W2 -------------------------------------------------------------------------------------------
def vocabulary(size: int = 1000, seed: int = SEED) -> list[str]:
    """``size`` distinct lowercase words of 2 to 9 letters."""
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))))
    return sorted(words)


def word_lines(n: int, seed: int = SEED, vocab_size: int = 1000) -> list[bytes]:
    """``n`` lines of 8 to 12 words (10 on average) from a vocabulary of ``vocab_size``."""
    rng = random.Random(seed + 1)
    vocab = vocabulary(vocab_size, seed)
    return [" ".join(rng.choices(vocab, k=rng.randint(8, 12))).encode() for _ in range(n)]


def distinct_key_lines(n: int) -> Iterable[bytes]:
    """``n`` one-word lines, every word different (the memory and checkpoint runs)."""
    return (b"k%07d" % i for i in range(n))


def word_count_baseline(lines: Sequence[str]) -> list[tuple[str, int]]:
    """decisions.md's W2 loop: split each line, count each word, emit ``(word, count)``."""
    counts: Counter[str] = Counter()
    out = []
    for line in lines:
        for w in line.split():
            counts[w] += 1
            out.append((w, counts[w]))
    return out


class WordCountCheck:
    """Checks a word count's output: every word's counts run 1, 2, 3... in order, and the
    final counts equal ``collections.Counter`` over the input."""

    def __init__(self, lines: Iterable[bytes]) -> None:
        self.expected: Counter[bytes] = Counter()
        for line in lines:
            self.expected.update(line.split())
        self.outputs = sum(self.expected.values())

    def check(self, stream: bytes) -> str | None:
        """None if ``stream`` (``b"word count\\n"`` records) is right, else what is wrong."""
        fields = stream.split()
        if len(fields) != 2 * self.outputs:
            return f"{len(fields) // 2} outputs, expected {self.outputs}"
        seen: dict[bytes, int] = {}
        it = iter(fields)
        for word, count in zip(it, it, strict=True):
            n = seen.get(word, 0) + 1
            if int(count) != n:
                return f"word {word!r}: count {int(count)} where {n} was due"
            seen[word] = n
        if seen != self.expected:
            return "final counts differ from collections.Counter"
        return None


# W3 -------------------------------------------------------------------------------------------
MARKET = struct.Struct(">4sdd")  # as examples/market_spread
ORDER = struct.Struct(">I4scId")
REJECTION = struct.Struct(">I4sdd")


def market_inputs(n: int, seed: int = SEED, symbols: int = 200) -> tuple[list[bytes], list[bytes]]:
    """``(orders, market data)``: ``n`` messages in all, 40% orders. One quote in 50 has a
    wide spread, so few orders are rejected (rare output)."""
    rng = random.Random(seed + 2)
    syms = [
        ("".join(rng.choices(string.ascii_uppercase, k=rng.randint(1, 4)))).encode()
        for _ in range(symbols)
    ]
    syms = sorted(set(syms))
    orders, market = [], []
    for i in range(n):
        sym = rng.choice(syms).ljust(4)
        if i % 5 < 2:
            orders.append(ORDER.pack(i, sym, b"b", rng.randint(1, 500), rng.uniform(90, 110)))
        else:
            mid = rng.uniform(90.0, 110.0)
            spread = 0.2 if rng.random() < 0.02 else rng.uniform(0.001, 0.04)
            market.append(MARKET.pack(sym, mid - spread / 2, mid + spread / 2))
    return orders, market


def interleave(
    orders: Sequence[bytes], market: Sequence[bytes], batch: int
) -> list[tuple[str, Sequence[bytes]]]:
    """The order in which batches are fed: one of orders, one of market data, in turn."""
    plan: list[tuple[str, Sequence[bytes]]] = []
    for start in range(0, max(len(orders), len(market)), batch):
        for name, items in (("Orders", orders), ("Market Data", market)):
            chunk = items[start : start + batch]
            if chunk:
                plan.append((name, chunk))
    return plan


def market_baseline(plan: Sequence[tuple[str, Sequence[bytes]]]) -> list[bytes]:
    """A plain loop doing market spread's work: a dict of ``(bid, offer, reject)`` per symbol
    updated by quotes; an order is rejected while its symbol's spread is wide (or unknown)."""
    state: dict[str, tuple[float, float, bool]] = {}
    out = []
    unpack_m, unpack_o, pack = MARKET.unpack, ORDER.unpack, REJECTION.pack
    for name, batch in plan:
        if name == "Market Data":
            for b in batch:
                sym, bid, offer = unpack_m(b)
                spread = offer - bid
                mid = (offer + bid) / 2
                reject = spread >= 0.05 or (mid > 0 and spread / mid >= 0.05)
                state[sym.decode().strip()] = (bid, offer, reject)
        else:
            for b in batch:
                order_id, sym, _side, _qty, _price = unpack_o(b)
                symbol = sym.decode().strip()
                bid, offer, reject = state.get(symbol, (0.0, 0.0, True))
                if reject:
                    out.append(pack(order_id, symbol.encode().ljust(4), bid, offer))
    return out
