"""A keyed echo for latency rows: a TCP source of 8-byte sequence numbers, key by the number
modulo 16 (so messages cross to every worker on Ray), count per key, and a TCP sink that
writes the sequence number back (8 bytes) so the sender can time each message.

Environment: ``WALLAROO_BENCH_SOURCE`` and ``WALLAROO_BENCH_SINK`` (``host:port``).
"""

import struct

import wallaroo
from bench.apps.common import env_keyed_application
from bench.apps.word_count import WordTotal

SEQ = struct.Struct(">Q")


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode(data):
    return SEQ.unpack(data)[0]


@wallaroo.key_extractor
def key_of(seq):
    return str(seq % 16)


@wallaroo.state_computation(name="seen", state=WordTotal)
def seen(seq, total):
    total.count += 1
    return seq


@wallaroo.encoder
def encode(seq):
    return SEQ.pack(seq)


def application_setup(_args):
    return env_keyed_application("echo keyed", decode, key_of, seen, encode)
