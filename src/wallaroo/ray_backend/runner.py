"""``machida --backend ray``: run an application on a Ray cluster from this process.

This process is the Ray driver and runs the coordinator; it starts a local Ray cluster, or
joins the one at ``--ray-address``. SIGINT or SIGTERM stops the application cleanly (a last
checkpoint with ``--run-with-resilience``).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from wallaroo.engine.directories import resilience_directory
from wallaroo.errors import CheckpointError, ConfigurationError, WallarooParameterError, first_line
from wallaroo.loader import load_application
from wallaroo.plan.compiler import compile_application
from wallaroo.plan.physical import PhysicalPlan
from wallaroo.ray_backend._ray import import_ray, init_ray
from wallaroo.ray_backend.control import ControlServer
from wallaroo.ray_backend.coordinator import Coordinator
from wallaroo.ray_backend.records import CoordinatorOptions
from wallaroo.ray_backend.statistics import DriverMetrics, StatisticsPoller
from wallaroo.ray_backend.topology import AppSpec, PlanGraph
from wallaroo.worker.flags import WorkerFlags

__all__ = ["run"]

log = logging.getLogger("wallaroo.ray")


def run(flags: WorkerFlags, prog: str) -> int:
    """Run the application described by the worker flags ``flags`` on Ray; the exit code.

    Exit codes as the embedded worker's: 0 after SIGINT/SIGTERM, 2 with one line on stderr for
    Ray missing (naming the extra to install), an application that cannot be loaded, a source
    that cannot listen or a damaged newest checkpoint.
    """
    module = flags.application_module or ""  # parse_worker_flags requires it
    try:
        import_ray()
        loaded = load_application(module, [prog, *flags.app_args])
        plan = compile_application(loaded.application)
        PlanGraph(plan)
        if flags.worker_count > plan.key_groups:
            raise ConfigurationError(
                f"--worker-count {flags.worker_count}: at most {plan.key_groups} workers "
                f"(one per key group)"
            )
    except (ConfigurationError, WallarooParameterError) as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    directory = str(resilience_directory(flags.resilience_dir))
    spec = AppSpec.here(
        module,
        [prog, *flags.app_args],
        list(flags.app_args),
        name=flags.worker_name,
        resilience_dir=flags.resilience_dir,
        resilient=flags.run_with_resilience,
        key_groups=plan.key_groups,
        metrics=bool(flags.metrics_http or flags.metrics),
    )
    options = CoordinatorOptions(
        workers=flags.worker_count,
        resilient=flags.run_with_resilience,
        interval_s=flags.time_between_checkpoints / 1e9,
        directory=directory,
        fall_back=flags.recover_from_previous_checkpoint,
    )
    _notices(flags)
    try:
        metrics = _metrics(flags, plan)
    except ConfigurationError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    stop = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stop.set()

    started = False
    control: ControlServer | None = None
    previous: dict[int, Any] = {}
    try:
        started = init_ray(flags.ray_address)
        # after ray.init, which installs handlers of its own
        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        coordinator = Coordinator(spec, plan, options)
        control = ControlServer(coordinator.requests, flags.external, directory)
        if metrics is not None:
            poller, driver = metrics
            poller.checkpoints = coordinator.checkpoint_statistics
            coordinator.poller = poller
            driver.start()
        coordinator.start()
        coordinator.run(stop)
    except (ConfigurationError, CheckpointError, OSError) as exc:
        sys.stderr.write(f"{prog}: error: {_one_line(exc)}\n")
        return 2
    finally:
        if control is not None:
            control.close()
        if metrics is not None:
            metrics[1].close()
        if started:
            import_ray().shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _notices(flags: WorkerFlags) -> None:
    """One line for worker options the Ray backend accepts and does not use."""
    unused = [
        flag
        for flag, given in (
            ("--control", flags.control),
            ("--data", flags.data),
            ("--my-control", flags.my_control),
            ("--my-data", flags.my_data),
            ("--join", flags.join),
        )
        if given
    ]
    if unused:
        log.info("%s: accepted and not used by the Ray backend", ", ".join(unused))


def _metrics(
    flags: WorkerFlags, plan: PhysicalPlan
) -> tuple[StatisticsPoller, DriverMetrics] | None:
    """The poller and service ``--metrics-http`` / ``--metrics`` ask for, or None.

    Raises:
        ConfigurationError: an address is malformed, or the HTTP extra is not installed.
    """
    if not (flags.metrics_http or flags.metrics):
        return None
    poller = StatisticsPoller(flags.worker_name, plan)
    driver = DriverMetrics(
        plan, flags.worker_name, poller, http=flags.metrics_http, hub=flags.metrics
    )
    return poller, driver


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` (or of the error an actor raised) in one line."""
    cause = getattr(exc, "cause", None)  # a RayTaskError carries the actor's exception
    return first_line(cause if isinstance(cause, BaseException) else exc)
