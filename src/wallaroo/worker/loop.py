"""The worker's event loop: uvloop's when it is installed (the ``fast`` extra), asyncio's
otherwise.

``WALLAROO_EVENT_LOOP=asyncio`` forces asyncio's loop (to compare, or to rule uvloop out);
``WALLAROO_EVENT_LOOP=uvloop`` requires uvloop and fails with a message naming the extra when it
is missing. Everything the worker does runs on either loop: it uses only the public asyncio API.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from wallaroo.errors import ConfigurationError

__all__ = ["ENV", "loop_factory", "loop_name", "run"]

ENV = "WALLAROO_EVENT_LOOP"
T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when it is installed and not turned off, else None
    (asyncio's default loop).

    Raises:
        ConfigurationError: ``WALLAROO_EVENT_LOOP`` is neither ``asyncio`` nor ``uvloop``, or
            asks for uvloop while it is missing.
    """
    wanted = os.environ.get(ENV, "").strip().lower()
    if wanted not in ("", "asyncio", "uvloop"):
        raise ConfigurationError(f"{ENV} must be 'asyncio' or 'uvloop', got {wanted!r}")
    if wanted == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:
        if wanted == "uvloop":
            raise ConfigurationError(
                f"{ENV}=uvloop but uvloop is not installed ({exc}); install it with: "
                "pip install 'wallaroo-py[fast]'"
            ) from exc
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: which event loop ``loop`` is."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new event loop of :func:`loop_factory`'s kind, as
    :func:`asyncio.run` does (the loop is closed afterwards).

    Raises:
        ConfigurationError: see :func:`loop_factory` (``main`` is then closed unrun).
    """
    try:
        factory = loop_factory()
    except ConfigurationError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
