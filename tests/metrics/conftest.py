import pytest
from metrics_helpers import WorkerProcess


@pytest.fixture
def worker(tmp_path):
    """A worker process running the parity-count app with ``--metrics-http``."""
    w = WorkerProcess(tmp_path)
    yield w
    w.stop()
