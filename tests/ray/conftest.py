"""The Ray tier: the drivers' helpers on the path (the session's local Ray cluster, the
``ray_address`` fixture, is tests/conftest.py's).

A missing ``ray`` is a failure, never a skip (``decisions.md``): the test extras install
it. Never ``ray stop`` (it would stop every user's Ray on a shared
machine): the session's cluster is ended with ``ray.shutdown()``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))
