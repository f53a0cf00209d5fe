"""The application of the Kafka connector tests: records ``rec-NNNNN`` are upper-cased.

The connector ports come from the environment (``FEED_PORT``, ``RESULTS_PORT``) because fixed
ports may be taken on the machine running the tests.
"""

import os

import wallaroo
import wallaroo.experimental

COOKIE = "Kafka-Cookie"


def application_setup(args):
    feed = wallaroo.experimental.SourceConnectorConfig(
        "feed",
        encoder=encode_feed,
        decoder=decode_feed,
        port=int(os.environ["FEED_PORT"]),
        cookie=COOKIE,
        max_credits=200,
        refill_credits=50,
    )
    results = wallaroo.experimental.SinkConnectorConfig(
        "results",
        encoder=encode_result,
        decoder=decode_result,
        port=int(os.environ["RESULTS_PORT"]),
        cookie=COOKIE,
    )
    return wallaroo.build_application(
        "Kafka shout", wallaroo.source("shout", feed).to(shout).to_sink(results)
    )


@wallaroo.experimental.stream_message_encoder
def encode_feed(value):
    return value


@wallaroo.experimental.stream_message_decoder
def decode_feed(data):
    return data.decode()


@wallaroo.computation(name="shout")
def shout(text):
    return text.upper()


@wallaroo.experimental.stream_message_encoder
def encode_result(text):
    return text


@wallaroo.experimental.stream_message_decoder
def decode_result(data):
    text = data.decode()
    return (text.rpartition("-")[2], text)  # (key, value)
