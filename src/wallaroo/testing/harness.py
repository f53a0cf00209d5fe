"""Run an application in this process, with lists for sources and sinks and no sockets.

>>> result = run("celsius", inputs={"celsius_feed": [struct.pack(">f", 100.0)]})  # doctest: +SKIP
>>> result.outputs["fahrenheit_conversion"]                                         # doctest: +SKIP
[b'212.0']
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wallaroo.decorators import to_bytes
from wallaroo.engine.clock import Clock
from wallaroo.engine.deadletter import DeadLetter, DeadLetterLog
from wallaroo.engine.local import EngineStatistics, LocalEngine
from wallaroo.errors import CheckpointError
from wallaroo.loader import load_application
from wallaroo.plan.compiler import compile_application
from wallaroo.plan.physical import DEFAULT_KEY_GROUPS, PhysicalPlan, SourcePlan
from wallaroo.worker.kinds import sink_kind, source_kind

if TYPE_CHECKING:
    from wallaroo.ray_backend.harness import RayEngine
    from wallaroo.worker.checkpointing import Checkpointer

log = logging.getLogger("wallaroo.testing")

__all__ = ["Harness", "ListSink", "RunResult", "default_backend", "run"]

_default: list[Any] = ["embedded", 2]


@contextlib.contextmanager
def default_backend(backend: str, workers: int = 2) -> Iterator[None]:
    """Within the ``with`` block, :class:`Harness` and :func:`run` use ``backend`` (and
    ``workers`` Ray workers) unless told otherwise: one test body runs on both backends.

    >>> with default_backend("ray", workers=2):  # doctest: +SKIP
    ...     assert run(app, inputs=...).output() == expected
    """
    if backend not in ("embedded", "ray"):
        raise ValueError(f"backend must be 'embedded' or 'ray', got {backend!r}")
    saved = list(_default)
    _default[:] = [backend, workers]
    try:
        yield
    finally:
        _default[:] = saved


class ListSink:
    """A sink port that keeps every payload in :attr:`payloads`."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    def write(self, payloads: list[bytes]) -> None:
        """Keep ``payloads``."""
        self.payloads.extend(payloads)


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run produced.

    Attributes:
        outputs: encoded payloads per sink name (a connector's name, or ``host:port`` for a TCP
            sink), in the order the sink received them.
        dead_letters: messages that failed, with the reason.
        statistics: the engine's counters at the end of the run.
        states: state objects by state name, then by key.
        plan: the compiled plan.
    """

    outputs: Mapping[str, list[bytes]]
    dead_letters: tuple[DeadLetter, ...]
    statistics: EngineStatistics
    states: Mapping[str, Mapping[str, Any]]
    plan: PhysicalPlan

    def decoded(self, sink: str) -> list[Any]:
        """A connector sink's outputs decoded with its decoder, as ``SinkConnector.read()``
        would return them."""
        plan = self.plan.sink(sink)
        decode = sink_kind(plan).decoder(plan.config)
        if decode is None:
            raise ValueError(f"sink {sink!r} is not a connector sink; it has no decoder")
        return [decode(p) for p in self.outputs[sink]]

    def output(self) -> list[bytes]:
        """The outputs of the application's only sink."""
        if len(self.outputs) != 1:
            raise ValueError(f"the application has {len(self.outputs)} sinks; use .outputs[name]")
        return next(iter(self.outputs.values()))


