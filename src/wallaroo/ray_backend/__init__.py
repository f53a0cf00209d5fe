"""Scale-out on Ray: the same application on many processes and machines.

Ray (``pip install 'wallaroo-py[ray]'``) is used as transport, placement and supervision only;
the streaming semantics are the engine's own: the same segment runners, state stores by key
group, window runners and checkpoint format as the embedded worker, wired through actors.
Nothing here imports Ray until the backend runs (``import wallaroo`` never does).

* :mod:`.runner`: ``machida --backend ray`` (the driver);
* :mod:`.coordinator`: checkpoints, supervision, rollback, rescaling;
* :mod:`.deploy`: placing and removing the actors;
* :mod:`.source_actor`, :mod:`.worker_actor` (:mod:`.worker_core`), :mod:`.sink_actor`;
* :mod:`.channels`, :mod:`.aligner`, :mod:`.slots`, :mod:`.topology`: transport-neutral parts;
* :mod:`.control`: the control port and ``wallaroo scale``.

See ``docs/scale-out.md``.
"""

from __future__ import annotations

import importlib.util

__all__ = ["ray_available"]


def ray_available() -> bool:
    """True when the ``ray`` package can be imported (without importing it)."""
    return importlib.util.find_spec("ray") is not None
