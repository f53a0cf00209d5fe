"""The seed's celsius example: a connector source of Celsius floats, a connector sink of
Fahrenheit values.

Run it with real processes (see README.md in this folder)::

    machida --application-module celsius
    udp_source --application-module celsius --connector celsius_feed \
        --celsius_feed-host 127.0.0.1 --celsius_feed-port 6789
    udp_sink --application-module celsius --connector fahrenheit_conversion \
        --fahrenheit_conversion-host 127.0.0.1 --fahrenheit_conversion-port 6790
"""

import struct

import wallaroo
import wallaroo.experimental


def application_setup(args):
    ab = wallaroo.ApplicationBuilder("Celsius to Fahrenheit")

    ab.source_connector("celsius_feed",
        encoder=encode_feed,
        decoder=decode_feed)

    ab.sink_connector("fahrenheit_conversion",
        encoder=encode_conversion,
        decoder=decode_conversion)

    ab.new_pipeline("Celsius Conversion", "celsius_feed")
    ab.to(multiply)
    ab.to(add)
    ab.to_sink("fahrenheit_conversion")
    return ab.build()


@wallaroo.experimental.stream_message_encoder
def encode_feed(data):
    return data


@wallaroo.experimental.stream_message_decoder
def decode_feed(data):
    return struct.unpack(">f", data)[0]


@wallaroo.computation(name="multiply by 1.8")
def multiply(data):
    return data * 1.8


@wallaroo.computation(name="add 32")
def add(data):
    return data + 32


@wallaroo.experimental.stream_message_encoder
def encode_conversion(data):
    return str(data).encode()


@wallaroo.experimental.stream_message_decoder
def decode_conversion(data):
    return data.decode()
