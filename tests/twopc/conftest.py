"""Fixtures of the two-phase-commit tests: the application module, in-process connectors,
drivers and sink programs, each closed at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twopc_driver import COOKIE, SinkDriver, SinkProgram, write_app

import wallaroo.experimental as wx


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test application's module name, importable here and by child processes."""
    module = write_app(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("OUT_COOKIE", COOKIE)
    return module


@pytest.fixture
def connector(app: str) -> Iterator[Callable[..., wx.SinkConnector]]:
    """``connector(port=0, **options)``: a listening SinkConnector for connector ``out``."""
    made: list[wx.SinkConnector] = []

    def make(port: int = 0, **options: Any) -> wx.SinkConnector:
        sink = wx.SinkConnector(["prog", "--application-module", app, "--connector", "out"],
                                **options)  # fmt: skip
        made.append(sink)
        sink.listen(port=port)
        return sink

    yield make
    for sink in made:
        sink.close()


@pytest.fixture
def driver() -> Iterator[Callable[..., SinkDriver]]:
    """``driver(port, **options)``: a connected SinkDriver."""
    made: list[SinkDriver] = []

    def make(port: int, *, connect: bool = True, **options: Any) -> SinkDriver:
        d = SinkDriver(port, **options)
        made.append(d)
        if connect:
            d.connect()
        return d

    yield make
    for d in made:
        d.close()


@pytest.fixture
def programs() -> Iterator[list[SinkProgram]]:
    """Append SinkProgram objects; they are killed at the end."""
    made: list[SinkProgram] = []
    yield made
    for program in made:
        program.close()
