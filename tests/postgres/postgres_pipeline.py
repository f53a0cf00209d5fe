"""The application of the PostgreSQL tests: each notification is a row of the source table as
JSON (``{"id": .., "word": .., "n": ..}``), or only its ``word`` when the source connector is
given ``column``; the worker turns it into the row (``WORD``, ``2n``), which the insert sink
writes into the other table's columns ``(word, n)``.

The worker's connector ports come from the environment.
"""

import json
import os

import wallaroo
import wallaroo.experimental as wx


def application_setup(args):
    rows = wx.SourceConnectorConfig(
        "rows", encoder=encode_row, decoder=decode_row, port=int(os.environ["ROWS_PORT"])
    )
    copies = wx.SinkConnectorConfig(
        "copies", encoder=encode_copy, decoder=decode_copy, port=int(os.environ["COPIES_PORT"])
    )
    pipeline = wallaroo.source("rows", rows).to(transform).to_sink(copies)
    return wallaroo.build_application("postgres", pipeline)


@wx.stream_message_encoder
def encode_row(payload):
    return payload


@wx.stream_message_decoder
def decode_row(data):
    text = data.decode()
    if text.startswith("{"):
        row = json.loads(text)
        return row["word"], row["n"]
    return text, 0


@wallaroo.computation(name="transform")
def transform(row):
    word, n = row
    return word.upper(), 2 * n


@wx.stream_message_encoder
def encode_copy(row):
    return json.dumps(row)


@wx.stream_message_decoder
def decode_copy(data):
    word, n = json.loads(data)
    return word, n
