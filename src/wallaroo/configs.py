"""Source and sink configurations of both API generations.

Some names serve two generations with different signatures (``decisions.md``):

* ``TCPSourceConfig(host, port, decoder)`` is the seed's form; ``TCPSourceConfig(name, host, port,
  decoder, ...)`` (four or more positional arguments, or ``name=``) is the later one.
* ``GenSourceConfig(generator)`` / ``GenSourceConfig(name, generator)`` likewise.

Every config is an immutable record; the plan keeps them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wallaroo.errors import WallarooParameterError
from wallaroo.kafka import (
    CustomKafkaSinkCLIParser,
    CustomKafkaSourceCLIParser,
    DefaultKafkaSinkCLIParser,
    DefaultKafkaSourceCLIParser,
)

__all__ = [
    "GenSourceConfig",
    "SinkConfig",
    "SinkConnectorConfig",
    "SourceConfig",
    "SourceConnectorConfig",
    "TCPSinkConfig",
    "TCPSourceConfig",
    "check_port",
]

DEFAULT_HOST = "127.0.0.1"


def check_port(port: Any, what: str) -> int:
    """Return ``port`` as an int in 0..65535 (strings of digits accepted, as ``--in`` gives)."""
    try:
        value = int(port)
    except (TypeError, ValueError):
        raise WallarooParameterError(
            f"{what} port must be a number from 0 to 65535, got {port!r}"
        ) from None
    if isinstance(port, bool) or not 0 <= value <= 65535:
        raise WallarooParameterError(f"{what} port must be a number from 0 to 65535, got {port!r}")
    return value


def check_host(host: Any, what: str) -> str:
    """Return ``host`` if it is a non-empty string.

    Raises:
        WallarooParameterError: it is not; the message starts with ``what``.
    """
    if not isinstance(host, str) or not host:
        raise WallarooParameterError(f"{what} host must be a non-empty string, got {host!r}")
    return host


def check_decoder(decoder: Any, what: str, *, framed: bool) -> Any:
    """Accept a decorated decoder or any object with the original's decoder methods."""
    needed = ("header_length", "payload_length", "decode") if framed else ("decode",)
    missing = [m for m in needed if not callable(getattr(decoder, m, None))]
    if missing:
        fix = (
            "@wallaroo.decoder(header_length=4, length_fmt='>I')"
            if framed
            else ("@wallaroo.experimental.stream_message_decoder")
        )
        raise WallarooParameterError(
            f"{what} needs a decoder (decorate a function with {fix}); "
            f"{decoder!r} lacks {', '.join(missing)}"
        )
    return decoder


def check_encoder(encoder: Any, what: str) -> Any:
    """Return ``encoder`` if it has a callable ``encode``.

    Raises:
        WallarooParameterError: it has not; the message names ``what`` and the decorators.
    """
    if not callable(getattr(encoder, "encode", None)):
        raise WallarooParameterError(
            f"{what} needs an encoder (decorate a function with @wallaroo.encoder or "
            f"@wallaroo.experimental.stream_message_encoder); {encoder!r} has no encode()"
        )
    return encoder


def _check_positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WallarooParameterError(f"{what} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True, slots=True, init=False)
class TCPSourceConfig:
    """The worker listens on ``host:port`` for framed TCP input, decoded with ``decoder``.

    Seed form: ``TCPSourceConfig(host, port, decoder)``. Later form: ``TCPSourceConfig(name,
    host, port, decoder, valid=True, parallelism=10, max_size=16384, max_received_count=50)``.
    """

    name: str | None
    host: str
    port: int
    decoder: Any
    parallelism: int
    max_size: int
    max_received_count: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) == 3 and "name" not in kwargs:
            name, (host, port, decoder) = None, args
        else:
            names = ("name", "host", "port", "decoder")
            # With name= given, the positional arguments are (host, port, decoder, ...).
            positional = names[1:] if "name" in kwargs else names
            values = dict(zip(positional, args, strict=False))
            overlap = set(values) & set(kwargs)
            if overlap:
                raise WallarooParameterError(
                    f"TCPSourceConfig got {', '.join(sorted(overlap))} twice"
                )
            values.update({k: kwargs.pop(k) for k in names if k in kwargs})
            rest = args[len(positional) :]
            if rest:
                kwargs.update(
                    zip(
                        ("valid", "parallelism", "max_size", "max_received_count"),
                        rest,
                        strict=False,
                    )
                )
            missing = [n for n in names if n not in values]
            if missing:
                raise WallarooParameterError(
                    "TCPSourceConfig takes (host, port, decoder) or (name, host, port, decoder, "
                    f"...); missing {', '.join(missing)}"
                )
            name, host, port, decoder = (values[n] for n in names)
            if not isinstance(name, str) or not name:
                raise WallarooParameterError(f"TCPSourceConfig name must be a string, got {name!r}")
        unknown = set(kwargs) - {"valid", "parallelism", "max_size", "max_received_count"}
        if unknown:
            raise WallarooParameterError(
                f"TCPSourceConfig got unexpected argument(s) {', '.join(sorted(unknown))}"
            )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "host", check_host(host, "TCPSourceConfig"))
        object.__setattr__(self, "port", check_port(port, "TCPSourceConfig"))
        object.__setattr__(self, "decoder", check_decoder(decoder, "TCPSourceConfig", framed=True))
        for field, default in (
            ("parallelism", 10),
            ("max_size", 16384),
            ("max_received_count", 50),
        ):
            object.__setattr__(
                self, field, _check_positive(kwargs.get(field, default), f"TCPSourceConfig {field}")
            )


