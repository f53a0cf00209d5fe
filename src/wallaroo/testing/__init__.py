"""``wallaroo.testing``: run your application in-process and check what it produces.

Only re-exports; see ``docs/testing.md``.
"""

from wallaroo.engine.clock import MockClock
from wallaroo.engine.deadletter import DeadLetter
from wallaroo.testing.harness import Harness, ListSink, RunResult, run

__all__ = ["DeadLetter", "Harness", "ListSink", "MockClock", "RunResult", "run"]
