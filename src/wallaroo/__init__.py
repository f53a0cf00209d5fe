"""wallaroo-py: run Wallaroo applications and connectors in pure Python.

This module only re-exports the public API; see ``docs/`` for the guide. Both API generations
live side by side: the seed's :class:`ApplicationBuilder` and the later
``wallaroo.source(...)`` pipelines.
"""

from wallaroo import experimental
from wallaroo.args import tcp_parse_input_addrs, tcp_parse_output_addrs
from wallaroo.builder import ApplicationBuilder
from wallaroo.configs import GenSourceConfig, TCPSinkConfig, TCPSourceConfig
from wallaroo.decorators import (
    computation,
    computation_multi,
    decoder,
    encoder,
    key_extractor,
    partition,
    state_computation,
    state_computation_multi,
)
from wallaroo.errors import WallarooError, WallarooParameterError
from wallaroo.kafka import (
    CustomKafkaSinkCLIParser,
    CustomKafkaSourceCLIParser,
    DefaultKafkaSinkCLIParser,
    DefaultKafkaSourceCLIParser,
)
from wallaroo.pipeline import Pipeline, build_application, source
from wallaroo.serialization import deserialize, serialize
from wallaroo.windows import (
    Aggregation,
    count_windows,
    hours,
    microseconds,
    milliseconds,
    minutes,
    nanoseconds,
    range_windows,
    seconds,
)

__version__ = "0.1.0"

__all__ = [
    "Aggregation",
    "ApplicationBuilder",
    "CustomKafkaSinkCLIParser",
    "CustomKafkaSourceCLIParser",
    "DefaultKafkaSinkCLIParser",
    "DefaultKafkaSourceCLIParser",
    "GenSourceConfig",
    "Pipeline",
    "TCPSinkConfig",
    "TCPSourceConfig",
    "WallarooError",
    "WallarooParameterError",
    "__version__",
    "build_application",
    "computation",
    "computation_multi",
    "count_windows",
    "decoder",
    "deserialize",
    "encoder",
    "experimental",
    "hours",
    "key_extractor",
    "microseconds",
    "milliseconds",
    "minutes",
    "nanoseconds",
    "partition",
    "range_windows",
    "seconds",
    "serialize",
    "source",
    "state_computation",
    "state_computation_multi",
    "tcp_parse_input_addrs",
    "tcp_parse_output_addrs",
]
