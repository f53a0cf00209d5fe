"""The worker actor: a synchronous Ray actor around a :class:`WorkerCore`.

Synchronous and single-threaded on purpose: Ray then runs one caller's calls in the order they
were made, which is what keeps every key's messages in order. Every method returns quickly
except :meth:`WorkerActor.deliver` (which runs the batch through the keyed segments).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from wallaroo.engine.deadletter import DeadLetterLog
from wallaroo.ray_backend._ray import RayTransport, actor_info, submitter
from wallaroo.ray_backend.channels import Items
from wallaroo.ray_backend.slots import SlotMap
from wallaroo.ray_backend.source_actor import deadletter_path
from wallaroo.ray_backend.topology import AppSpec, worker_name
from wallaroo.ray_backend.worker_core import WorkerCore

__all__ = ["WorkerActor"]


class WorkerActor:
    """Worker ``index``: hosts the key groups ``slots`` gives it, for every keyed segment."""

    def __init__(
        self, spec: AppSpec | None = None, index: int = 0, slots: SlotMap | None = None
    ) -> None:
        if spec is not None and slots is not None:  # else :meth:`setup` comes later
            self.setup(spec, index, slots)

    def setup(
        self, spec: AppSpec, index: int, slots: SlotMap, dead_letter_path: str | None = ""
    ) -> None:
        """(Re)build the worker for ``spec``: a new core, empty state, no channels (the
        testing harness reuses its actors across applications). ``dead_letter_path``: the
        dead-letter file ("": the application's, see ``deadletter_path``; None: in memory)."""
        loaded, plan = spec.load()
        dead = DeadLetterLog(
            deadletter_path(spec) if dead_letter_path == "" else dead_letter_path,
            worker=f"{spec.name}.{worker_name(index)}",
            log=logging.getLogger("wallaroo.ray"),
        )
        dead.serialize = loaded.serialize
        self.core = WorkerCore(loaded, plan, index, slots, dead, metrics=spec.metrics)
        self.started = time.perf_counter()
        self.busy_s = 0.0  # time spent in deliver()
        self.calls = 0

    def wire(self, workers: list[Any], sinks: list[Any]) -> int:
        """Channels to every worker and sink actor; returns the number of key groups owned."""
        me = self.core.name
        self.core.wire(
            [submitter(w.deliver, me) for w in workers],
            [submitter(s.write, me) for s in sinks],
            RayTransport(),
        )
        return len(self.core.owned)

    def restore(self, blobs: dict[str, dict[int, bytes]]) -> int:
        """Replace the state of the owned key groups with checkpoint blobs (state name -> group
        -> blob); return the number of keys restored.
        """
        return self.core.restore(blobs)

    def deliver(self, sender: str, items: Items) -> None:
        """Process a batch from ``sender`` (data and barriers, in order), then send what it made;
        the time it takes counts as busy.
        """
        started = time.perf_counter()
        self.core.deliver(sender, items)
        self.busy_s += time.perf_counter() - started
        self.calls += 1

    def tick(self) -> None:
        """Time passes: idle windows fire; queued batches between workers go out."""
        self.core.tick()

    def end_of_input(self) -> None:
        """No more input will come: every window holding data fires."""
        self.core.end_of_input()

    def settle(self, timeout: float) -> int:
        """Send everything, wait for the calls (up to ``timeout`` s per channel); return the
        messages still buffered, queued or in flight (the harness waits until all are 0)."""
        self.core.drain(timeout)
        return self.core.pending()

    def contents(self) -> dict[str, Any]:
        """State objects (``states``) and dead letters (``dead_letters``) of this worker, for
        the testing harness's result."""
        core = self.core
        return {"states": core.state_objects(), "dead_letters": list(core.dead.records)}

    def collect(self, checkpoint_id: int) -> dict[str, Any] | None:
        """This worker's part of checkpoint ``checkpoint_id``: None while stages still wait for
        barriers, else ``{"blobs": [(name, bytes)], "error": str | None}``.
        """
        return self.core.collect(checkpoint_id)

    def drain(self, timeout: float) -> bool:
        """Send everything and wait for the calls to finish, up to ``timeout`` seconds per channel
        (at shutdown); True if they all did.
        """
        return self.core.drain(timeout)

    def info(self) -> dict[str, Any]:
        """This actor's name, process id and node."""
        return actor_info(self.core.name)

    def ping(self) -> str:
        """This worker's name (a liveness check)."""
        return self.core.name

    def statistics(self) -> dict[str, Any]:
        """The core's statistics, the calls delivered and the share of time spent in them."""
        alive = time.perf_counter() - self.started
        return {
            **self.core.statistics(),
            "calls": self.calls,
            "busy": self.busy_s / alive if alive > 0 else 0.0,
        }
