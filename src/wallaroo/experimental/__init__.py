"""``wallaroo.experimental``: connectors (codecs, configs and, in connector programs, the
connector client library).

Only re-exports; the implementation lives in internal modules. The original's module paths stay
importable too: ``wallaroo.experimental.connectors`` (``BaseIter``, ``BaseSource``,
``FramedFileReader``, ``ThrottledFileReader``, ``MultiSourceConnector``) and
``wallaroo.experimental.connector_wire_messages`` (the protocol frames).

``TransactionalSink`` (with ``Transaction`` and ``SinkRecovery``) is the contract of a durable
transactional sink plugged into ``SinkConnector(..., sink_factory=...)``; see
``docs/connectors/file_sink.md``. ``SpooledSink`` is a ``TransactionalSink`` that spools each
transaction to disk and delivers it to an external system at PHASE2 (public module
``wallaroo.experimental.spooled_sink``; the spool files in ``wallaroo.experimental.txn_spool``).

The toolkit of connector programs (signals, exit codes, logging, retries; the public module
``wallaroo.experimental.program``) is re-exported too: ``ProgramRun``, ``Stop``, ``UsageError``,
``Backoff``, ``configure_logging``, ``import_client``, ``port_number``, ``positive_number``,
``wait_for_worker``, ``as_bytes``, ... ;
with ``LogSummary`` (rate-limited log lines for a repeated event) and ``clip`` (peer text made
safe for a log line) from ``wallaroo.logsummary``.

Helpers for one external system, not re-exported, are public modules of their own:
``wallaroo.experimental.kafka_producers`` (Kafka producers over ``confluent_kafka``) and
``wallaroo.experimental.kinesis`` (a Kinesis client, shard listing and resumable shard
positions over boto3). Neither imports its client library.
"""

from wallaroo.configs import SinkConnectorConfig, SourceConnectorConfig
from wallaroo.errors import ConnectorError, ProtocolError, UnexpectedSocketError
from wallaroo.experimental.at_least_once import AtLeastOnceSourceConnector, Stream
from wallaroo.experimental.client_args import parse_connector_args
from wallaroo.experimental.client_link import stream_id_for
from wallaroo.experimental.codecs import (
    octet_message_decoder,
    octet_message_encoder,
    stream_message_decoder,
    stream_message_encoder,
)
from wallaroo.experimental.discovery import find_sink_connector, find_source_connector
from wallaroo.experimental.program import (
    LOG_FORMAT,
    Backoff,
    ProgramRun,
    Stop,
    UsageError,
    as_bytes,
    configure_logging,
    first_line,
    import_client,
    port_number,
    positive_number,
    read_outputs,
    read_remaining,
    send_forever,
    to_bytes,
    wait_for_worker,
)
from wallaroo.experimental.sink_connector import SinkConnector
from wallaroo.experimental.source_connector import SourceConnector
from wallaroo.experimental.spooled_sink import SpooledSink
from wallaroo.experimental.transactional import SinkRecovery, Transaction, TransactionalSink
from wallaroo.logsummary import LogSummary, clip

__all__ = [
    "LOG_FORMAT",
    "AtLeastOnceSourceConnector",
    "Backoff",
    "ConnectorError",
    "LogSummary",
    "ProgramRun",
    "ProtocolError",
    "SinkConnector",
    "SinkConnectorConfig",
    "SinkRecovery",
    "SourceConnector",
    "SourceConnectorConfig",
    "SpooledSink",
    "Stop",
    "Stream",
    "Transaction",
    "TransactionalSink",
    "UnexpectedSocketError",
    "UsageError",
    "as_bytes",
    "clip",
    "configure_logging",
    "find_sink_connector",
    "find_source_connector",
    "first_line",
    "import_client",
    "octet_message_decoder",
    "octet_message_encoder",
    "parse_connector_args",
    "port_number",
    "positive_number",
    "read_outputs",
    "read_remaining",
    "send_forever",
    "stream_id_for",
    "stream_message_decoder",
    "stream_message_encoder",
    "to_bytes",
    "wait_for_worker",
]
