"""Session fixtures for the real services (see tests/services.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import ray_cluster
import services
from wallaroo.testing import default_backend


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


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The GCS address of a local Ray cluster (2 CPUs, no dashboard) for the session, in this
    process (the Ray tier's drivers join it; the engine tests' Ray mode uses it directly).
    Never ``ray stop``: it would stop every user's Ray on a shared machine."""
    address = ray_cluster.start_ray()
    import ray

    try:
        yield address
    finally:
        ray.shutdown()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test using ``engine_backend`` runs on the embedded engine and on Ray (2 workers);
    one marked ``embedded_only`` on the embedded engine only."""
    if "engine_backend" not in metafunc.fixturenames:
        return
    modes: list[object] = ["embedded"]
    if metafunc.definition.get_closest_marker("embedded_only") is None:
        modes.append(pytest.param("ray", marks=pytest.mark.ray))
    metafunc.parametrize("engine_backend", modes, indirect=True)


@pytest.fixture
def engine_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The backend ``Harness`` and ``run`` use in this test (see ``pytest_generate_tests``)."""
    mode = str(request.param)
    if mode == "ray":
        request.getfixturevalue("ray_address")
    with default_backend(mode, workers=2):
        yield mode
