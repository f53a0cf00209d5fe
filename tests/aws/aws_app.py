"""The application the AWS connector tests run (the worker and the connector programs load it).

Two pipelines, each fed by ``kinesis_source``:

* ``shout``: connector ``records`` -> ``shout`` -> connector ``shouted`` (``kinesis_sink``);
  record ``rec-00042`` (partition key ``00042``) becomes ``REC-00042!`` with key ``00042``.
* ``store``: connector ``documents`` -> ``document`` -> connector ``objects``
  (``s3_bucket_sink``); record ``7:text`` becomes object ``notes/0007.txt`` holding ``TEXT``.

The ports come from the environment (``RECORDS_PORT``, ``SHOUTED_PORT``, ``DOCUMENTS_PORT``,
``OBJECTS_PORT``), so tests can pick free ones. The credit window is small on purpose.
"""

import json
import os

import wallaroo
import wallaroo.experimental as wx

COOKIE = "Kinesis-Cookie"


def application_setup(args):
    records = wx.SourceConnectorConfig(
        "records", encoder=encode_raw, decoder=decode_text,
        port=int(os.environ["RECORDS_PORT"]), cookie=COOKIE, max_credits=200, refill_credits=50,
    )  # fmt: skip
    shouted = wx.SinkConnectorConfig(
        "shouted", encoder=encode_pair, decoder=decode_pair,
        port=int(os.environ["SHOUTED_PORT"]), cookie=COOKIE,
    )  # fmt: skip
    documents = wx.SourceConnectorConfig(
        "documents", encoder=encode_raw, decoder=decode_text,
        port=int(os.environ["DOCUMENTS_PORT"]), cookie=COOKIE,
    )  # fmt: skip
    objects = wx.SinkConnectorConfig(
        "objects", encoder=encode_pair, decoder=decode_pair,
        port=int(os.environ["OBJECTS_PORT"]), cookie=COOKIE,
    )  # fmt: skip
    ab = wallaroo.ApplicationBuilder("AWS connectors")
    ab.new_pipeline("shout", records).to(shout).to_sink(shouted)
    ab.new_pipeline("store", documents).to(document).to_sink(objects)
    return ab.build()


@wx.stream_message_encoder
def encode_raw(data):
    return data


@wx.stream_message_decoder
def decode_text(data):
    return data.decode("utf-8")


@wallaroo.computation(name="shout")
def shout(text):
    return text[len("rec-") :], text.upper() + "!"


@wallaroo.computation(name="document")
def document(text):
    number, body = text.split(":", 1)
    return f"notes/{int(number):04d}.txt", body.upper()


@wx.stream_message_encoder
def encode_pair(pair):
    return json.dumps(list(pair))


@wx.stream_message_decoder
def decode_pair(data):
    key, value = json.loads(data)
    return key, value
