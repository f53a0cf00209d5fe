"""wallaroo.experimental.program: the toolkit the connector programs share."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from wallaroo import errors
from wallaroo.errors import ConnectorError, StreamDecoderError
from wallaroo.experimental import program
from wallaroo.experimental.program import (
    Backoff,
    ProgramRun,
    Stop,
    UsageError,
    as_bytes,
    first_line,
    import_client,
    port_number,
    positive_number,
    read_outputs,
    read_remaining,
    send_forever,
    wait_for_worker,
)

pytestmark = pytest.mark.timeout(30)

log = logging.getLogger("toolkit_test")


@pytest.fixture(autouse=True)
def restore_signals() -> Iterator[None]:
    """ProgramRun installs handlers, and ignores SIGINT and SIGTERM once it exits."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def deliver(signum: signal.Signals) -> None:
    """Send ``signum`` to this process; its handler runs in the main thread before this
    returns, or raises out of it."""
    os.kill(os.getpid(), signum)
    time.sleep(0.05)


# -- logging ----------------------------------------------------------------------------------


def test_configure_logging_writes_time_level_logger_and_message_to_stderr():
    code = (
        "import logging\n"
        "from wallaroo.experimental.program import configure_logging\n"
        "configure_logging()\n"
        "logging.getLogger('my_source').info('listening on %s:%d', '127.0.0.1', 7000)\n"
        "logging.getLogger('my_source').debug('not shown')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=True
    )
    assert result.stdout == ""
    line = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO my_source: listening on 127\.0\.0\.1:7000"
    assert re.fullmatch(line + "\n", result.stderr), result.stderr
    assert program.LOG_FORMAT == "%(asctime)s %(levelname)s %(name)s: %(message)s"


# -- ProgramRun: signals ----------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_raises_stop_which_ends_the_run_with_exit_code_0(caplog, sig):
    caplog.set_level(logging.INFO, "toolkit_test")
    reached = False
    with ProgramRun(log) as run:
        deliver(sig)
        reached = True
    assert not reached
    assert run.exit_code == 0
    assert [r.getMessage() for r in caplog.records] == [f"stopping ({sig.name})"]


def test_stop_is_a_base_exception_that_except_exception_does_not_swallow():
    assert issubclass(Stop, BaseException)
    assert not issubclass(Stop, Exception)
    with ProgramRun(log) as run:
        try:
            deliver(signal.SIGTERM)
        except Exception:  # what logging, for one, does
            pytest.fail("Stop was caught as an Exception")
    assert run.exit_code == 0


def test_a_keyboard_interrupt_is_a_stop_by_sigint(caplog):
    caplog.set_level(logging.INFO, "toolkit_test")
    with ProgramRun(log) as run:
        raise KeyboardInterrupt
    assert run.exit_code == 0
    assert [r.getMessage() for r in caplog.records] == ["stopping (SIGINT)"]


def test_with_an_event_a_signal_sets_it_logs_once_and_the_program_finishes(caplog):
    caplog.set_level(logging.INFO, "toolkit_test")
    stop = threading.Event()
    with ProgramRun(log, stop=stop) as run:
        assert run.stop is stop
        deliver(signal.SIGTERM)
        assert stop.is_set()
        deliver(signal.SIGINT)
        finished = True
    assert finished
    assert run.exit_code == 0
    assert [r.getMessage() for r in caplog.records] == ["stopping (SIGTERM)"]


def test_on_exit_signals_are_ignored_and_the_cleanups_run_last_registered_first():
    calls: list[tuple[str, Any]] = []
    with ProgramRun(log) as run:
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)
        run.callback(lambda: calls.append(("first", signal.getsignal(signal.SIGTERM))))
        run.callback(lambda: calls.append(("second", signal.getsignal(signal.SIGINT))))
    assert calls == [("second", signal.SIG_IGN), ("first", signal.SIG_IGN)]
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


