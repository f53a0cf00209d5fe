"""``wallaroo.testing``: run your application in-process and check what it produces.

Only re-exports; see ``docs/testing.md``.
"""

from wallaroo.engine.clock import MockClock
from wallaroo.engine.deadletter import DeadLetter
from wallaroo.testing.conformance import (
    ConformanceError,
    ConformanceReport,
    check_sink_connector,
    check_source_connector,
    python_module_command,
)
from wallaroo.testing.harness import Harness, ListSink, RunResult, default_backend, run

__all__ = [
    "ConformanceError",
    "ConformanceReport",
    "DeadLetter",
    "Harness",
    "ListSink",
    "MockClock",
    "RunResult",
    "check_sink_connector",
    "check_source_connector",
    "default_backend",
    "python_module_command",
    "run",
]
