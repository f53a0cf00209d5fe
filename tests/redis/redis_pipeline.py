"""The application of the Redis tests: pub/sub messages ``field=value`` go through the worker,
which upper-cases the value, into a Redis hash (``field`` -> ``VALUE``).

The worker's connector ports, cookie and credits come from the environment, so that each test
picks free ports.
"""

import os

import wallaroo
import wallaroo.experimental as wx


def application_setup(args):
    events = wx.SourceConnectorConfig(
        "events",
        encoder=encode_event,
        decoder=decode_event,
        port=int(os.environ["EVENTS_PORT"]),
        cookie=os.environ.get("COOKIE", ""),
        max_credits=int(os.environ.get("MAX_CREDITS", "4096")),
        refill_credits=int(os.environ.get("REFILL_CREDITS", "1024")),
    )
    table = wx.SinkConnectorConfig(
        "table",
        encoder=encode_entry,
        decoder=decode_entry,
        port=int(os.environ["TABLE_PORT"]),
        cookie=os.environ.get("COOKIE", ""),
    )
    pipeline = wallaroo.source("events", events).to(shout).to_sink(table)
    return wallaroo.build_application(os.environ.get("APP_NAME", "redis"), pipeline)


@wx.stream_message_encoder
def encode_event(data):
    return data


@wx.stream_message_decoder
def decode_event(data):
    field, _, value = data.decode().partition("=")
    return field, value


@wallaroo.computation(name="shout")
def shout(entry):
    return entry[0], entry[1].upper()


@wx.stream_message_encoder
def encode_entry(entry):
    return "{}\t{}".format(*entry)


@wx.stream_message_decoder
def decode_entry(data):
    field, value = data.decode().split("\t")  # a value with a tab in it raises: a dead letter
    return field, value
