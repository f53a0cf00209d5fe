"""The coordinator: checkpoints, supervision, rollback and rescaling, in the driver process.

It runs in the ``machida --backend ray`` process (the Ray driver), so the application lives
and dies with that process: actors are owned by it and Ray removes them when it exits.

**Checkpoints** (``--run-with-resilience``): every ``--time-between-checkpoints`` the
coordinator asks every source actor to inject barrier ``n`` (each returns its positions);
workers align the barrier per stage, snapshot their key groups and forward it; sinks align it
and vote (PHASE1). When every worker has handed its blobs and every sink voted commit, the
checkpoint is written to ``<resilience dir>/checkpoints`` in the embedded worker's format (the
commit point); then sinks get PHASE2 commit and sources acknowledge their connectors. An abort
vote, a failed snapshot or a checkpoint not complete within :data:`CHECKPOINT_TIMEOUT` aborts it
and rolls back.

**Failures**: Ray's restarts and retries are off. When any actor (or the node it ran on) dies,
the whole application is rolled back: every actor is killed, a new incarnation is deployed
from the last committed checkpoint (into the current number of workers), and connectors
replay from the checkpointed positions. One log line says what died and what was restored.

**Rescaling** (:meth:`Coordinator.scale`): sources stop reading, a checkpoint is taken, and
the application is redeployed from it into the new number of workers (key groups reassigned).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from wallaroo.errors import ConfigurationError
from wallaroo.plan.physical import Exchange, PhysicalPlan
from wallaroo.ray_backend._ray import import_ray, is_actor_death
from wallaroo.ray_backend.checkpoints import ActorDied, call, recover, take_checkpoint
from wallaroo.ray_backend.deploy import Deployment, deploy
from wallaroo.ray_backend.records import CoordinatorOptions, RayStatistics, jsonable, reason
from wallaroo.ray_backend.statistics import StatisticsPoller
from wallaroo.ray_backend.topology import AppSpec, PlanGraph
from wallaroo.resilience.store import Checkpoint, CheckpointStore
from wallaroo.worker.checkpointing import CheckpointStatistics

__all__ = ["Coordinator", "CoordinatorOptions", "RayStatistics"]

TICK = 0.1
PING = 0.25
MAX_FAILED_DEPLOYS = 5
log = logging.getLogger("wallaroo.ray")


class Coordinator:
    """Runs one application on Ray (see the module docstring).

    Args:
        spec: how actors load the application.
        plan: the compiled plan (the driver's own copy).
        options: see :class:`CoordinatorOptions`.
    """

    def __init__(self, spec: AppSpec, plan: PhysicalPlan, options: CoordinatorOptions) -> None:
        self.ray = import_ray()
        self.spec = spec
        self.plan = plan
        self.options = options
        self.workers = options.workers
        self.store = CheckpointStore(Path(options.directory) / "checkpoints")
        self.requests: queue.Queue[tuple[dict[str, Any], Future[dict[str, Any]]]] = queue.Queue()
        self.deployment: Deployment | None = None
        self.last_committed = 0
        self._next_id = 1
        self.restarts = self.taken = self.aborted = 0
        self.last_duration = 0.0
        self._pings: dict[Any, tuple[str, Any]] = {}
        self._ticks: dict[Any, Any] = {}
        self._last_tick = 0.0
        self._last_ping = 0.0
        graph = PlanGraph(plan)
        self._needs_ticks = bool(plan.windows) or any(
            isinstance(seg.target, Exchange) for seg in graph.keyed
        )
        self._stopping = False
        self.where: dict[str, dict[str, Any]] = {}
        #: merges the actors' statistics for ``--metrics-http`` (None: not asked for)
        self.poller: StatisticsPoller | None = None

    # -- start --------------------------------------------------------------------------------
    def start(self) -> None:
        """Recover the newest checkpoint (with resilience) and deploy the actors.

        Raises:
            CheckpointError: the newest checkpoint is damaged or belongs to something else.
            ConfigurationError: a source cannot listen (and the like).
        """
        checkpoint = self._recover() if self.options.resilient else None
        # A taken address at start is a configuration error, reported soon.
        self.deployment = deploy(self.spec, self.plan, self.workers, checkpoint, listen_retry=1.0)
        self._locate()
        log.info(
            "application '%s' running on Ray: %d source, %d worker and %d sink actors "
            "(key groups %s)%s",
            self.plan.app_name,
            len(self.plan.sources),
            self.workers,
            len(self.plan.sinks),
            self.deployment.slots.describe(self.deployment.slots.ranges()),
            f", restored from checkpoint {checkpoint.id}" if checkpoint else "",
        )

    def _recover(self) -> Checkpoint | None:
        checkpoint = recover(self.store, self.plan, self.spec.name, self.options.fall_back)
        if checkpoint is not None:
            self.last_committed = checkpoint.id
            self._next_id = max(self._next_id, checkpoint.id + 1)
        return checkpoint

    # -- the loop -----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Supervise, tick, checkpoint and serve requests until ``stop`` is set; then shut
        down (a last checkpoint with resilience).

        Raises:
            ConfigurationError: the application could not be redeployed after a failure.
        """
        due = time.monotonic() + self.options.interval_s
        while not stop.is_set():
            try:
                self._supervise()
                self._tick()
                if self.poller is not None:
                    self.poller.poll(self.deployment)
                self._serve()
                if self.options.resilient and time.monotonic() >= due:
                    self.checkpoint()
                    due = time.monotonic() + self.options.interval_s
            except ActorDied as died:
                self._restart(self._describe(died))
            stop.wait(0.02)
        self.shutdown()

    def _describe(self, died: ActorDied) -> str:
        """What died, where, and whether its node went with it (for the rollback line)."""
        info = self.where.get(died.who)
        if info is None:
            return f"{died.who} died ({died.why})"
        node = str(info["node"])
        alive = {n.get("NodeID") for n in self.ray.nodes() if n.get("Alive")}
        gone = "" if node in alive else ", and that node is gone"
        return f"{died.who} (pid {info['pid']} on node {node[:12]}) died ({died.why}{gone})"

    def _locate(self) -> None:
        """Remember where every actor runs (for the log line of a death)."""
        d = self.deployment
        self.where = {}
        if d is not None:
            names = [n for n, _ in d.actors()]
            infos = call([a.info.remote() for _, a in d.actors()], names)
            self.where = dict(zip(names, infos, strict=True))

    def _supervise(self) -> None:
        """Notice a dead actor: every actor has one ping in flight; a finished ping is checked
        (a dead actor's fails at once) and sent again :data:`PING` seconds after the last."""
        if self.deployment is None:
            return
        if not self._pings:
            self._pings = {a.ping.remote(): (n, a) for n, a in self.deployment.actors()}
            self._last_ping = time.monotonic()
            return
        ready, _ = self.ray.wait(list(self._pings), num_returns=len(self._pings), timeout=0)
        for ref in ready:
            name, _ = self._pings[ref]
            try:
                self.ray.get(ref, timeout=0)
            except Exception as exc:
                if is_actor_death(exc):
                    raise ActorDied(name, reason(exc)) from exc
                raise
        if len(ready) == len(self._pings) and time.monotonic() - self._last_ping >= PING:
            self._pings.clear()

    def _tick(self) -> None:
        """Every :data:`TICK` seconds, let workers fire idle windows and send batches queued
        between workers (plans with neither need no ticks)."""
        now = time.monotonic()
        if not self._needs_ticks or self.deployment is None or now - self._last_tick < TICK:
            return
        self._last_tick = now
        if self._ticks:
            done, _ = self.ray.wait(list(self._ticks), num_returns=len(self._ticks), timeout=0)
            for ref in done:
                del self._ticks[ref]
        busy = set(self._ticks.values())
        for worker in self.deployment.workers:
            if worker not in busy:
                self._ticks[worker.tick.remote()] = worker

    def _serve(self) -> None:
        while True:
            try:
                request, reply = self.requests.get_nowait()
            except queue.Empty:
                return
            try:
                reply.set_result(self.handle(request))
            except ActorDied:
                reply.set_result({"ok": False, "error": "an actor died; rolled back"})
                raise
            except Exception as exc:
                reply.set_result({"ok": False, "error": f"{type(exc).__name__}: {exc}"})

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """A control request: ``{"op": "scale", "workers": N}``, ``{"op": "status"}`` or
        ``{"op": "statistics"}`` (every actor's ``statistics()``)."""
        op = request.get("op")
        if op == "status":
            return {"ok": True, **self.status()}
        if op == "statistics" and self.deployment is not None:
            d = self.deployment
            names = [n for n, _ in d.actors()]
            stats = call([a.statistics.remote() for _, a in d.actors()], names)
            return {"ok": True, "actors": jsonable(dict(zip(names, stats, strict=True)))}
        if op == "scale":
            workers = request.get("workers")
            if not isinstance(workers, int) or not 1 <= workers <= self.plan.key_groups:
                return {"ok": False, "error": f"workers must be 1..{self.plan.key_groups}"}
            return self.scale(workers)
        return {"ok": False, "error": f"unknown request {op!r}"}

    def status(self) -> dict[str, Any]:
        """Workers, restarts, checkpoints, and where every actor runs (name, pid, node)."""
        s = self.statistics()
        d = self.deployment
        actors = (
            call([a.info.remote() for _, a in d.actors()], [n for n, _ in d.actors()]) if d else []
        )
        return {
            "workers": s.workers,
            "restarts": s.restarts,
            "last_committed": s.last_committed,
            "checkpoints": s.checkpoints_taken,
            "actors": actors,
        }

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self) -> bool:
        """Take one checkpoint; True if it was committed (else the application rolled back).

        Raises:
            ActorDied: an actor died during the checkpoint.
        """
        d = self.deployment
        if d is None:
            return False
        started = time.perf_counter()
        n = self._next_id
        self._next_id += 1
        why = take_checkpoint(n, d, self.plan, self.spec, self.store)
        if why is not None:
            self.aborted += 1
            log.warning("checkpoint %d aborted (%s)", n, why)
            if not self._stopping:
                self._restart(f"checkpoint {n} aborted")
            return False
        self.last_committed = n
        self.taken += 1
        self.last_duration = time.perf_counter() - started
        log.debug("checkpoint %d committed in %.3f s", n, self.last_duration)
        return True

    # -- rollback and rescaling -------------------------------------------------------------------
    def _restart(self, why: str, *, planned: bool = False) -> None:
        """Kill every actor and redeploy from the last committed checkpoint (``planned``: for
        rescaling, logged as such).

        Raises:
            ConfigurationError: it failed :data:`MAX_FAILED_DEPLOYS` times in a row.
        """
        failures = 0
        while True:
            checkpoint = self._recover() if self.options.resilient else None
            what = (
                f"checkpoint {checkpoint.id}"
                if checkpoint is not None
                else "the beginning (no checkpoint: state starts empty)"
            )
            if planned:
                log.info("%s: redeploying from %s", why, what)
            else:
                log.error(
                    "ray backend: %s; rolling the application back to %s and restoring it "
                    "into %d workers",
                    why,
                    what,
                    self.workers,
                )
            self._pings.clear()
            self._ticks.clear()
            if self.poller is not None:
                self.poller.reset()
            if self.deployment is not None:
                self.deployment.teardown()
            self.restarts += 1
            try:
                self.deployment = deploy(self.spec, self.plan, self.workers, checkpoint)
                self._locate()
            except Exception as exc:
                failures += 1
                if failures >= MAX_FAILED_DEPLOYS:
                    raise ConfigurationError(
                        f"cannot redeploy the application after {failures} attempts: {exc}"
                    ) from exc
                why = f"redeploying failed ({type(exc).__name__}: {reason(exc)})"
                self.deployment = None
                continue
            log.info(
                "restored %s into %d workers (key groups %s)",
                what,
                self.workers,
                self.deployment.slots.describe(self.deployment.slots.ranges()),
            )
            return

    def scale(self, workers: int) -> dict[str, Any]:
        """Move the application to ``workers`` workers through a checkpoint.

        Returns:
            The reply for the control client.
        """
        if not self.options.resilient:
            return {
                "ok": False,
                "error": "scaling needs --run-with-resilience: state moves through a checkpoint",
            }
        d = self.deployment
        before = self.workers
        if d is None:
            return {"ok": False, "error": "the application is not running"}
        started = time.perf_counter()
        names = [name for name, _ in d.actors()][: len(d.sources)]
        call([s.pause.remote() for s in d.sources], names)
        self.workers = workers
        if self.checkpoint():
            self._restart(f"scaling from {before} to {workers} workers", planned=True)
        log.info(
            "scaled from %d to %d workers through checkpoint %d in %.2f s",
            before,
            workers,
            self.last_committed,
            time.perf_counter() - started,
        )
        return {"ok": True, "workers": workers, "checkpoint": self.last_committed}

    # -- shutdown -------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop the sources, take a last checkpoint (with resilience), drain the sinks and
        remove every actor."""
        d = self.deployment
        if d is None:
            return
        self._stopping = True
        timeout = self.options.drain_timeout
        try:
            self.ray.get([s.stop.remote(timeout) for s in d.sources], timeout=timeout + 10)
            self.ray.get([w.drain.remote(timeout) for w in d.workers], timeout=timeout + 10)
            if self.options.resilient:
                self.checkpoint()
            self.ray.get([k.drain.remote(timeout) for k in d.sinks], timeout=timeout + 10)
        except Exception as exc:
            log.warning("shutdown was not clean: %s", reason(exc))
        d.teardown()
        self.deployment = None
        log.info("application '%s' stopped", self.plan.app_name)

    def checkpoint_statistics(self) -> CheckpointStatistics | None:
        """The checkpoint counters as the embedded worker's (None without resilience);
        ``rollbacks`` counts redeployments, ``last_bytes`` is not measured (0)."""
        if not self.options.resilient:
            return None
        return CheckpointStatistics(
            self.last_committed, self.taken, self.aborted, self.restarts, self.last_duration, 0
        )

    def statistics(self) -> RayStatistics:
        """The coordinator's counters (each actor's own: the ``statistics`` request)."""
        d = self.deployment
        return RayStatistics(
            self.workers,
            self.restarts,
            self.last_committed,
            self.taken,
            self.aborted,
            self.last_duration,
            tuple(d.slots.ranges()) if d is not None else (),
        )
