"""What runs where, derived from the physical plan: stages, channels, barrier edges.

Source actors run the source segments; every worker actor hosts every keyed segment (for the
key groups it owns); sink actors own the sinks. A *stage* is a set of keyed segments that must
take their snapshot at the same moment because they share state (a state name used by two
segments, or a window and the segment that feeds it); usually one segment is one stage.

Barriers are aligned per stage: a stage's *inputs* are the actors that can send it messages
(the source actors whose segment exchanges into it, every worker when a keyed segment
exchanges into it, the worker itself for the output of a window). Its *edges* are where it
sends: every worker for an exchange (any key can go to any worker), the worker itself for a
window's output, the sink actors for its sinks. Actors are named ``s<i>`` (source ``i``) and
``w<j>`` (worker ``j``); edges are ``("w", j, segment)`` or ``("k", sink, -1)``.

Stages must form a DAG for aligned barriers to complete; :class:`PlanGraph` refuses a plan
whose state sharing makes a stage feed itself.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from wallaroo.errors import ConfigurationError
from wallaroo.loader import LoadedApplication, load_application
from wallaroo.plan.compiler import compile_application
from wallaroo.plan.physical import (
    DEFAULT_KEY_GROUPS,
    Exchange,
    PhysicalPlan,
    SegmentPlan,
    StateOp,
    ToSinks,
    ToWindow,
)

__all__ = ["AppSpec", "Edge", "PlanGraph", "source_name", "worker_name"]

Edge = tuple[str, int, int]
_LOCAL_VARIABLES = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})


def source_name(index: int) -> str:
    """The actor name of source ``index``: ``s<index>``."""
    return f"s{index}"


def worker_name(index: int) -> str:
    """The actor name of worker ``index``: ``w<index>``."""
    return f"w{index}"


@dataclass(frozen=True, slots=True)
class AppSpec:
    """Everything an actor needs to load the application exactly as the driver did.

    Every actor imports the module and calls ``application_setup`` itself, with the driver's
    arguments, Python path, working directory and environment (``RAY_*`` variables excepted),
    so every actor compiles the same plan.

    Attributes:
        module: the ``--application-module`` value.
        argv: what ``application_setup(args)`` receives (program name first).
        app_args: the application's arguments (for ``--kafka_*`` flags).
        sys_path: the driver's ``sys.path``.
        cwd: the driver's working directory.
        env: the driver's environment, without ``RAY_*`` variables; it replaces the actor
            process's own (but for ``PWD``, ``SHLVL`` and the like).
        name: the worker name (``--name``): sink transaction ids and checkpoints carry it.
        resilience_dir: absolute path of ``--resilience-dir`` ("" when not given).
        resilient: ``--run-with-resilience``.
        key_groups: number of key groups.
        log_level: the logging level name for actor processes.
        metrics: the engines record latency histograms (``--metrics-http`` or ``--metrics``).
        application: the application itself, pickled with Ray's cloudpickle (closures and
            classes defined in a function travel by value), for the testing harness's Ray
            mode; empty: import ``module``.
    """

    module: str
    argv: tuple[str, ...]
    app_args: tuple[str, ...]
    sys_path: tuple[str, ...]
    cwd: str
    env: tuple[tuple[str, str], ...]
    name: str = "worker"
    resilience_dir: str = ""
    resilient: bool = False
    key_groups: int = DEFAULT_KEY_GROUPS
    log_level: str = "INFO"
    metrics: bool = False
    application: bytes = b""

    @classmethod
    def here(
        cls,
        module: str,
        argv: list[str],
        app_args: list[str],
        *,
        name: str,
        resilience_dir: str | None,
        resilient: bool,
        key_groups: int = DEFAULT_KEY_GROUPS,
        metrics: bool = False,
    ) -> AppSpec:
        """A spec carrying this process's path, directory, environment and log level."""
        env = tuple((k, v) for k, v in os.environ.items() if not k.startswith("RAY_"))
        return cls(
            module=module,
            argv=tuple(argv),
            app_args=tuple(app_args),
            sys_path=tuple(sys.path),
            cwd=os.getcwd(),
            env=env,
            name=name,
            resilience_dir=os.path.abspath(resilience_dir) if resilience_dir else "",
            resilient=resilient,
            key_groups=key_groups,
            log_level=os.environ.get("WALLAROO_LOG_LEVEL", "INFO").upper(),
            metrics=metrics,
        )

    def load(self) -> tuple[LoadedApplication, PhysicalPlan]:
        """Apply the environment, import the module, build and compile the application.

        Raises:
            ConfigurationError, WallarooParameterError: as the embedded worker would.
        """
        for key, value in self.env:
            if key not in _LOCAL_VARIABLES:
                os.environ[key] = value
        for entry in reversed(self.sys_path):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        if os.path.isdir(self.cwd):
            os.chdir(self.cwd)
        logging.basicConfig(
            level=getattr(logging, self.log_level, logging.INFO),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        app: Any = self.module
        if self.application:
            import ray.cloudpickle  # after sys.path: what it refers to by name can be imported

            app = ray.cloudpickle.loads(self.application)
        loaded = load_application(app, list(self.argv))
        plan = compile_application(loaded.application, key_groups=self.key_groups)
        return loaded, plan


class PlanGraph:
    """Stages, inputs and edges of a plan (see the module docstring).

    Raises:
        ConfigurationError: a stage would feed itself (state shared along a path of keyed
            steps), which aligned barriers cannot checkpoint.
    """

    def __init__(self, plan: PhysicalPlan) -> None:
        self.plan = plan
        self.keyed = [s for s in plan.segments if s.keyed]
        self.segment = {s.id: s for s in plan.segments}
        parent = {s.id: s.id for s in self.keyed}

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        users: dict[str, int] = {}
        for seg in self.keyed:
            for state in self._states(seg):
                if state in users:
                    parent[find(seg.id)] = find(users[state])
                else:
                    users[state] = seg.id
        roots = sorted({find(s.id) for s in self.keyed})
        self.stage_of = {s.id: roots.index(find(s.id)) for s in self.keyed}
        self.stages = [
            frozenset(s for s, g in self.stage_of.items() if g == i) for i in range(len(roots))
        ]
        self.stage_states = [
            sorted({st for s in stage for st in self._states(self.segment[s])})
            for stage in self.stages
        ]
        self._check_acyclic()

    def _states(self, seg: SegmentPlan) -> list[str]:
        names = [op.state for op in seg.ops if isinstance(op, StateOp)]
        if isinstance(seg.target, ToWindow):
            names.append(self.plan.windows[seg.target.window].state)
        return names

    def targets(self, seg: SegmentPlan) -> list[int]:
        """The keyed segments ``seg`` sends to (an exchange, or a window's next segment)."""
        if isinstance(seg.target, Exchange):
            return [seg.target.segment]
        if isinstance(seg.target, ToWindow):
            return [self.plan.windows[seg.target.window].next_segment]
        return []

    def _check_acyclic(self) -> None:
        after: dict[int, set[int]] = {i: set() for i in range(len(self.stages))}
        for seg in self.keyed:
            for target in self.targets(seg):
                after[self.stage_of[seg.id]].add(self.stage_of[target])
        state = dict.fromkeys(after, 0)

        def visit(stage: int) -> None:
            state[stage] = 1
            for nxt in after[stage]:
                if state[nxt] == 1:
                    names = ", ".join(repr(s) for s in self.stage_states[nxt]) or "(none)"
                    raise ConfigurationError(
                        "the Ray backend cannot checkpoint this application: keyed steps "
                        f"sharing the state {names} feed each other; use separate states"
                    )
                if state[nxt] == 0:
                    visit(nxt)
            state[stage] = 2

        for stage in after:
            if state[stage] == 0:
                visit(stage)

    # -- inputs -------------------------------------------------------------------------------
    def stage_inputs(self, stage: int, workers: int, me: int) -> frozenset[str]:
        """The actors that send to ``stage`` on worker ``me``."""
        found: set[str] = set()
        members = self.stages[stage]
        for source in self.plan.sources:
            seg = self.segment[source.segment]
            if isinstance(seg.target, Exchange) and seg.target.segment in members:
                found.add(source_name(source.index))
        for seg in self.keyed:
            if isinstance(seg.target, Exchange) and seg.target.segment in members:
                found.update(worker_name(j) for j in range(workers))
            elif isinstance(seg.target, ToWindow) and self.targets(seg)[0] in members:
                found.add(worker_name(me))
        return frozenset(found)

    def sink_inputs(self, sink: int, workers: int) -> frozenset[str]:
        """The actors that send to sink ``sink``."""
        found: set[str] = set()
        for source in self.plan.sources:
            seg = self.segment[source.segment]
            if isinstance(seg.target, ToSinks) and sink in seg.target.sinks:
                found.add(source_name(source.index))
        if any(isinstance(s.target, ToSinks) and sink in s.target.sinks for s in self.keyed):
            found.update(worker_name(j) for j in range(workers))
        return frozenset(found)

    # -- edges --------------------------------------------------------------------------------
    def segment_edges(self, seg: SegmentPlan, workers: int, me: int | None) -> list[Edge]:
        """Where segment ``seg`` sends, run by worker ``me`` (None: a source actor)."""
        target = seg.target
        if isinstance(target, Exchange):
            return [("w", j, target.segment) for j in range(workers)]
        if isinstance(target, ToWindow) and me is not None:
            return [("w", me, self.targets(seg)[0])]
        if isinstance(target, ToSinks):
            return [("k", i, -1) for i in target.sinks]
        return []

    def stage_edges(self, stage: int, workers: int, me: int) -> list[Edge]:
        """Where stage ``stage`` sends when run by worker ``me``: the edges of its segments,
        without duplicates, in segment order.
        """
        edges: list[Edge] = []
        for seg_id in sorted(self.stages[stage]):
            for edge in self.segment_edges(self.segment[seg_id], workers, me):
                if edge not in edges:
                    edges.append(edge)
        return edges
