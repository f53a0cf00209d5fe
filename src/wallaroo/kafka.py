"""The worker's built-in Kafka source and sink: their configurations, read from the command line.

An application names them like any other source or sink config::

    source = wallaroo.source("convert", wallaroo.DefaultKafkaSourceCLIParser(decode))
    pipeline = source.to(convert).to_sink(wallaroo.DefaultKafkaSinkCLIParser(encode))

and the worker is started with the ``--kafka_*`` flags::

    machida --application-module celsius --kafka_source_topic in \\
        --kafka_source_brokers 127.0.0.1:9092 --kafka_sink_topic out \\
        --kafka_sink_brokers 127.0.0.1:9092

``Custom*`` parsers read the flags from the ``args`` they are given, when they are created.
``Default*`` parsers only hold the codec and the name: the flags are read when the worker
starts, from the application's arguments (the arguments ``application_setup(args)`` received),
by :meth:`DefaultKafkaSourceCLIParser.resolve`. So an application that uses them loads without
the flags (in :mod:`wallaroo.testing`, in a connector program), and a worker without them stops
at start with one line naming the missing flag.

A Kafka source's decoder gets each record's value (no framing); a Kafka sink's encoder returns
``(value, key, partition)``, where key and partition may be None. This module imports no Kafka
client; the worker imports confluent-kafka when it runs a Kafka source or sink.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

from wallaroo.errors import WallarooParameterError

__all__ = [
    "DEFAULT_KAFKA_PORT",
    "LOG_LEVELS",
    "CustomKafkaSinkCLIParser",
    "CustomKafkaSourceCLIParser",
    "DefaultKafkaSinkCLIParser",
    "DefaultKafkaSourceCLIParser",
    "parse_brokers",
]

DEFAULT_KAFKA_PORT = 9092
LOG_LEVELS = ("Fine", "Info", "Warn", "Error")
"""The ``--kafka_*_log_level`` values, most verbose first (default ``Warn``)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise WallarooParameterError(f"kafka options: {message}")


def parse_brokers(value: str, flag: str) -> tuple[tuple[str, int], ...]:
    """Parse ``host[:port],host[:port],...`` (port 9092 when omitted; ``[v6]:port`` too).

    Raises:
        WallarooParameterError: empty, or a port that is not a number from 1 to 65535; the
            message names ``flag``.
    """
    brokers: list[tuple[str, int]] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port_text = rest.removeprefix(":") or str(DEFAULT_KAFKA_PORT)
        elif entry.count(":") == 1:
            host, _, port_text = entry.partition(":")
        else:  # a bare host name, or a bare IPv6 address
            host, port_text = entry, str(DEFAULT_KAFKA_PORT)
        if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise WallarooParameterError(
                f"{flag} expects host:port[,host:port...] (e.g. 127.0.0.1:9092), got {value!r}"
            )
        brokers.append((host, int(port_text)))
    if not brokers:
        raise WallarooParameterError(f"{flag} needs at least one broker, e.g. 127.0.0.1:9092")
    return tuple(brokers)


def _options(args: Sequence[str], prefix: str, extra: Sequence[str] = ()) -> dict[str, str | None]:
    parser = _Parser(add_help=False, allow_abbrev=False)
    for name in ("topic", "brokers", "log_level", *extra):
        parser.add_argument(f"--{prefix}_{name}", dest=name, default=None)
    known, _ = parser.parse_known_args([str(a) for a in args])
    return vars(known)


def _required(options: dict[str, str | None], name: str, prefix: str) -> str:
    value = options[name]
    if not value:
        raise WallarooParameterError(
            f"--{prefix}_{name} is required by the Kafka {prefix.split('_')[1]} "
            f"(e.g. --{prefix}_{name} {'127.0.0.1:9092' if name == 'brokers' else 'my-topic'})"
        )
    return value


