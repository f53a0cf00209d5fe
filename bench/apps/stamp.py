"""The connector latency application: each input says when it was written, the computation
says when the worker ran it.

In: ASCII ``"<kind> <seq> <written ns>"`` (``kind`` ``m``: measured, ``w``: warm-up;
``time.monotonic_ns()`` of the moment the writer handed it to the external system), through
the connector source ``feed``, whose encoder passes the bytes (or text) unchanged, so that every
prebuilt source connector can carry it. Out, to a TCP sink: ``>cIQQ`` (kind, seq, written ns,
``time.monotonic_ns()`` when the computation ran in the worker).
"""

import struct
import time

import wallaroo
import wallaroo.experimental as wx
from bench.apps.common import bench_args, identity_encoder

SOURCE = "feed"
OUT = struct.Struct(">cIQQ")


def application_setup(args):
    opts = bench_args(args)
    feed = wx.SourceConnectorConfig(
        SOURCE, identity_encoder, decode, opts.bench_source_port, host=opts.bench_host
    )
    sink = wallaroo.TCPSinkConfig(opts.bench_host, opts.bench_sink_port, encode)
    pipeline = wallaroo.source(SOURCE, feed).to(stamp).to_sink(sink)
    return wallaroo.build_application("connector latency", pipeline)


@wx.stream_message_decoder
def decode(data):
    kind, seq, written = bytes(data).split()
    return kind, int(seq), int(written)


@wallaroo.computation(name="stamp")
def stamp(data):
    return (*data, time.monotonic_ns())


@wx.stream_message_encoder
def encode(data):
    return OUT.pack(*data)