# -- ProgramRun: errors and exit codes --------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("--x-port must be a number"), 2),
        (ConnectorError("the worker refused the connector"), 1),
        (OSError("address already in use"), 1),
        (StreamDecoderError("a WallarooError that is no failure"), 2),
    ],
    ids=["usage", "connector", "socket", "wallaroo"],
)
def test_an_expected_error_is_one_error_line_and_an_exit_code(caplog, error, code):
    cleaned: list[int] = []
    with ProgramRun(log) as run:
        run.callback(lambda: cleaned.append(run.exit_code))
        raise error
    assert run.exit_code == code
    assert cleaned == [code]  # logged and classified before the cleanups
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records] == [
        ("ERROR", str(error), None)
    ]


def test_errors_and_failures_say_which_errors_are_expected_and_which_mean_1(caplog):
    with ProgramRun(log, errors=(ValueError,)) as run:
        raise ValueError("bad rate")
    assert run.exit_code == 2
    with ProgramRun(log, errors=(LookupError,), failures=(LookupError,)) as run:
        raise KeyError("gone")
    assert run.exit_code == 1
    with ProgramRun(log, failures=(ConnectorError,)) as run:
        raise OSError("the rules file")
    assert run.exit_code == 2
    assert [r.getMessage() for r in caplog.records] == ["bad rate", "'gone'", "the rules file"]


def test_an_unexpected_error_propagates_after_the_cleanups(caplog):
    cleaned = []

    def main() -> int:
        with ProgramRun(log) as run:
            run.callback(cleaned.append, "done")
            raise ValueError("a bug")
        return run.exit_code

    with pytest.raises(ValueError, match="a bug"):
        main()
    assert cleaned == ["done"]
    assert caplog.records == []


def test_a_return_inside_the_run_keeps_its_value_and_cleans_up():
    cleaned = []

    def main() -> int:
        with ProgramRun(log) as run:
            run.callback(cleaned.append, "done")
            return 7
        return run.exit_code

    assert main() == 7
    assert cleaned == ["done"]


# -- import_client ----------------------------------------------------------------------------


def test_import_client_returns_the_module():
    assert import_client("json", "none") is sys.modules["json"]


def test_a_missing_client_library_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(UsageError) as caught:
        import_client("redis", "redis")
    assert str(caught.value) == (
        "the client library redis is missing (import of redis halted; None in sys.modules); "
        "install it with: pip install 'wallaroo-py[redis]'"
    )
    with pytest.raises(UsageError) as caught:
        import_client("redis", "redis", "my_sink needs {module}: {install}")
    assert str(caught.value) == "my_sink needs redis: pip install 'wallaroo-py[redis]'"


# -- Backoff ----------------------------------------------------------------------------------