def _log_level(options: dict[str, str | None], prefix: str) -> str:
    level = options["log_level"] or "Warn"
    if level not in LOG_LEVELS:
        raise WallarooParameterError(
            f"--{prefix}_log_level must be one of {', '.join(LOG_LEVELS)}, got {level!r}"
        )
    return level


def _non_negative(options: dict[str, str | None], name: str, default: int, prefix: str) -> int:
    text = options[name]
    if text is None:
        return default
    if not text.isdigit():
        raise WallarooParameterError(
            f"--{prefix}_{name} expects a non-negative integer, got {text!r}"
        )
    return int(text)


def _name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise WallarooParameterError(f"{what} needs a name (a non-empty string), got {name!r}")
    return name


def _decoder(decoder: Any, what: str) -> Any:
    if not callable(getattr(decoder, "decode", None)):
        raise WallarooParameterError(
            f"{what} needs a decoder (decorate a function with @wallaroo.decoder(...)); "
            f"{decoder!r} has no decode()"
        )
    return decoder


def _encoder(encoder: Any, what: str) -> Any:
    if not callable(getattr(encoder, "encode", None)):
        raise WallarooParameterError(
            f"{what} needs an encoder returning (value, key, partition) (decorate a function "
            f"with @wallaroo.encoder); {encoder!r} has no encode()"
        )
    return encoder


@dataclass(frozen=True, slots=True, init=False)
class CustomKafkaSourceCLIParser:
    """A Kafka source whose flags are read from ``args`` now.

    Args:
        args: a command line holding ``--kafka_source_topic TOPIC``, ``--kafka_source_brokers
            HOST[:PORT],...`` (port 9092 when omitted) and optionally
            ``--kafka_source_log_level`` (Fine, Info, Warn or Error; default Warn). Other
            arguments are ignored.
        decoder: applied to each record's value (``@wallaroo.decoder``; no framing is read).
        name: the source's name (``kafka_source``).

    Raises:
        WallarooParameterError: a flag is missing or has a bad value (the message names it),
            or ``decoder`` has no ``decode()``.
    """

    name: str
    topic: str
    brokers: tuple[tuple[str, int], ...]
    log_level: str
    decoder: Any

    def __init__(self, args: Sequence[str], decoder: Any, *, name: str = "kafka_source") -> None:
        options = _options(args, "kafka_source")
        object.__setattr__(self, "name", _name(name, "a Kafka source"))
        object.__setattr__(self, "topic", _required(options, "topic", "kafka_source"))
        brokers = _required(options, "brokers", "kafka_source")
        object.__setattr__(self, "brokers", parse_brokers(brokers, "--kafka_source_brokers"))
        object.__setattr__(self, "log_level", _log_level(options, "kafka_source"))
        object.__setattr__(self, "decoder", _decoder(decoder, f"Kafka source {name!r}"))

    @property
    def bootstrap_servers(self) -> str:
        """The brokers as librdkafka's ``bootstrap.servers`` wants them."""
        return ",".join(_address(host, port) for host, port in self.brokers)


