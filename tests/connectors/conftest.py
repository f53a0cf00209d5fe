"""Fixtures of the connector tests; every process and socket they create is closed at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from connector_apps import UNIT_APP
from connector_helpers import Procs, UdpPeer, write_module
from fake_connector_worker import FakeWorker

import wallaroo.experimental as wx


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Starts processes in ``tmp_path``; kills whatever is still running at the end."""
    runner = Procs(tmp_path)
    yield runner
    for proc in runner.started:
        proc.kill()


@pytest.fixture
def udp() -> Iterator[list[UdpPeer]]:
    """Append ``UdpPeer()`` objects to this list; they are closed at the end."""
    peers: list[UdpPeer] = []
    yield peers
    for peer in peers:
        peer.close()


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The unit-test application ``unit_app`` (connector ``feed``), importable from here."""
    write_module(tmp_path, "unit_app", UNIT_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.fixture
def worker(app: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWorker]:
    """A fake worker that ``unit_app``'s ``feed`` connector connects to."""
    fake = FakeWorker()
    monkeypatch.setenv("FEED_PORT", str(fake.port))
    yield fake
    fake.close()


@pytest.fixture
def connectors() -> Iterator[list[wx.SourceConnector]]:
    """Append the ``SourceConnector`` objects a test makes; they are closed at the end."""
    made: list[wx.SourceConnector] = []
    yield made
    for connector in made:
        connector.close(timeout=1.0)
