"""Correctness app: every key's values must arrive exactly once and in order.

Input messages are ``b"<key>:<n>"``; for each key, n counts 0, 1, 2, ... The state of a key keeps
the last n; a gap or a duplicate raises ``SequenceError`` (the message becomes a dead letter, and
the fault tests require there be none). Each message goes to the sink as ``b"<key>:<n>\\n"``, so
the committed output, per key, must be exactly the input.

Ports and cookie come from the environment (defaults in brackets):
``SEQUENCE_SOURCE_PORT`` [7100], ``SEQUENCE_SINK_PORT`` [7200], ``SEQUENCE_COOKIE`` [Dragons].

    machida --application-module sequence_check --run-with-resilience --resilience-dir DIR
"""

import os

import wallaroo
import wallaroo.experimental as wx


class SequenceError(Exception):
    pass


class LastSeen:
    def __init__(self):
        self.n = -1


@wx.stream_message_encoder
def encode_input(data):
    return data


@wx.stream_message_decoder
def decode_input(data):
    key, _, n = data.partition(b":")
    return (key.decode(), int(n))


@wallaroo.key_extractor
def key_of(message):
    return message[0]


@wallaroo.state_computation(name="check sequence", state=LastSeen)
def check_sequence(message, last):
    key, n = message
    if n != last.n + 1:
        kind = "duplicate" if n <= last.n else "gap"
        raise SequenceError(f"{kind} for key {key}: got {n} after {last.n}")
    last.n = n
    return message


@wx.octet_message_encoder
def encode_output(message):
    return f"{message[0]}:{message[1]}\n".encode()


@wx.octet_message_decoder
def decode_output(data):
    return data


def application_setup(args):
    cookie = os.environ.get("SEQUENCE_COOKIE", "Dragons")
    source_port = int(os.environ.get("SEQUENCE_SOURCE_PORT", "7100"))
    sink_port = int(os.environ.get("SEQUENCE_SINK_PORT", "7200"))
    source = wx.SourceConnectorConfig("sequences", encode_input, decode_input, source_port,
                                      cookie=cookie, max_credits=500, refill_credits=100)
    sink = wx.SinkConnectorConfig("checked", encode_output, decode_output, sink_port,
                                  cookie=cookie)
    pipeline = (wallaroo.source("Sequence Check", source)
                .key_by(key_of)
                .to(check_sequence)
                .to_sink(sink))
    return wallaroo.build_application("Sequence Check", pipeline)


def make_input(keys, per_key, streams=1, seed=0):
    """Input for ``streams`` files: each key's values 0..per_key-1, keys interleaved at random;
    a key always goes to the same stream. Returns one list of payloads per stream."""
    import random

    rng = random.Random(seed)
    remaining = {f"k{k:03d}": 0 for k in range(keys)}
    out = [[] for _ in range(streams)]
    stream_of = {key: i % streams for i, key in enumerate(remaining)}
    live = list(remaining)
    while live:
        key = rng.choice(live)
        n = remaining[key]
        out[stream_of[key]].append(f"{key}:{n}".encode())
        remaining[key] = n + 1
        if n + 1 == per_key:
            live.remove(key)
    return out


def per_key(output_bytes):
    """Split the sink output into each key's list of values, in order."""
    seqs = {}
    for line in output_bytes.decode().splitlines():
        key, _, n = line.partition(":")
        seqs.setdefault(key, []).append(int(n))
    return seqs
