"""An asyncio event loop in a thread of an actor.

Source and sink actors own the worker's asyncio ingress and egress objects (listeners,
connector sessions, sink connections). Those live in one event loop running in a thread of the
actor; Ray calls arrive in the actor's main thread and hand work to the loop. Handing over with
:meth:`LoopThread.soon` keeps the order of the calls (the loop runs callbacks first in, first
out).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """Runs an event loop in a daemon thread named ``name``."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` in the loop and return its result.

        Raises:
            TimeoutError: not done within ``timeout`` seconds; whatever ``coro`` raised.
        """
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Call ``fn(*args)`` in the loop's thread and return its result."""

        async def call() -> T:
            return fn(*args)

        return self.run(call(), timeout)

    def soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn(*args)`` in the loop, after everything scheduled before."""
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
