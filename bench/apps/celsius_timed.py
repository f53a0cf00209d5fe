"""W1 for the latency run: each input carries its send time, which goes through the pipeline to
the output. In: ``>fQ`` (Celsius, send time in ns of ``time.monotonic_ns``); out: ``>dQ``."""

import struct

import wallaroo
import wallaroo.experimental as wx
from bench.apps.common import bench_args, sink, source

SOURCE = "celsius"
SINK = "fahrenheit"
IN = struct.Struct(">fQ")
OUT = struct.Struct(">dQ")


def application_setup(args):
    opts = bench_args(args)
    pipeline = source(SOURCE, opts, decode).to(multiply).to(add).to_sink(sink(SINK, opts, encode))
    return wallaroo.build_application("W1 celsius, timed", pipeline)


@wx.stream_message_decoder
def decode(data):
    return IN.unpack(data)


@wallaroo.computation(name="multiply by 1.8")
def multiply(data):
    return (data[0] * 1.8, data[1])


@wallaroo.computation(name="add 32")
def add(data):
    return (data[0] + 32, data[1])


@wx.stream_message_encoder
def encode(data):
    return OUT.pack(*data)
