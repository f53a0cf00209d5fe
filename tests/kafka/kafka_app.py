"""The application of the Kafka connector tests: records ``rec-NNNNN`` are upper-cased.

The connector ports come from the environment (``FEED_PORT``, ``RESULTS_PORT``) because fixed
ports may be taken on the machine running the tests.
"""

import os

import wallaroo
import wallaroo.experimental

COOKIE = "Kafka-Cookie"


def application_setup(args):
    feed, results = connector_configs(COOKIE, decode_result)
    return wallaroo.build_application(
        "Kafka shout", wallaroo.source("shout", feed).to(shout).to_sink(results)
    )


def connector_configs(cookie, result_decoder):
    """The ``feed`` source and the ``results`` sink of the Kafka test apps (this one and
    kafka_txn_app), on the ports of the environment; ``result_decoder`` gives ``(key, value)``."""
    feed = _connector(
        wallaroo.experimental.SourceConnectorConfig,
        "feed",
        encode_feed,
        decode_feed,
        cookie,
        max_credits=200,
        refill_credits=50,
    )
    results = _connector(
        wallaroo.experimental.SinkConnectorConfig, "results", encode_result, result_decoder, cookie
    )
    return feed, results


def _connector(config, name, encoder, decoder, cookie, **options):
    port = int(os.environ[f"{name.upper()}_PORT"])
    return config(name, encoder=encoder, decoder=decoder, port=port, cookie=cookie, **options)


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
