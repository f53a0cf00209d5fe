"""Generator sources: ``initial_value()``, then ``apply(last)`` until it returns ``None``.

The source keeps the next value to emit; that value is its position in a checkpoint, so after a
rollback or a restart it continues exactly where the checkpoint was taken.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from wallaroo.configs import GenSourceConfig
from wallaroo.engine.local import LocalEngine
from wallaroo.plan.physical import SourcePlan
from wallaroo.worker.flow import Gate
from wallaroo.worker.ingress import IngressStatistics

__all__ = ["GeneratorSource"]

GENERATOR_BATCH = 1024
_UNSTARTED = object()


class GeneratorSource:
    """Runs a generator in batches, respecting backpressure."""

    kind = "generator source"

    def __init__(
        self, plan: SourcePlan, engine: LocalEngine, gate: Gate, log: logging.Logger
    ) -> None:
        config: GenSourceConfig = plan.config
        self.plan = plan
        self.generator = config.generator
        self.process = engine.source_runner(plan.index).run
        self.gate = gate
        self.log = log
        self.messages = 0
        self.errors = 0
        self._next: Any = _UNSTARTED  # the next value to emit; None when finished
        self._wake = asyncio.Event()

    @property
    def finished(self) -> bool:
        """True once the generator returned None."""
        return self._next is None

    def position(self) -> tuple[bool, Any]:
        """``(started, next value)``: what a checkpoint records."""
        started = self._next is not _UNSTARTED
        return started, (self._next if started else None)

    def restore(self, started: bool, next_value: Any) -> None:
        """Continue from a checkpoint's position."""
        self._next = next_value if started else _UNSTARTED
        self._wake.set()

    async def open(self, retry: float = 0.0) -> str:
        """Nothing to bind: a generator starts with :meth:`background`."""
        return self.plan.name

    def background(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """The generator's loop (:meth:`run`)."""
        return [(f"generator {self.plan.name}", self.run())]

    async def stop(self) -> None:
        """Nothing to close: the owner cancels :meth:`run`."""

    async def finish(self, *, commit: bool) -> None:
        """Nothing to commit: the position is in the checkpoints."""

    async def run(self) -> None:
        """Emit batches until the generator ends, then wait for a :meth:`restore`."""
        logged_end = False
        while True:
            if self._next is _UNSTARTED:
                self._next = self._call(self.generator.initial_value)
            if self._next is None:
                if not logged_end:
                    self.log.info(
                        "generator source '%s' finished after %d messages",
                        self.plan.name,
                        self.messages,
                    )
                    logged_end = True
                self._wake.clear()
                await self._wake.wait()
                continue
            logged_end = False
            await self.gate.wait_open()
            self._batch()
            await asyncio.sleep(0)

    def _batch(self) -> None:
        batch: list[Any] = []
        value = self._next
        while value is not None and len(batch) < GENERATOR_BATCH:
            batch.append(value)
            value = self._call(self.generator.apply, value)
        self._next = value
        self.process(batch)
        self.messages += len(batch)

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            self.errors += 1
            self.log.exception("generator source '%s' raised; it stops here", self.plan.name)
            return None

    def statistics(self) -> IngressStatistics:
        """The source's counters."""
        return IngressStatistics(
            self.plan.name, "generator source", "", 0, 0, self.messages, self.errors
        )
