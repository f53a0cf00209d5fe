"""Pin the public names; later issues extend these lists as they add names."""

import subprocess
import sys

import wallaroo
import wallaroo.experimental
import wallaroo.testing

WALLAROO = {
    "Aggregation",
    "ApplicationBuilder",
    "count_windows",
    "hours",
    "microseconds",
    "milliseconds",
    "minutes",
    "nanoseconds",
    "range_windows",
    "seconds",
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
    "decoder",
    "deserialize",
    "encoder",
    "experimental",
    "key_extractor",
    "partition",
    "serialize",
    "source",
    "state_computation",
    "state_computation_multi",
    "tcp_parse_input_addrs",
    "tcp_parse_output_addrs",
}
EXPERIMENTAL = {
    "ConnectorError",
    "ProtocolError",
    "SinkConnectorConfig",
    "SourceConnectorConfig",
    "UnexpectedSocketError",
    "octet_message_decoder",
    "octet_message_encoder",
    "stream_message_decoder",
    "stream_message_encoder",
}
TESTING = {
    "ConformanceError",
    "ConformanceReport",
    "DeadLetter",
    "Harness",
    "ListSink",
    "MockClock",
    "RunResult",
    "check_sink_connector",
    "check_source_connector",
    "default_backend",
    "python_module_command",
    "run",
}
OPTIONAL = [
    "confluent_kafka",
    "kafka",
    "boto3",
    "botocore",
    "redis",
    "pika",
    "psycopg",
    "uvloop",
    "ray",
    "hypothesis",
    "starlette",
    "uvicorn",
]


def test_wallaroo_names():
    assert set(wallaroo.__all__) == WALLAROO
    for name in WALLAROO:
        assert hasattr(wallaroo, name), name


def test_experimental_names():
    assert set(wallaroo.experimental.__all__) >= EXPERIMENTAL
    for name in wallaroo.experimental.__all__:
        assert hasattr(wallaroo.experimental, name), name


def test_testing_names():
    assert set(wallaroo.testing.__all__) == TESTING


def test_import_wallaroo_imports_no_optional_dependency():
    code = (
        "import sys, wallaroo, wallaroo.experimental, wallaroo.testing\n"
        f"print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_experimental_is_reachable_after_plain_import():
    code = "import wallaroo\nprint(wallaroo.experimental.stream_message_encoder.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "stream_message_encoder"
