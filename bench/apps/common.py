"""What every benchmark application shares: its own flags and its source and sink configs.

The flags travel on the worker's command line (``machida`` passes unknown flags to the
application) and on the connector programs' (which read the same application module):

* ``--bench-transport tcp|connector`` (default ``tcp``);
* ``--bench-host ADDRESS`` (default 127.0.0.1): where everything listens;
* ``--bench-source-port N`` and ``--bench-sink-port N`` (defaults 7010 and 7002).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import wallaroo
import wallaroo.experimental as wx


def bench_args(args: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--bench-transport", choices=("tcp", "connector"), default="tcp")
    parser.add_argument("--bench-host", default="127.0.0.1")
    parser.add_argument("--bench-source-port", type=int, default=7010)
    parser.add_argument("--bench-sink-port", type=int, default=7002)
    known, _ = parser.parse_known_args(list(args)[1:])
    return known


def source(name: str, args: argparse.Namespace, decoder: Any) -> Any:
    """A framed TCP source or a connector source named ``name``; ``decoder`` is a
    ``stream_message_decoder`` (it frames TCP input with a u32 header too)."""
    if args.bench_transport == "connector":
        config = wx.SourceConnectorConfig(
            name, identity_encoder, decoder, args.bench_source_port, host=args.bench_host
        )
    else:
        config = wallaroo.TCPSourceConfig(name, args.bench_host, args.bench_source_port, decoder)
    return wallaroo.source(name, config)


def sink(name: str, args: argparse.Namespace, encoder: Any) -> Any:
    """A TCP sink (the receiver listens) or a connector sink named ``name``."""
    if args.bench_transport == "connector":
        return wx.SinkConnectorConfig(
            name, encoder, identity_decoder, args.bench_sink_port, host=args.bench_host
        )
    return wallaroo.TCPSinkConfig(args.bench_host, args.bench_sink_port, encoder)


@wx.stream_message_encoder
def identity_encoder(data):
    """What a source connector sends: the bytes it is given."""
    return data


@wx.stream_message_decoder
def identity_decoder(data):
    """What a sink connector returns: the payload bytes."""
    return data


def env_keyed_application(name: str, decoder: Any, key_of: Any, step: Any, encoder: Any) -> Any:
    """A one-pipeline application ``name`` for the latency benchmarks: a TCP source at
    ``$WALLAROO_BENCH_SOURCE``, ``key_by(key_of)``, ``step``, a TCP sink at
    ``$WALLAROO_BENCH_SINK`` (``host:port``, defaults 127.0.0.1:7010 and :7002)."""
    in_host, in_port = os.environ.get("WALLAROO_BENCH_SOURCE", "127.0.0.1:7010").rsplit(":", 1)
    out_host, out_port = os.environ.get("WALLAROO_BENCH_SINK", "127.0.0.1:7002").rsplit(":", 1)
    pipeline = (
        wallaroo.source(name, wallaroo.TCPSourceConfig(name, in_host, int(in_port), decoder))
        .key_by(key_of)
        .to(step)
        .to_sink(wallaroo.TCPSinkConfig(out_host, int(out_port), encoder))
    )
    return wallaroo.build_application(name, pipeline)
