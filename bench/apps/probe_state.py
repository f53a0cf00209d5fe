"""Probes through a large keyed state, for the checkpoint-stall row (``bench.state_probe``).

One TCP source of 9-byte messages: a kind byte and a big-endian u64. ``f`` (fill) creates or
updates the state of key ``k<n>`` and outputs nothing; ``p`` (probe) updates key
``k<n % KEYS>`` and outputs ``n`` (8 bytes) to the TCP sink, so the sender can time it.

Environment: ``WALLAROO_BENCH_SOURCE``, ``WALLAROO_BENCH_SINK`` (``host:port``) and
``WALLAROO_BENCH_KEYS`` (the number of keys a probe picks from, default 1,000,000).
"""

import os
import struct

import wallaroo
from bench.apps.common import env_keyed_application
from bench.apps.word_count import WordTotal

NUMBER = struct.Struct(">Q")
KEYS = int(os.environ.get("WALLAROO_BENCH_KEYS", "1000000"))


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode(data):
    return data[:1], NUMBER.unpack_from(data, 1)[0]


@wallaroo.key_extractor
def key_of(message):
    kind, n = message
    return f"k{n}" if kind == b"f" else f"k{n % KEYS}"


@wallaroo.state_computation(name="count", state=WordTotal)
def count(message, total):
    total.count += 1
    kind, n = message
    return n if kind == b"p" else None


@wallaroo.encoder
def encode(n):
    return NUMBER.pack(n)


def application_setup(_args):
    return env_keyed_application("probe state", decode, key_of, count, encode)
