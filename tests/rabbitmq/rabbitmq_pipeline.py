"""The application of the RabbitMQ test: each queue message is a number ``n``; the worker turns
it into the pair (``m<n>``, ``<2n>``), which the Redis hash sink writes (field -> value), so the
hash has one field per message however often a message was delivered.

The worker's connector ports, cookie and credits come from the environment.
"""

import os

import wallaroo
import wallaroo.experimental as wx


def application_setup(args):
    orders = wx.SourceConnectorConfig(
        "orders",
        encoder=encode_order,
        decoder=decode_order,
        port=int(os.environ["ORDERS_PORT"]),
        cookie=os.environ.get("COOKIE", ""),
        max_credits=int(os.environ.get("MAX_CREDITS", "4096")),
        refill_credits=int(os.environ.get("REFILL_CREDITS", "1024")),
    )
    doubled = wx.SinkConnectorConfig(
        "doubled", encoder=encode_pair, decoder=decode_pair, port=int(os.environ["DOUBLED_PORT"])
    )
    pipeline = wallaroo.source("orders", orders).to(double).to_sink(doubled)
    return wallaroo.build_application("rabbitmq", pipeline)


@wx.stream_message_encoder
def encode_order(data):
    return data


@wx.stream_message_decoder
def decode_order(data):
    return int(data)


@wallaroo.computation(name="double")
def double(n):
    return f"m{n}", str(2 * n)


@wx.stream_message_encoder
def encode_pair(pair):
    return "{}\t{}".format(*pair)


@wx.stream_message_decoder
def decode_pair(data):
    field, value = data.decode().split("\t", 1)
    return field, value
