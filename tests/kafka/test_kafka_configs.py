"""The built-in Kafka configs: flags, defaults, errors, and wallaroo.testing with them."""

from __future__ import annotations

import pytest

import wallaroo
import wallaroo.testing
from wallaroo.configs import SINK_CONFIG_TYPES, SOURCE_CONFIG_TYPES
from wallaroo.plan.compiler import compile_application


@wallaroo.decoder(header_length=4, length_fmt=">I")
def decode(data):
    return data.decode()


@wallaroo.encoder
def encode(text):
    return (text, text[:1], None)


@wallaroo.computation(name="shout")
def shout(text):
    return text.upper()


SOURCE_ARGS = ["prog", "--kafka_source_topic", "in", "--kafka_source_brokers", "a:1,b"]
SINK_ARGS = ["--kafka_sink_topic", "out", "--kafka_sink_brokers", "[::1]:9093,host"]


def test_custom_source_reads_the_flags_with_default_port_and_log_level():
    config = wallaroo.CustomKafkaSourceCLIParser([*SOURCE_ARGS, "--other", "x"], decode)
    assert (config.name, config.topic, config.log_level) == ("kafka_source", "in", "Warn")
    assert config.brokers == (("a", 1), ("b", 9092))
    assert config.bootstrap_servers == "a:1,b:9092"
    assert config.decoder is decode


def test_custom_sink_reads_the_flags_and_its_defaults():
    config = wallaroo.CustomKafkaSinkCLIParser(
        [*SINK_ARGS, "--kafka_sink_log_level", "Fine"], encode
    )
    assert (config.name, config.topic, config.log_level) == ("kafka_sink", "out", "Fine")
    assert config.brokers == (("::1", 9093), ("host", 9092))
    assert config.bootstrap_servers == "[::1]:9093,host:9092"
    assert (config.max_produce_buffer_ms, config.max_message_size) == (0, 100_000)
    other = wallaroo.CustomKafkaSinkCLIParser(
        [*SINK_ARGS, "--kafka_sink_max_produce_buffer_ms", "5",
         "--kafka_sink_max_message_size=2000"], encode, name="mine"
    )  # fmt: skip
    assert (other.name, other.max_produce_buffer_ms, other.max_message_size) == ("mine", 5, 2000)
    assert config.payloads_are_bytes is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kafka_source_brokers", "a:1"], "--kafka_source_topic is required"),
        (["--kafka_source_topic", "t"], "--kafka_source_brokers is required"),
        ([*SOURCE_ARGS, "--kafka_source_log_level", "Debug"], "Fine, Info, Warn, Error"),
        (["--kafka_source_topic", "t", "--kafka_source_brokers", "a:x"], "host:port"),
        (["--kafka_source_topic", "t", "--kafka_source_brokers", ","], "at least one broker"),
        (["--kafka_source_topic"], "expected one argument"),
    ],
)
def test_a_missing_or_bad_source_flag_is_named(args, message):
    with pytest.raises(wallaroo.WallarooParameterError, match=message):
        wallaroo.CustomKafkaSourceCLIParser(args, decode)


def test_a_bad_sink_flag_is_named():
    with pytest.raises(wallaroo.WallarooParameterError, match="max_message_size"):
        wallaroo.CustomKafkaSinkCLIParser(
            [*SINK_ARGS, "--kafka_sink_max_message_size", "-1"], encode
        )
    with pytest.raises(wallaroo.WallarooParameterError, match="--kafka_sink_topic"):
        wallaroo.DefaultKafkaSinkCLIParser(encode).resolve(SOURCE_ARGS)


def test_codecs_are_checked():
    with pytest.raises(wallaroo.WallarooParameterError, match="needs a decoder"):
        wallaroo.DefaultKafkaSourceCLIParser(shout.fn)
    with pytest.raises(wallaroo.WallarooParameterError, match=r"\(value, key, partition\)"):
        wallaroo.DefaultKafkaSinkCLIParser(decode.fn)


def test_default_parsers_read_the_flags_only_when_resolved():
    source = wallaroo.DefaultKafkaSourceCLIParser(decode)
    sink = wallaroo.DefaultKafkaSinkCLIParser(encode, name="out")
    assert source.name == "kafka_source"
    resolved = source.resolve(SOURCE_ARGS)
    assert isinstance(resolved, wallaroo.CustomKafkaSourceCLIParser)
    assert (resolved.name, resolved.topic, resolved.decoder) == ("kafka_source", "in", decode)
    assert sink.resolve(SINK_ARGS).name == "out"
    assert isinstance(source, SOURCE_CONFIG_TYPES)
    assert isinstance(sink, SINK_CONFIG_TYPES)


def kafka_app(args):
    source = wallaroo.source("shout", wallaroo.DefaultKafkaSourceCLIParser(decode))
    return wallaroo.build_application(
        "kafka", source.to(shout).to_sink(wallaroo.DefaultKafkaSinkCLIParser(encode))
    )


def test_the_sink_gets_the_encoders_tuples_and_the_harness_runs_without_flags():
    plan = compile_application(kafka_app([]))
    assert [s.name for s in plan.sources] == ["kafka_source"]
    assert [(s.name, s.bytes_only) for s in plan.sinks] == [("kafka_sink", False)]
    result = wallaroo.testing.run(kafka_app, inputs={"kafka_source": [b"abc", b"xyz"]})
    assert result.outputs["kafka_sink"] == [("ABC", "A", None), ("XYZ", "X", None)]


def test_the_seed_builder_takes_them_too():
    ab = wallaroo.ApplicationBuilder("seed kafka")
    ab.new_pipeline("shout", wallaroo.CustomKafkaSourceCLIParser(SOURCE_ARGS, decode))
    ab.to(shout)
    ab.to_sink(wallaroo.CustomKafkaSinkCLIParser(SINK_ARGS, encode))
    result = wallaroo.testing.run(ab.build(), inputs={"kafka_source": [b"q"]})
    assert result.output() == [("Q", "Q", None)]
