"""Session fixtures for the real services (see tests/services.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import services


@pytest.fixture(scope="session")
def service_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def kafka_bootstrap(service_dir) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a Kafka-compatible broker started for this session."""
    server = services.start_tansu(service_dir)
    os.environ["WALLAROO_TEST_KAFKA"] = f"127.0.0.1:{server.port}"
    yield f"127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint(service_dir) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto server (Kinesis, S3) started for this session."""
    server = services.start_moto(service_dir)
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture(scope="session")
def redis_port() -> int:
    services.require_port(services.REDIS_PORT, "Redis")
    return services.REDIS_PORT


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    services.require_port(5672, "RabbitMQ")
    return services.RABBITMQ_URL


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    services.require_port(5432, "PostgreSQL")
    return services.POSTGRES_DSN
