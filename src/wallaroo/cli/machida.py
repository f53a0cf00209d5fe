"""``machida`` / ``machida3``: run a worker for an application module.

    machida --application-module celsius [worker options] [application arguments]

Exit codes: 0 after a clean stop (SIGINT/SIGTERM), 2 for a bad worker option or an application
that cannot be loaded, 1 for anything else.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from wallaroo import __version__
from wallaroo.errors import CheckpointError, ConfigurationError, WallarooParameterError
from wallaroo.worker.flags import WorkerFlags, parse_worker_flags

if TYPE_CHECKING:
    from wallaroo.worker.runtime import Worker

# The worker itself (wallaroo.worker.*) is imported by _main, after main() installed its SIGTERM
# handler: a stop request during those imports then exits with 0 instead of killing the process.

__all__ = ["main", "run_worker"]

USAGE = """\
usage: {prog} --application-module MODULE [worker options] [application arguments]

Runs one wallaroo-py worker: imports MODULE, calls application_setup(args) with the command line
minus the worker options below, and runs its pipelines until SIGINT or SIGTERM.

worker options:
  --application-module MODULE   module (or path to a .py file) defining application_setup(args)
  --name, -n NAME               worker name (default: 'initializer' with --cluster-initializer,
                                else 'worker'); keep it the same across restarts
  --cluster-initializer, -t     this worker initializes the cluster
  --worker-count, -w, --workers N
                                number of workers (the embedded backend runs 1; more need
                                --backend ray)
  --backend embedded|ray        execution backend (default: embedded; ray needs
                                pip install 'wallaroo-py[ray]', see docs/scale-out.md)
  --ray-address ADDRESS         Ray cluster to join (with --backend ray; default: start one)
  --resilience-dir, -r DIR      directory for checkpoints and the dead-letter file
  --run-with-resilience         take periodic checkpoints
  --time-between-checkpoints NS checkpoint interval in nanoseconds (default 1000000000)
  --recover-from-previous-checkpoint
                                start from the previous checkpoint if the latest is damaged
  --metrics, -m HOST:PORT       send metrics to the original's metrics hub (its UI) at HOST:PORT
  --metrics-http [HOST:]PORT    serve the dashboard, /metrics (Prometheus) and /api/stats on
                                HOST:PORT (127.0.0.1 when only a port is given; needs
                                pip install 'wallaroo-py[metrics]')
  --control -c, --data -d, --my-control -x, --my-data -y, --join -j HOST:PORT
                                cluster addresses of the original (ignored by the embedded backend)
  --external, -e HOST:PORT      external channel address (with --backend ray: the control port
                                of wallaroo scale; otherwise accepted and ignored)
  --stop-pause, -u NS           pause before migration
  --log-rotation                rotate logs on request
  --ponythreads N, --pony*      Pony runtime flags of the original: accepted and ignored
  --help, -h                    show this help
  --version                     show the version

application arguments: everything else, e.g. --in name@host:port,... --out host:port
Set WALLAROO_LOG_LEVEL=DEBUG for more detail.
"""


def _setup_logging() -> None:
    level = os.environ.get("WALLAROO_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _notices(flags: WorkerFlags, log: logging.Logger) -> None:
    cluster = flags.cluster_flags_given()
    if cluster:
        log.info(
            "cluster options %s are ignored: the embedded backend runs one worker",
            ", ".join(cluster),
        )
    if flags.external:
        log.info("--external is accepted and ignored in this version")


async def run_worker(worker: Worker) -> None:
    """Run ``worker`` until SIGINT or SIGTERM."""
    from wallaroo.worker import loop as event_loop

    loop = asyncio.get_running_loop()
    worker.log.debug("event loop: %s", event_loop.loop_name(loop))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)  # which restores SIG_DFL: a SIGTERM would kill
        signal.signal(signal.SIGTERM, _already_stopping)


def _stop_while_starting(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # a stop request before the event loop runs: exit cleanly


def _already_stopping(_signum: int, _frame: FrameType | None) -> None:
    logging.getLogger("wallaroo.worker").info("SIGTERM while stopping: already stopping")


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Entry point of ``machida``; returns the exit code.

    Before anything else it installs a SIGTERM handler (a stop request at any moment of the
    start-up exits with 0) and registers :mod:`faulthandler` on SIGUSR1: ``kill -USR1 PID``
    writes every thread's stack to stderr, the worker's log, and the worker goes on. A SIGTERM
    during the shutdown is logged and ignored (the worker is already stopping).
    """
    previous = signal.signal(signal.SIGTERM, _stop_while_starting)
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
    try:
        return _main(argv, prog)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if hasattr(signal, "SIGUSR1"):
            faulthandler.unregister(signal.SIGUSR1)


def _main(argv: Sequence[str] | None, prog: str | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    prog = prog or os.path.basename(sys.argv[0] or "machida")
    try:
        flags = parse_worker_flags(args)
    except ConfigurationError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if flags.help:
        print(USAGE.format(prog=prog))
        return 0
    if flags.version:
        print(f"{prog} (wallaroo-py) {__version__}")
        return 0
    _setup_logging()
    log = logging.getLogger("wallaroo.worker")
    log.info(
        "wallaroo-py %s worker starting: pid %d, %s (kill -USR1 %d dumps its stacks here)",
        __version__,
        os.getpid(),
        shlex.join([prog, *args]),
        os.getpid(),
    )
    if flags.application_module is None:  # parse_worker_flags requires it; keeps mypy honest
        print(f"{prog}: error: --application-module is required", file=sys.stderr)
        return 2
    if flags.backend == "ray":
        from wallaroo.ray_backend.runner import run as run_on_ray

        return run_on_ray(flags, prog)
    from wallaroo.loader import load_application
    from wallaroo.worker import loop as event_loop
    from wallaroo.worker.fork_snapshot import fork_snapshots_available
    from wallaroo.worker.runtime import Worker, WorkerOptions

    try:
        loaded = load_application(flags.application_module, [prog, *flags.app_args])
        options = WorkerOptions(
            name=flags.worker_name,
            resilience_dir=flags.resilience_dir,
            run_with_resilience=flags.run_with_resilience,
            time_between_checkpoints_ns=flags.time_between_checkpoints,
            recover_from_previous_checkpoint=flags.recover_from_previous_checkpoint,
            metrics_http=flags.metrics_http,
            metrics_hub=flags.metrics,
            fork_snapshots=fork_snapshots_available(),
        )
        worker = Worker(loaded, options, log=log, app_args=flags.app_args)
    except (ConfigurationError, WallarooParameterError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    _notices(flags, log)
    try:
        event_loop.run(run_worker(worker))
    except (ConfigurationError, CheckpointError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
