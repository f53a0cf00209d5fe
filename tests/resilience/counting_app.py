"""A keyed count behind connectors, for crash-recovery tests.

Input ``b"<key>"``; output ``b"<key>:<count>\\n"``. Ports and cookie from the environment:
COUNT_SOURCE_PORT, COUNT_SINK_PORT.
"""

import os

import wallaroo
import wallaroo.experimental as wx


class Count:
    def __init__(self):
        self.n = 0


@wx.stream_message_encoder
def encode_in(data):
    return data if isinstance(data, bytes) else str(data).encode()


@wx.stream_message_decoder
def decode_in(data):
    return data.decode()


@wallaroo.key_extractor
def key_of(key):
    return key


@wallaroo.state_computation(name="count", state=Count)
def count(key, state):
    state.n += 1
    return (key, state.n)


@wx.octet_message_encoder
def encode_out(pair):
    return f"{pair[0]}:{pair[1]}\n".encode()


@wx.octet_message_decoder
def decode_out(data):
    return data


def application_setup(args):
    source = wx.SourceConnectorConfig(
        "keys",
        encode_in,
        decode_in,
        int(os.environ["COUNT_SOURCE_PORT"]),
        cookie="c",
        max_credits=200,
        refill_credits=50,
    )
    sink = wx.SinkConnectorConfig(
        "counts", encode_out, decode_out, int(os.environ["COUNT_SINK_PORT"]), cookie="c"
    )
    return wallaroo.build_application(
        "Counting", wallaroo.source("Count", source).key_by(key_of).to(count).to_sink(sink)
    )
