"""The application of the metrics tests: numbers in, parity counts out.

A TCP source takes u32-framed text integers (``wallaroo send`` sends them); a stateless step
parses them (anything else becomes a dead letter), ``key_by`` parity, a running count per key,
and a TCP sink gets one line per number.

    machida --application-module metrics_app --in numbers@127.0.0.1:PORT --out 127.0.0.1:PORT
"""

import wallaroo


def application_setup(args):
    in_name, in_host, in_port = wallaroo.tcp_parse_input_addrs(args)[0]
    out_host, out_port = wallaroo.tcp_parse_output_addrs(args)[0]
    numbers = wallaroo.source("Parity", wallaroo.TCPSourceConfig(in_name, in_host, in_port, decode))
    pipeline = (
        numbers.to(parse)
        .key_by(parity)
        .to(count)
        .to_sink(wallaroo.TCPSinkConfig(out_host, out_port, encode))
    )
    return wallaroo.build_application("Parity Count", pipeline)


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode(data):
    return data.decode("utf-8")


@wallaroo.computation(name="parse")
def parse(text):
    return int(text)


@wallaroo.key_extractor
def parity(n):
    return "even" if n % 2 == 0 else "odd"


class Total:
    def __init__(self):
        self.count = 0


@wallaroo.state_computation(name="count", state=Total)
def count(n, total):
    total.count += 1
    return (n, total.count)


@wallaroo.encoder
def encode(item):
    return f"{item[0]} {item[1]}\n".encode()