@dataclass(frozen=True, slots=True, init=False)
class CustomKafkaSinkCLIParser:
    """A Kafka sink whose flags are read from ``args`` now.

    Args:
        args: a command line holding ``--kafka_sink_topic TOPIC``, ``--kafka_sink_brokers
            HOST[:PORT],...`` and optionally ``--kafka_sink_log_level`` (default Warn),
            ``--kafka_sink_max_produce_buffer_ms`` (how long the producer may wait to fill a
            batch; default 0) and ``--kafka_sink_max_message_size`` (bytes; default 100000).
        encoder: returns ``(value, key, partition)`` for each output; key and partition may be
            None (then the producer's partitioner picks the partition from the key).
        name: the sink's name (``kafka_sink``).

    Raises:
        WallarooParameterError: a flag is missing or has a bad value (the message names it),
            or ``encoder`` has no ``encode()``.
    """

    payloads_are_bytes: ClassVar[bool] = False  # the engine passes the encoder's tuples on

    name: str
    topic: str
    brokers: tuple[tuple[str, int], ...]
    log_level: str
    max_produce_buffer_ms: int
    max_message_size: int
    encoder: Any

    def __init__(self, args: Sequence[str], encoder: Any, *, name: str = "kafka_sink") -> None:
        prefix = "kafka_sink"
        options = _options(args, prefix, ("max_produce_buffer_ms", "max_message_size"))
        object.__setattr__(self, "name", _name(name, "a Kafka sink"))
        object.__setattr__(self, "topic", _required(options, "topic", prefix))
        brokers = parse_brokers(_required(options, "brokers", prefix), "--kafka_sink_brokers")
        object.__setattr__(self, "brokers", brokers)
        object.__setattr__(self, "log_level", _log_level(options, prefix))
        buffer_ms = _non_negative(options, "max_produce_buffer_ms", 0, prefix)
        object.__setattr__(self, "max_produce_buffer_ms", buffer_ms)
        size = _non_negative(options, "max_message_size", 100_000, prefix)
        if size < 1:
            raise WallarooParameterError("--kafka_sink_max_message_size must be at least 1")
        object.__setattr__(self, "max_message_size", size)
        object.__setattr__(self, "encoder", _encoder(encoder, f"Kafka sink {name!r}"))

    @property
    def bootstrap_servers(self) -> str:
        """The brokers as librdkafka's ``bootstrap.servers`` wants them."""
        return ",".join(_address(host, port) for host, port in self.brokers)


@dataclass(frozen=True, slots=True, init=False)
class DefaultKafkaSourceCLIParser:
    """A Kafka source configured by the ``--kafka_source_*`` flags of the worker's command line.

    Args:
        decoder: applied to each record's value (``@wallaroo.decoder``; no framing is read).
        name: the source's name.

    The flags are read by :meth:`resolve` when the worker starts, not here.

    Raises:
        WallarooParameterError: ``decoder`` has no ``decode()`` or ``name`` is empty.
    """

    name: str
    decoder: Any

    def __init__(self, decoder: Any, name: str = "kafka_source") -> None:
        object.__setattr__(self, "name", _name(name, "a Kafka source"))
        object.__setattr__(self, "decoder", _decoder(decoder, f"Kafka source {name!r}"))

    def resolve(self, args: Sequence[str]) -> CustomKafkaSourceCLIParser:
        """Read the ``--kafka_source_*`` flags from the application's arguments.

        Raises:
            WallarooParameterError: a flag is missing or has a bad value (the message names it).
        """
        return CustomKafkaSourceCLIParser(args, self.decoder, name=self.name)


@dataclass(frozen=True, slots=True, init=False)
class DefaultKafkaSinkCLIParser:
    """A Kafka sink configured by the ``--kafka_sink_*`` flags of the worker's command line.

    Args:
        encoder: returns ``(value, key, partition)`` for each output (key, partition: None
            allowed).
        name: the sink's name.

    The flags are read by :meth:`resolve` when the worker starts, not here.

    Raises:
        WallarooParameterError: ``encoder`` has no ``encode()`` or ``name`` is empty.
    """

    payloads_are_bytes: ClassVar[bool] = False  # the engine passes the encoder's tuples on

    name: str
    encoder: Any

    def __init__(self, encoder: Any, name: str = "kafka_sink") -> None:
        object.__setattr__(self, "name", _name(name, "a Kafka sink"))
        object.__setattr__(self, "encoder", _encoder(encoder, f"Kafka sink {name!r}"))

    def resolve(self, args: Sequence[str]) -> CustomKafkaSinkCLIParser:
        """Read the ``--kafka_sink_*`` flags from the application's arguments.

        Raises:
            WallarooParameterError: a flag is missing or has a bad value (the message names it).
        """
        return CustomKafkaSinkCLIParser(args, self.encoder, name=self.name)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


KafkaSourceConfig = CustomKafkaSourceCLIParser | DefaultKafkaSourceCLIParser
KafkaSinkConfig = CustomKafkaSinkCLIParser | DefaultKafkaSinkCLIParser