class Harness:
    """An application running in-process, fed by hand.

    Args:
        app: a module name, a module, an ``application_setup`` function or a built application.
        args: the arguments ``application_setup`` receives.
        clock: the engine's clock (e.g. :class:`~wallaroo.testing.MockClock`).
        key_groups: number of key groups of the state.
        dead_letter_path: also append dead letters to this JSON Lines file.
        backend: ``"embedded"`` (the default: this process's engine) or ``"ray"``: the keyed
            segments run in ``workers`` Ray worker actors (a local Ray cluster is started if
            this process has none); :meth:`push` and the others return once their output has
            reached the sinks. The default comes from :func:`default_backend`.
        workers: the number of Ray worker actors (``backend="ray"``).

    Raises:
        ValueError: an unknown backend, or a ``clock`` with the Ray backend (the actors'
            clocks are their own: a mock clock drives the embedded engine only).
    """

    def __init__(
        self,
        app: Any,
        args: Iterable[str] = (),
        *,
        clock: Clock | None = None,
        key_groups: int = DEFAULT_KEY_GROUPS,
        dead_letter_path: str | None = None,
        backend: str | None = None,
        workers: int | None = None,
    ) -> None:
        backend = backend or _default[0]
        if backend not in ("embedded", "ray"):
            raise ValueError(f"backend must be 'embedded' or 'ray', got {backend!r}")
        if backend == "ray" and clock is not None:
            raise ValueError("a clock drives the embedded engine only, not backend='ray'")
        argv = list(args)
        loaded = load_application(app, argv)
        self.plan = compile_application(loaded.application, key_groups=key_groups)
        self.backend = backend
        self.sinks = [ListSink() for _ in self.plan.sinks]
        dead = DeadLetterLog(dead_letter_path, worker="testing")
        dead.serialize = loaded.serialize
        self._ray: RayEngine | None = None
        if backend == "ray":
            from wallaroo.ray_backend.harness import RayEngine

            self.engine: LocalEngine | RayEngine = RayEngine(
                app,
                argv,
                self.plan,
                workers=workers or _default[1],
                dead_letters=dead,
                dead_letter_path=dead_letter_path,
            )
            self._ray = self.engine
        else:
            self.engine = LocalEngine(self.plan, self.sinks, dead_letters=dead, clock=clock)
        self._serialize, self._deserialize = loaded.serialize, loaded.deserialize
        self._checkpointers: dict[str, Checkpointer] = {}

    def _source(self, source: str | int) -> SourcePlan:
        if isinstance(source, int):
            return self.plan.sources[source]
        try:
            return self.plan.source(source)
        except KeyError as exc:
            raise KeyError(exc.args[0]) from None

    def push(
        self,
        source: str | int,
        items: Iterable[Any],
        *,
        batch_size: int = 1024,
        times: Iterable[int] | None = None,
    ) -> None:
        """Feed ``items`` to a source, in batches.

        Items are payloads as the worker receives them (``bytes``); for a connector source,
        any other value first goes through the connector's encoder, as
        ``SourceConnector.write(value)`` does. Generator sources take their own values.
        ``times`` are the items' event times in nanoseconds (as a connector's MESSAGE
        ``event_time`` gives them); without them windows use the clock's time (ingest time).
        """
        plan = self._source(source)
        encode = self._encoder(plan)
        it = iter(items)
        time_it = iter(times) if times is not None else None
        while batch := list(itertools.islice(it, batch_size)):
            if encode is not None:
                batch = [b if isinstance(b, bytes) else to_bytes(encode(b)) for b in batch]
            batch_times = None
            if time_it is not None:
                batch_times = list(itertools.islice(time_it, len(batch)))
                if len(batch_times) != len(batch):
                    raise ValueError("times must give one event time per item")
            self.engine.source_runner(plan.index).run(batch, times=batch_times)
        self._settle()

    def _settle(self) -> None:
        """With the Ray backend, wait until the output reached the sinks and collect it."""
        if self._ray is not None:
            self._ray.settle()
            for sink, payloads in zip(self.sinks, self._ray.outputs(), strict=True):
                sink.payloads.extend(payloads)

    def tick(self) -> None:
        """Let time-driven work happen (windows whose input went idle fire); call it after
        moving a :class:`MockClock`."""
        self.engine.tick()
        self._settle()

    def end_of_input(self) -> None:
        """Declare the input finished: every window holding data fires."""
        self.engine.end_of_input()
        self._settle()

    def checkpointer(self, directory: str | os.PathLike[str]) -> Checkpointer:
        """The worker's own checkpointer over this harness's state, storing in ``directory``
        (the worker's ``--resilience-dir``), with the application's ``serialize`` and
        ``deserialize``; one per directory, so checkpoint ids go on from the harness's last.
        It records state only: the harness has no connector streams or sinks.
        """
        from wallaroo.resilience.store import CheckpointStore
        from wallaroo.worker.checkpointing import Checkpointer

        if not isinstance(self.engine, LocalEngine):
            raise ValueError("the harness takes checkpoints with backend='embedded' only")
        key = os.path.abspath(directory)
        if key in self._checkpointers:
            return self._checkpointers[key]
        self._checkpointers[key] = checkpointer = Checkpointer(
            app_name=self.plan.app_name,
            worker_name="testing",
            engine=self.engine,
            store=CheckpointStore(directory),
            sources=[],
            generators=[],
            sinks=[],
            serialize=self._serialize,
            deserialize=self._deserialize,
            interval_s=3600.0,
            log=log,
        )
        return checkpointer

    def checkpoint(self, directory: str | os.PathLike[str]) -> int:
        """Take a checkpoint of every key group as the worker does; return its id. Call it
        outside a running event loop.

        Raises:
            CheckpointError: it was not committed (a state that cannot be serialised: the
                ``wallaroo.testing`` log names the key).
        """
        checkpointer = self.checkpointer(directory)
        if not asyncio.run(checkpointer.checkpoint()):
            raise CheckpointError("the checkpoint was not committed; see the wallaroo.testing log")
        return checkpointer.statistics().last_committed

    def restore(self, directory: str | os.PathLike[str]) -> int | None:
        """Restore the state of the latest checkpoint in ``directory`` (as a restarted worker
        does); return its id, or None when there is none.

        Raises:
            CheckpointError: the checkpoint cannot be read or does not fit the application.
        """
        return self.checkpointer(directory).recover()

    def _encoder(self, plan: SourcePlan) -> Any:
        return source_kind(plan).encoder(plan.config)

    def generate(self, source: str | int, limit: int, *, batch_size: int = 1024) -> int:
        """Run a generator source until it returns ``None`` or gave ``limit`` values; return how
        many it gave. Each batch of ``batch_size`` gets one ingest time from the clock."""
        plan = self._source(source)
        if _generator(plan) is None:
            raise ValueError(f"source {plan.name!r} is not a generator source")
        produced = sum(len(b) for b in self._generated(plan, limit, batch_size))
        self._settle()
        return produced

    def _generated(self, plan: SourcePlan, limit: int, batch_size: int) -> Iterator[list[Any]]:
        gen = _generator(plan)
        value = gen.initial_value()
        produced = 0
        batch: list[Any] = []
        while value is not None and produced < limit:
            batch.append(value)
            produced += 1
            if len(batch) >= batch_size:
                self.engine.process(plan.index, batch)
                yield batch
                batch = []
            value = gen.apply(value)
        if batch:
            self.engine.process(plan.index, batch)
            yield batch

    def result(self) -> RunResult:
        """What the application produced so far, with its state and counters."""
        self._settle()
        outputs = {
            p.name: list(s.payloads) for p, s in zip(self.plan.sinks, self.sinks, strict=True)
        }
        if self._ray is not None:
            states, letters = self._ray.contents()
        else:
            engine = self.engine
            assert isinstance(engine, LocalEngine)
            states = {name: dict(store.states) for name, store in engine.states.items()}
            letters = tuple(engine.dead_letters.records)
        return RunResult(outputs, letters, self.engine.statistics(), states, self.plan)


