"""Fixtures of the connector tests; every process and socket they create is closed at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from connector_helpers import Procs, UdpPeer


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
