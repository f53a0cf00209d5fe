"""The sink actor: one per sink, owning its connection (TCP, connector with 2PC, Kafka).

It reuses the embedded worker's sink outputs unchanged, in an event loop in a thread of the
actor. Payloads arrive already encoded (the senders run the encoders); each batch is handed to
the loop in the order it came, so a sender's output keeps its order.

Barriers are aligned over the sink's inputs (every actor that can write to it). At the
barrier a connector sink closes its valve (:meth:`ConnectorSinkOutput.barrier`: later output
is held until phase 2) and sends PHASE1 once its output before the barrier is out; the vote
waits in :meth:`SinkActor.vote` for the coordinator, which then sends :meth:`commit` or
:meth:`abort`. Other sinks vote commit at once.

Backpressure: while the output holds more than its high-water mark, a write waits up to
:data:`WRITE_WAIT` seconds for it to drain before returning, so the senders' bounded windows
slow them down; it never waits longer, so the coordinator's commit (which may be what frees
the held output) always gets its turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from wallaroo.engine.deadletter import DeadLetterLog
from wallaroo.ray_backend._ray import actor_info
from wallaroo.ray_backend.aligner import BarrierAligner
from wallaroo.ray_backend.channels import Data, Items
from wallaroo.ray_backend.loop import LoopThread
from wallaroo.ray_backend.source_actor import deadletter_path
from wallaroo.ray_backend.topology import AppSpec
from wallaroo.resilience.manifest import SinkPosition
from wallaroo.worker.checkpointing import VOTE_TIMEOUT
from wallaroo.worker.connector_sink import ConnectorSinkOutput
from wallaroo.worker.flow import Gate
from wallaroo.worker.kinds import Host, Output, sink_kind

__all__ = ["WRITE_WAIT", "SinkActor"]

WRITE_WAIT = 0.05
log = logging.getLogger("wallaroo.ray")


class SinkActor:
    """Sink ``index`` of the plan (see the module docstring).

    Args:
        spec: how to load the application.
        index: the sink's index in the plan.
        inputs: the names of the actors that write to it.
        restore: the sink's position in the checkpoint restored (connector sinks), or None.

    Raises:
        ConfigurationError: a sink kind the Ray backend cannot run.
    """

    def __init__(
        self, spec: AppSpec, index: int, inputs: frozenset[str], restore: SinkPosition | None
    ) -> None:
        self.spec = spec
        self.loaded, self.plan = spec.load()
        self.sink = self.plan.sinks[index]
        self.aligner = BarrierAligner(inputs)
        self.loop = LoopThread(f"sink {self.sink.name}")
        self.dead = DeadLetterLog(deadletter_path(spec), worker=f"{spec.name}.sink{index}", log=log)
        self.output: Output = self.loop.call(self._output)
        if restore is not None and isinstance(self.output, ConnectorSinkOutput):
            self.loop.call(self.output.restore, restore.offset, restore.txn)
        self._votes: dict[int, tuple[bool, dict[str, Any] | None]] = {}
        self._voting: dict[int, asyncio.Task[None]] = {}
        self.messages = 0

    def _output(self) -> Output:
        self.gate = Gate()
        spec = self.spec
        host = Host(
            app_name=self.plan.app_name,
            worker_name=spec.name,
            app_args=tuple(spec.app_args),
            gate=self.gate,
            log=log,
            dead_letters=self.dead,
            resilient=spec.resilient,
            backend="the Ray backend",
        )
        return sink_kind(self.sink, host.backend).output(self.sink, host)

    def start(self) -> str:
        """Start connecting (and reconnecting) to the sink's peer."""
        self.loop.call(self.loop.background, [(f"sink {self.sink.name}", self.output.run())])
        return self.sink.name

    # -- data ---------------------------------------------------------------------------------
    def write(self, sender: str, items: Items) -> None:
        """Output from ``sender`` (payload batches and barriers, in order)."""
        work = [(sender, item) for item in items]
        while work:
            who, item = work.pop(0)
            aligner = self.aligner
            if aligner.arrived and aligner.blocked(who):
                aligner.hold(who, item)
            elif isinstance(item, Data):
                self.messages += len(item.values)
                self.loop.soon(self.output.write, item.values)
            elif aligner.barrier(who, item.checkpoint_id):
                self.loop.soon(self._at_barrier, item.checkpoint_id)
                work[:0] = aligner.complete()
        if not self.gate.is_open:
            deadline = time.monotonic() + WRITE_WAIT
            while not self.gate.is_open and time.monotonic() < deadline:
                time.sleep(0.002)

    def _at_barrier(self, checkpoint_id: int) -> None:
        """In the loop, after every write before the barrier: start the vote."""
        output = self.output
        if not isinstance(output, ConnectorSinkOutput):
            self._votes[checkpoint_id] = (True, None)
            return
        entry = output.barrier(checkpoint_id)

        async def vote() -> None:
            ok = await output.prepare(checkpoint_id, VOTE_TIMEOUT)
            self._votes[checkpoint_id] = (ok, entry)

        def voted(task: asyncio.Task[None]) -> None:
            self._voting.pop(checkpoint_id, None)
            if task.cancelled() or task.exception() is not None:
                log.error(
                    "sink '%s' could not vote on checkpoint %d",
                    self.sink.name,
                    checkpoint_id,
                    exc_info=None if task.cancelled() else task.exception(),
                )
                self._votes[checkpoint_id] = (False, entry)  # the coordinator aborts at once

        task = asyncio.get_running_loop().create_task(vote(), name=f"vote {checkpoint_id}")
        self._voting[checkpoint_id] = task  # held until it is done: its error is the vote
        task.add_done_callback(voted)

    def vote(self, checkpoint_id: int) -> tuple[bool, dict[str, Any] | None] | None:
        """The sink's vote on ``checkpoint_id`` and its checkpoint entry (``offset``,
        ``txn``; None for sinks without 2PC), or None while it is not decided."""
        return self._votes.pop(checkpoint_id, None)

    def commit(self, txn: str) -> None:
        """Phase 2, commit (connector sinks)."""
        if isinstance(self.output, ConnectorSinkOutput):
            self.loop.call(self.output.commit, txn)

    def abort(self, txn: str) -> None:
        """Phase 2, abort (connector sinks)."""
        if isinstance(self.output, ConnectorSinkOutput):
            self.loop.call(self.output.abort, txn)

    def drain(self, timeout: float) -> bool:
        """Wait until the output is handed on (or ``timeout``); True if it was."""
        return self.loop.run(self.output.drain(timeout))

    def stop(self) -> None:
        """Close the connection (the last call)."""
        self.loop.call(self.output.stop)
        self.loop.run(self.loop.end_background())
        self.dead.close()

    def info(self) -> dict[str, Any]:
        """This actor's name, process id and node."""
        return actor_info(f"sink{self.sink.index}")

    def ping(self) -> str:
        """This actor's name (a liveness check)."""
        return f"sink {self.sink.index}"

    def statistics(self) -> dict[str, Any]:
        """The sink's counters."""
        return {
            "sink": self.sink.name,
            "messages": self.messages,
            "output": self.loop.call(self.output.statistics),
        }
