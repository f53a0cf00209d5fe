"""The worker's event loop: uvloop when installed (the ``fast`` extra, which the test extras
include), asyncio's when ``WALLAROO_EVENT_LOOP=asyncio``; clear errors otherwise."""

from __future__ import annotations

import asyncio
import sys

import pytest

from wallaroo.errors import ConfigurationError
from wallaroo.worker import loop


async def which() -> str:
    await asyncio.sleep(0)
    return loop.loop_name(asyncio.get_running_loop())


def test_uvloop_is_used_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvloop  # noqa: F401 - the test extras install it: missing, this test fails

    monkeypatch.delenv(loop.ENV, raising=False)
    assert loop.run(which()) == "uvloop"
    monkeypatch.setenv(loop.ENV, "uvloop")
    assert loop.run(which()) == "uvloop"


def test_asyncio_when_asked_or_when_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loop.ENV, "asyncio")
    assert loop.run(which()) == "asyncio"
    monkeypatch.delenv(loop.ENV)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    assert loop.run(which()) == "asyncio"


def test_bad_settings_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loop.ENV, "tokio")
    with pytest.raises(ConfigurationError, match="must be 'asyncio' or 'uvloop', got 'tokio'"):
        loop.run(which())
    monkeypatch.setenv(loop.ENV, "uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'wallaroo-py\[fast\]'"):
        loop.run(which())
