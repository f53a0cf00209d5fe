"""``wallaroo.experimental``: connectors (codecs, configs and, in connector programs, the
connector client library).

Only re-exports; the implementation lives in internal modules.
"""

from wallaroo.configs import SinkConnectorConfig, SourceConnectorConfig
from wallaroo.errors import ConnectorError, ProtocolError, UnexpectedSocketError
from wallaroo.experimental.codecs import (
    octet_message_decoder,
    octet_message_encoder,
    stream_message_decoder,
    stream_message_encoder,
)

__all__ = [
    "ConnectorError",
    "ProtocolError",
    "SinkConnectorConfig",
    "SourceConnectorConfig",
    "UnexpectedSocketError",
    "octet_message_decoder",
    "octet_message_encoder",
    "stream_message_decoder",
    "stream_message_encoder",
]
