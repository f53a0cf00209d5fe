"""W1: Celsius to Fahrenheit. A 4-byte big-endian float in, an 8-byte double out
(decode, multiply by 1.8, add 32, encode), as the plain-Python baseline of decisions.md."""

import struct

import wallaroo
import wallaroo.experimental as wx
from bench.apps.common import bench_args, sink, source

SOURCE = "celsius"
SINK = "fahrenheit"


def application_setup(args):
    opts = bench_args(args)
    pipeline = source(SOURCE, opts, decode).to(multiply).to(add).to_sink(sink(SINK, opts, encode))
    return wallaroo.build_application("W1 celsius", pipeline)


@wx.stream_message_decoder
def decode(data):
    return struct.unpack(">f", data)[0]


@wallaroo.computation(name="multiply by 1.8")
def multiply(data):
    return data * 1.8


@wallaroo.computation(name="add 32")
def add(data):
    return data + 32


@wx.stream_message_encoder
def encode(data):
    return struct.pack(">d", data)
