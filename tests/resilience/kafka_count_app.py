"""The built-in Kafka source (``--kafka_source_*`` flags) feeding a keyed count behind a
connector sink (port COUNT_SINK_PORT): for the resilience tests."""

import os

from counting_app import count, decode_out, encode_out, key_of

import wallaroo
import wallaroo.experimental as wx


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode(data):
    return data.decode()


def application_setup(args):
    sink = wx.SinkConnectorConfig(
        "counts", encode_out, decode_out, int(os.environ["COUNT_SINK_PORT"]), cookie="c"
    )
    source = wallaroo.source("keys", wallaroo.DefaultKafkaSourceCLIParser(decode))
    return wallaroo.build_application(
        "Kafka counting", source.key_by(key_of).to(count).to_sink(sink)
    )
