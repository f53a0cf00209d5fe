"""The worker's built-in Kafka source and sink, configured by the ``--kafka_*`` flags."""

import wallaroo


def application_setup(args):
    source = wallaroo.source("shout", wallaroo.DefaultKafkaSourceCLIParser(decode))
    sink = wallaroo.DefaultKafkaSinkCLIParser(encode)
    return wallaroo.build_application("Kafka builtin", source.to(shout).to_sink(sink))


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode(data):
    return data.decode()


@wallaroo.computation(name="shout")
def shout(text):
    if text == "poison":
        raise ValueError("a poisoned record")
    return text.upper()


@wallaroo.encoder
def encode(text):
    if text == "NOT A TUPLE":
        return text  # the encoder contract broken: a dead letter
    return (text, text.rpartition("-")[2], None)
