"""Everything that touches the ``ray`` package, imported only when the Ray backend runs.

``import wallaroo`` never imports Ray (a test checks ``sys.modules``); without the ``ray``
extra, :func:`import_ray` raises a :class:`~wallaroo.errors.ConfigurationError` that names
``pip install 'wallaroo-py[ray]'``. Ray's types are partial, so handles and object refs are
``Any`` here, at the boundary.

Ray settings for these machines (see ``docs/scale-out.md``): a local cluster is started with
``address="local"`` (never attach to a stale cluster by accident), usage stats off, and
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` so that everything stays on 127.0.0.1; every actor is
created with ``max_restarts=0`` and ``max_task_retries=0``: a retried call could run twice or
out of order, so a death is handled by our rollback, never by Ray.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wallaroo.errors import ConfigurationError, first_line

if TYPE_CHECKING:
    from wallaroo.ray_backend.channels import Items

__all__ = [
    "INSTALL_HINT",
    "RayTransport",
    "actor_info",
    "import_ray",
    "init_ray",
    "is_actor_death",
    "submitter",
]

INSTALL_HINT = "pip install 'wallaroo-py[ray]'"
log = logging.getLogger("wallaroo.ray")


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ConfigurationError: ray is not installed (the message names the extra).
    """
    try:
        import ray
    except ImportError:
        raise ConfigurationError(
            f"--backend ray needs Ray, which is not installed: {INSTALL_HINT}"
        ) from None
    return ray


def set_ray_environment() -> None:
    """The environment Ray needs on these machines (kept if already set)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def init_ray(address: str | None) -> bool:
    """Connect to the Ray cluster at ``address``, or start a local one.

    Returns:
        True when this call started Ray (so this process shuts it down), False when Ray was
        already initialised or ``address`` names a running cluster.

    Raises:
        ConfigurationError: Ray is missing, or the cluster cannot be reached.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    set_ray_environment()
    try:
        if address:
            ray.init(address=address, logging_level="WARNING", log_to_driver=True)
            return False
        ray.init(
            address="local",
            include_dashboard=False,
            logging_level="WARNING",
            log_to_driver=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local cluster"
        raise ConfigurationError(f"cannot start or reach Ray ({where}): {exc}") from exc
    return True


def is_actor_death(exc: BaseException) -> bool:
    """True for the errors Ray raises when an actor (or its node) is gone."""
    ray = import_ray()
    return isinstance(exc, ray.exceptions.RayActorError | ray.exceptions.ActorUnavailableError)


class RayTransport:
    """The channels' view of Ray (see :class:`~wallaroo.ray_backend.channels.Transport`)."""

    def __init__(self) -> None:
        self.ray = import_ray()

    def done(self, refs: Sequence[Any]) -> list[Any]:
        """The refs among ``refs`` whose calls have finished (no waiting)."""
        ready, _ = self.ray.wait(list(refs), num_returns=len(refs), timeout=0)
        return list(ready)

    def wait_oldest(self, ref: Any, timeout: float) -> bool:
        """Wait until ``ref``'s call finished; False after ``timeout`` seconds."""
        ready, _ = self.ray.wait([ref], num_returns=1, timeout=timeout)
        return bool(ready)

    def failure(self, ref: Any) -> str | None:
        """Why the finished call ``ref`` failed (the error's type and first line), or None when it
        succeeded.
        """
        try:
            self.ray.get(ref, timeout=0)
        except Exception as exc:
            return first_line(exc, typed=True)
        return None


def submitter(method: Any, me: str) -> Any:
    """A channel's ``submit``: call the actor method ``method`` with ``(me, batch)``."""

    def submit(items: Items) -> Any:
        return method.remote(me, items)

    return submit


def actor_info(name: str) -> dict[str, Any]:
    """Where the calling actor runs: ``{"name", "pid", "node"}``."""
    ray = import_ray()
    return {"name": name, "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}
