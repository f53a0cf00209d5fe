"""The applications the connector tests run (written into each test's tmp_path)."""

from __future__ import annotations

COOKIE = "Dragons-Love-Tacos"

# The seed's celsius example (examples/celsius/celsius.py), with the connector ports read from
# the environment because 7100/7200 may be taken on the machine running the tests.
SEED_CELSIUS = """
    import os
    import struct

    import wallaroo
    import wallaroo.experimental


    def application_setup(args):
        ab = wallaroo.ApplicationBuilder("Celsius to Fahrenheit")

        ab.source_connector("celsius_feed",
            encoder=encode_feed,
            decoder=decode_feed,
            port=int(os.environ["CELSIUS_FEED_PORT"]))

        ab.sink_connector("fahrenheit_conversion",
            encoder=encode_conversion,
            decoder=decode_conversion,
            port=int(os.environ["FAHRENHEIT_CONVERSION_PORT"]))

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
"""

# The same application in the later API, with a cookie and a small credit window.
LATER_CELSIUS = f"""
    import os
    import struct

    import wallaroo
    import wallaroo.experimental


    def application_setup(args):
        feed = wallaroo.experimental.SourceConnectorConfig(
            "celsius_feed", encoder=encode_feed, decoder=decode_feed,
            port=int(os.environ["CELSIUS_FEED_PORT"]), cookie="{COOKIE}",
            max_credits=10, refill_credits=3)
        conversion = wallaroo.experimental.SinkConnectorConfig(
            "fahrenheit_conversion", encoder=encode_conversion, decoder=decode_conversion,
            port=int(os.environ["FAHRENHEIT_CONVERSION_PORT"]), cookie="{COOKIE}")
        pipeline = (wallaroo.source("Celsius Conversion", feed)
                    .to(multiply).to(add).to_sink(conversion))
        return wallaroo.build_application("Celsius to Fahrenheit", pipeline)


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
"""


# For tests that run connectors in this process: one connector source "feed" and one connector
# sink "out", settings from the environment (read when application_setup runs).
UNIT_APP = """
    import os

    import wallaroo
    import wallaroo.experimental as wx


    def application_setup(args):
        feed = wx.SourceConnectorConfig(
            "feed", encoder=encode_feed, decoder=decode_feed,
            port=int(os.environ.get("FEED_PORT", "7100")),
            cookie=os.environ.get("FEED_COOKIE", ""),
            max_credits=int(os.environ.get("FEED_CREDITS", "4096")),
            refill_credits=int(os.environ.get("FEED_REFILL", "1024")))
        out = wx.SinkConnectorConfig(
            "out", encoder=encode_out, decoder=decode_out,
            port=int(os.environ.get("OUT_PORT", "7200")),
            cookie=os.environ.get("OUT_COOKIE", ""))
        return wallaroo.build_application("unit", wallaroo.source("p", feed).to_sink(out))


    @wx.stream_message_encoder
    def encode_feed(data):
        return data


    @wx.stream_message_decoder
    def decode_feed(data):
        return data.decode()


    @wx.stream_message_encoder
    def encode_out(data):
        return data


    @wx.stream_message_decoder
    def decode_out(data):
        return data.decode()
"""