def _generator(plan: SourcePlan) -> Any:
    """The generator of a generator source, or None."""
    return source_kind(plan).generator(plan.config)


def run(
    app: Any,
    inputs: Mapping[str, Iterable[Any]] | None = None,
    *,
    args: Iterable[str] = (),
    clock: Clock | None = None,
    batch_size: int = 1024,
    gen_limit: int = 100_000,
    key_groups: int = DEFAULT_KEY_GROUPS,
    dead_letter_path: str | None = None,
    end_of_input: bool = True,
    backend: str | None = None,
    workers: int | None = None,
) -> RunResult:
    """Run ``app`` over ``inputs`` (items per source name) and return what came out.

    Sources are fed in turn, one batch of ``batch_size`` from each, so merged pipelines see
    their inputs interleaved. Generator sources run until they return ``None`` or produced
    ``gen_limit`` values. With ``end_of_input`` (the default), the end of the inputs is the
    end of the stream: every window holding data fires before the result is taken.
    ``backend`` and ``workers`` as for :class:`Harness`.
    """
    harness = Harness(
        app,
        args,
        clock=clock,
        key_groups=key_groups,
        dead_letter_path=dead_letter_path,
        backend=backend,
        workers=workers,
    )
    inputs = dict(inputs or {})
    feeds: list[tuple[SourcePlan, Iterator[Any]]] = []
    for name, items in inputs.items():
        plan = harness._source(name)
        if _generator(plan) is not None:
            raise ValueError(f"source {name!r} is a generator source; it takes no inputs")
        feeds.append((plan, iter(items)))
    feeds.extend(
        (plan, iter(harness._generated(plan, gen_limit, batch_size)))
        for plan in harness.plan.sources
        if _generator(plan) is not None
    )
    while feeds:
        remaining = []
        for plan, it in feeds:
            if _generator(plan) is not None:
                if next(it, None) is not None:
                    remaining.append((plan, it))
                continue
            batch = list(itertools.islice(it, batch_size))
            if batch:
                harness.push(plan.index, batch, batch_size=batch_size)
                remaining.append((plan, it))
        feeds = remaining
    if end_of_input:
        harness.end_of_input()
    harness._settle()
    return harness.result()