def test_backoff_doubles_the_delay_and_logs_the_first_failure_and_the_recovery(caplog):
    caplog.set_level(logging.INFO, "toolkit_test")
    backoff = Backoff(log, "putting records", first_delay=0.5, max_delay=3.0)
    backoff.succeeded()  # nothing to recover from: no line
    assert backoff.since is None
    delays = [backoff.failed(f"error {n}") for n in range(5)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.since is not None
    backoff.succeeded()
    assert backoff.since is None
    assert backoff.failed("again") == 0.5
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages[0] == ("WARNING", "putting records failed (error 0); retrying with back-off")
    assert messages[1][0] == "INFO"
    assert re.fullmatch(r"putting records works again after \d+\.\d s", messages[1][1])
    assert messages[2] == ("WARNING", "putting records failed (again); retrying with back-off")
    assert len(messages) == 3


def test_backoff_defaults_to_a_tenth_of_a_second_up_to_five():
    backoff = Backoff(log, "x")
    assert [backoff.failed("e") for _ in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


# -- values -----------------------------------------------------------------------------------


def test_port_number():
    assert port_number("--x-port", "6379") == 6379
    assert port_number("--x-port", "0", allow_zero=True) == 0
    assert port_number("--x-port", "65535") == 65535
    for bad in ("0", "65536", "-1", "abc", ""):
        with pytest.raises(UsageError, match="^--x-port must be a number from 1 to 65535, got"):
            port_number("--x-port", bad)
    with pytest.raises(UsageError, match=r"from 0 to 65535, got 'abc'$"):
        port_number("--x-port", "abc", allow_zero=True)


def test_positive_number():
    assert positive_number("--x-rate", "2.5") == 2.5
    for bad in ("0", "-1", "inf", "nan", "abc", ""):
        with pytest.raises(UsageError, match="^--x-rate must be a positive number, got"):
            positive_number("--x-rate", bad)
    with pytest.raises(UsageError, match=r"must be a positive number of seconds, got '0'$"):
        positive_number("--x-poll", "0", "a positive number of seconds")


def test_wait_for_worker_returns_once_the_port_accepts(caplog: pytest.LogCaptureFixture):
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there: the first probes fail
    listening: list[socket.socket] = []
    timer = threading.Timer(
        0.3, lambda: listening.append(socket.create_server(("127.0.0.1", port)))
    )
    timer.start()
    try:
        with caplog.at_level(logging.INFO, logger=log.name):
            wait_for_worker("127.0.0.1", port, log)
    finally:
        timer.join()
        for server in listening:
            server.close()
    waiting = [r for r in caplog.records if r.message.startswith("waiting for the worker at")]
    assert len(waiting) == 1 and listening  # one line however many probes failed


def test_as_bytes():
    assert as_bytes(b"\x00\xff") == b"\x00\xff"
    assert as_bytes(bytearray(b"ab")) == b"ab"
    assert as_bytes(memoryview(b"cd")) == b"cd"
    assert as_bytes("é") == "é".encode()
    assert as_bytes(32.0) == b"32.0"
    assert as_bytes(None) == b"None"


def test_first_line():
    assert first_line(ValueError("  one\ntwo\n")) == "one"
    assert first_line(TimeoutError()) == "TimeoutError"
    assert first_line(ValueError("  one\ntwo\n"), typed=True) == "ValueError: one"
    assert first_line(TimeoutError(), typed=True) == "TimeoutError"
    assert first_line is errors.first_line


# -- a sink's reads, a source's loop ----------------------------------------------------------


class FakeSink:
    """Answers read_many with the next of ``answers`` (an exception is raised)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[int, float | None]] = []
        self.closed = False

    def read_many(self, max_count: int, timeout: float | None = None) -> list[Any]:
        self.calls.append((max_count, timeout))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return list(answer)

    def close(self) -> None:
        self.closed = True


def test_read_outputs_returns_nothing_on_a_timeout_and_leaves_decoder_errors_to_the_connector(
    caplog,
):
    sink: Any = FakeSink([1, 2], TimeoutError(), StreamDecoderError("bad payload"), [3])
    assert read_outputs(sink, log, 10, timeout=0.2) == [1, 2]
    assert read_outputs(sink, log, 10, timeout=0.2) == []
    with pytest.raises(StreamDecoderError):  # on_decode_error="raise": the program asked
        read_outputs(sink, log, 10)
    assert read_outputs(sink, log, 10) == [3]
    assert sink.calls == [(10, 0.2), (10, 0.2), (10, None), (10, None)]
    assert caplog.records == []


def test_read_outputs_raises_when_the_connector_is_closed_and_read():
    sink: Any = FakeSink(ConnectorError("closed"))
    with pytest.raises(ConnectorError, match="closed"):
        read_outputs(sink, log, 10)


def test_read_remaining_closes_the_connector_and_yields_until_everything_is_read():
    sink: Any = FakeSink([1], TimeoutError(), [2, 3], ConnectorError("closed"))
    assert list(read_remaining(sink, log, 5)) == [[1], [], [2, 3]]
    assert sink.closed
    assert sink.calls == [(5, 0.0)] * 4


class FakeSource:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def write(self, payload: Any) -> None:
        self.calls.append(("write", payload))

    def write_many(self, payloads: list[Any]) -> None:
        self.calls.append(("write_many", payloads))

    def poll(self) -> None:
        self.calls.append(("poll", None))


def test_send_forever_sends_each_batch_at_once_and_polls_when_idle():
    """A batch of one goes through write_many too: write() would hold it for ``linger``."""
    batches: list[Any] = [[b"a"], [b"b", b"c"], [], ["d"], KeyboardInterrupt()]

    def receive() -> list[Any]:
        batch = batches.pop(0)
        if isinstance(batch, BaseException):
            raise batch
        return batch

    source: Any = FakeSource()
    with pytest.raises(KeyboardInterrupt):
        send_forever(source, receive)
    assert source.calls == [
        ("write_many", [b"a"]),
        ("write_many", [b"b", b"c"]),
        ("poll", None),
        ("write_many", ["d"]),
    ]
