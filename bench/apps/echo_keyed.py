"""A keyed echo for latency rows: a TCP source of 8-byte sequence numbers, key by the number
modulo 16 (so messages cross to every worker on Ray), count per key, and a TCP sink that
writes the sequence number back (8 bytes) so the sender can time each message.

Environment: ``WALLAROO_BENCH_SOURCE`` and ``WALLAROO_BENCH_SINK`` (``host:port``).
"""

import os
import struct

import wallaroo

SEQ = struct.Struct(">Q")


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode(data):
    return SEQ.unpack(data)[0]


@wallaroo.key_extractor
def key_of(seq):
    return str(seq % 16)


class Seen:
    def __init__(self):
        self.n = 0


@wallaroo.state_computation(name="seen", state=Seen)
def seen(seq, state):
    state.n += 1
    return seq


@wallaroo.encoder
def encode(seq):
    return SEQ.pack(seq)


def application_setup(_args):
    in_host, in_port = os.environ.get("WALLAROO_BENCH_SOURCE", "127.0.0.1:7010").rsplit(":", 1)
    out_host, out_port = os.environ.get("WALLAROO_BENCH_SINK", "127.0.0.1:7002").rsplit(":", 1)
    source = wallaroo.TCPSourceConfig("seq", in_host, int(in_port), decode)
    pipeline = (
        wallaroo.source("echo", source)
        .key_by(key_of)
        .to(seen)
        .to_sink(wallaroo.TCPSinkConfig(out_host, int(out_port), encode))
    )
    return wallaroo.build_application("echo keyed", pipeline)
