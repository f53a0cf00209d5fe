"""An asyncio event loop in a thread of an actor.

Source and sink actors own the worker's asyncio ingress and egress objects (listeners,
connector sessions, sink connections). Those live in one event loop running in a thread of the
actor; Ray calls arrive in the actor's main thread and hand work to the loop. Handing over with
:meth:`LoopThread.soon` keeps the order of the calls (the loop runs callbacks first in, first
out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")

log = logging.getLogger("wallaroo.ray")


class LoopThread:
    """Runs an event loop in a daemon thread named ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._group: asyncio.Task[None] | None = None
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

    def background(self, coros: list[tuple[str, Coroutine[Any, Any, None]]]) -> None:
        """Run ``coros`` (with task names) in one task group until :meth:`end_background`.

        Call in the loop's thread. An error in one of them cancels the others and is logged
        (an actor's background work ends; its calls still work and report what they see).
        """
        if not coros:
            return
        if self._group is not None:
            raise RuntimeError(f"{self.name}: background work started twice")

        async def group() -> None:
            async with asyncio.TaskGroup() as tasks:
                for name, coro in coros:
                    tasks.create_task(coro, name=name)

        self._group = self.loop.create_task(group(), name=f"{self.name} background")
        self._group.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: background work failed", self.name, exc_info=task.exception())

    async def end_background(self) -> None:
        """Cancel the background work and wait until it ended (in the loop's thread)."""
        group, self._group = self._group, None
        if group is None:
            return
        group.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # _ended logged it
            await group

    def stop(self) -> None:
        """Stop the loop and let its thread end."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
