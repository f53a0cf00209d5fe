"""The worker's own command-line options, separated from the application's.

``application_setup(args)`` receives the command line minus these options (``decisions.md``):
the application parses ``--in``, ``--out``, ``--kafka_*`` and anything of its own. A bad value of
a worker option is a :class:`~wallaroo.errors.ConfigurationError` naming the flag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wallaroo.errors import ConfigurationError

__all__ = ["WorkerFlags", "parse_worker_flags"]


def _positive(flag: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(f"{flag} expects a positive integer, got {value!r}")
    return int(value)


def _non_negative(flag: str, value: str) -> int:
    if not value.isdigit():
        raise ConfigurationError(f"{flag} expects a non-negative integer, got {value!r}")
    return int(value)


def _address(flag: str, value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(f"{flag} expects host:port (e.g. 127.0.0.1:5001), got {value!r}")
    return value


def _local_address(flag: str, value: str) -> str:
    """``HOST:PORT``, or a bare ``PORT`` meaning 127.0.0.1 (loopback unless asked otherwise)."""
    return _address(flag, f"127.0.0.1:{value}" if value.isdigit() else value)


def _text(flag: str, value: str) -> str:
    if not value:
        raise ConfigurationError(f"{flag} needs a value")
    return value


def _backend(flag: str, value: str) -> str:
    if value not in ("embedded", "ray"):
        raise ConfigurationError(f"{flag} expects 'embedded' or 'ray', got {value!r}")
    return value


# flag -> (attribute, converter or None for a switch)
_OPTIONS: dict[str, tuple[str, Callable[[str, str], Any] | None]] = {
    "--application-module": ("application_module", _text),
    "--name": ("name", _text),
    "-n": ("name", _text),
    "--cluster-initializer": ("cluster_initializer", None),
    "-t": ("cluster_initializer", None),
    "--worker-count": ("worker_count", _positive),
    "-w": ("worker_count", _positive),
    "--workers": ("worker_count", _positive),
    "--backend": ("backend", _backend),
    "--ray-address": ("ray_address", _text),
    "--resilience-dir": ("resilience_dir", _text),
    "-r": ("resilience_dir", _text),
    "--run-with-resilience": ("run_with_resilience", None),
    "--time-between-checkpoints": ("time_between_checkpoints", _positive),
    "--recover-from-previous-checkpoint": ("recover_from_previous_checkpoint", None),
    "--metrics": ("metrics", _address),
    "-m": ("metrics", _address),
    "--metrics-http": ("metrics_http", _local_address),
    "--control": ("control", _address),
    "-c": ("control", _address),
    "--data": ("data", _address),
    "-d": ("data", _address),
    "--my-control": ("my_control", _address),
    "-x": ("my_control", _address),
    "--my-data": ("my_data", _address),
    "-y": ("my_data", _address),
    "--external": ("external", _address),
    "-e": ("external", _address),
    "--join": ("join", _address),
    "-j": ("join", _address),
    "--stop-pause": ("stop_pause", _non_negative),
    "-u": ("stop_pause", _non_negative),
    "--log-rotation": ("log_rotation", None),
    "--help": ("help", None),
    "-h": ("help", None),
    "--version": ("version", None),
}
# Pony runtime flags that take a value; every other --pony* flag is a switch.
_PONY_VALUED = {
    "--ponythreads",
    "--ponyminthreads",
    "--ponycdinterval",
    "--ponygcinitial",
    "--ponygcfactor",
    "--ponysuspendthreshold",
    "--ponymaxthreads",
}
CLUSTER_FLAGS = ("control", "data", "my_control", "my_data", "join")


@dataclass
class WorkerFlags:
    """The worker options found on a command line; ``app_args`` is everything else."""

    application_module: str | None = None
    name: str | None = None
    cluster_initializer: bool = False
    worker_count: int = 1
    backend: str = "embedded"
    ray_address: str | None = None
    resilience_dir: str | None = None
    run_with_resilience: bool = False
    time_between_checkpoints: int = 1_000_000_000
    recover_from_previous_checkpoint: bool = False
    metrics: str | None = None
    metrics_http: str | None = None
    control: str | None = None
    data: str | None = None
    my_control: str | None = None
    my_data: str | None = None
    external: str | None = None
    join: str | None = None
    stop_pause: int | None = None
    log_rotation: bool = False
    help: bool = False
    version: bool = False
    pony_flags: list[str] = field(default_factory=list)
    app_args: list[str] = field(default_factory=list)

    @property
    def worker_name(self) -> str:
        """``--name``, else ``initializer`` with ``--cluster-initializer``, else ``worker``."""
        if self.name:
            return self.name
        return "initializer" if self.cluster_initializer else "worker"

    def cluster_flags_given(self) -> list[str]:
        """The multi-worker cluster options that were given, as ``--option`` names."""
        return ["--" + f.replace("_", "-") for f in CLUSTER_FLAGS if getattr(self, f)]


def parse_worker_flags(argv: Sequence[str]) -> WorkerFlags:
    """Split ``argv`` (without the program name) into worker options and application args.

    Raises:
        ConfigurationError: a worker option has a bad or missing value, or the options
            contradict each other.
    """
    flags = WorkerFlags()
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        if name.startswith("--pony"):
            flags.pony_flags.append(arg)
            if name in _PONY_VALUED and not eq and i + 1 < len(argv):
                flags.pony_flags.append(argv[i + 1])
                i += 1
        elif name in _OPTIONS:
            attr, convert = _OPTIONS[name]
            if convert is None:
                if eq:
                    raise ConfigurationError(f"{name} takes no value, got {arg!r}")
                setattr(flags, attr, True)
            else:
                if eq:
                    value = inline
                elif i + 1 < len(argv):
                    i += 1
                    value = argv[i]
                else:
                    raise ConfigurationError(f"{name} needs a value")
                setattr(flags, attr, convert(name, value))
        else:
            flags.app_args.append(arg)
        i += 1
    _check(flags)
    return flags


def _check(flags: WorkerFlags) -> None:
    if flags.help or flags.version:
        return
    if flags.application_module is None:
        raise ConfigurationError(
            "--application-module is required (the module that defines application_setup(args))"
        )
    if flags.worker_count > 1 and flags.backend != "ray":
        raise ConfigurationError(
            f"--worker-count {flags.worker_count} needs --backend ray: the "
            "embedded backend runs one worker"
        )
    if flags.ray_address and flags.backend != "ray":
        raise ConfigurationError("--ray-address needs --backend ray")
    if flags.cluster_initializer and flags.join:
        raise ConfigurationError("--join cannot be combined with --cluster-initializer")