@dataclass(frozen=True, slots=True, init=False)
class GenSourceConfig:
    """A generator source: ``generator.initial_value()``, then ``generator.apply(last)`` until
    it returns ``None``. Seed form ``GenSourceConfig(generator)``; later ``(name, generator)``."""

    name: str | None
    generator: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) == 1 and "name" not in kwargs and "generator" not in kwargs:
            name, generator = None, args[0]
        else:
            values = dict(zip(("name", "generator"), args, strict=False))
            values.update(kwargs)
            if set(values) != {"name", "generator"} or len(args) > 2:
                raise WallarooParameterError(
                    "GenSourceConfig takes (generator) or (name, generator)"
                )
            name, generator = values["name"], values["generator"]
            if not isinstance(name, str) or not name:
                raise WallarooParameterError(f"GenSourceConfig name must be a string, got {name!r}")
        for method in ("initial_value", "apply"):
            if not callable(getattr(generator, method, None)):
                raise WallarooParameterError(
                    f"GenSourceConfig needs a generator object with initial_value() and "
                    f"apply(last_value); {generator!r} has no {method}()"
                )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "generator", generator)


@dataclass(frozen=True, slots=True, init=False)
class TCPSinkConfig:
    """The worker connects to ``host:port`` and writes each output's encoded bytes."""

    host: str
    port: int
    encoder: Any

    def __init__(self, host: str, port: int | str, encoder: Any) -> None:
        object.__setattr__(self, "host", check_host(host, "TCPSinkConfig"))
        object.__setattr__(self, "port", check_port(port, "TCPSinkConfig"))
        object.__setattr__(self, "encoder", check_encoder(encoder, "TCPSinkConfig"))


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise WallarooParameterError(f"{what} needs a connector name (a non-empty string)")
    return name


@dataclass(frozen=True, slots=True, init=False)
class SourceConnectorConfig:
    """A connector source: the worker listens on ``host:port`` for a connector process.

    ``encoder`` is what the connector process applies to what it writes; ``decoder`` is what the
    worker applies to each payload. ``cookie`` and the credit window are checked and granted by
    the worker (defaults: empty cookie, 4096 credits, refill at 1024).
    """

    name: str
    encoder: Any
    decoder: Any
    port: int
    cookie: str
    max_credits: int
    refill_credits: int
    host: str

    def __init__(
        self,
        name: str,
        encoder: Any,
        decoder: Any,
        port: int | str,
        cookie: str = "",
        max_credits: int = 4096,
        refill_credits: int = 1024,
        host: str = DEFAULT_HOST,
    ) -> None:
        what = f"source connector {name!r}"
        object.__setattr__(self, "name", _check_name(name, "SourceConnectorConfig"))
        object.__setattr__(self, "encoder", check_encoder(encoder, what))
        object.__setattr__(self, "decoder", check_decoder(decoder, what, framed=False))
        object.__setattr__(self, "port", check_port(port, what))
        if not isinstance(cookie, str):
            raise WallarooParameterError(f"{what} cookie must be a string, got {cookie!r}")
        object.__setattr__(self, "cookie", cookie)
        mc = _check_positive(max_credits, f"{what} max_credits")
        if (
            isinstance(refill_credits, bool)
            or not isinstance(refill_credits, int)
            or not (0 <= refill_credits < mc)
        ):
            raise WallarooParameterError(
                f"{what} refill_credits must be an int from 0 to max_credits - 1 ({mc - 1}), "
                f"got {refill_credits!r}"
            )
        object.__setattr__(self, "max_credits", mc)
        object.__setattr__(self, "refill_credits", refill_credits)
        object.__setattr__(self, "host", check_host(host, what))


@dataclass(frozen=True, slots=True, init=False)
class SinkConnectorConfig:
    """A connector sink: the worker connects to a connector process listening on ``host:port``.

    ``encoder`` runs in the worker; ``decoder`` runs in the sink connector's ``read()``.
    """

    name: str
    encoder: Any
    decoder: Any
    port: int
    cookie: str
    host: str

    def __init__(
        self,
        name: str,
        encoder: Any,
        decoder: Any,
        port: int | str,
        cookie: str = "",
        host: str = DEFAULT_HOST,
    ) -> None:
        what = f"sink connector {name!r}"
        object.__setattr__(self, "name", _check_name(name, "SinkConnectorConfig"))
        object.__setattr__(self, "encoder", check_encoder(encoder, what))
        object.__setattr__(self, "decoder", check_decoder(decoder, what, framed=False))
        object.__setattr__(self, "port", check_port(port, what))
        if not isinstance(cookie, str):
            raise WallarooParameterError(f"{what} cookie must be a string, got {cookie!r}")
        object.__setattr__(self, "cookie", cookie)
        object.__setattr__(self, "host", check_host(host, what))


SourceConfig = (
    TCPSourceConfig
    | GenSourceConfig
    | SourceConnectorConfig
    | DefaultKafkaSourceCLIParser
    | CustomKafkaSourceCLIParser
)
SinkConfig = (
    TCPSinkConfig | SinkConnectorConfig | DefaultKafkaSinkCLIParser | CustomKafkaSinkCLIParser
)

SOURCE_CONFIG_TYPES: tuple[type, ...] = (
    TCPSourceConfig,
    GenSourceConfig,
    SourceConnectorConfig,
    DefaultKafkaSourceCLIParser,
    CustomKafkaSourceCLIParser,
)
SINK_CONFIG_TYPES: tuple[type, ...] = (
    TCPSinkConfig,
    SinkConnectorConfig,
    DefaultKafkaSinkCLIParser,
    CustomKafkaSinkCLIParser,
)
