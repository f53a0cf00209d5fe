"""A worker-side driver of a transactional sink connection, for the two-phase-commit tests.

:class:`SinkDriver` plays one worker's connector sink over a real socket with the worker's own
sans-IO session (:class:`~wallaroo.protocol.sink_session.WorkerSinkSession`): the intro on every
(re)connection, output with byte-offset message ids, PHASE1 at a checkpoint and PHASE2 after it,
and the worker's resolution of an uncommitted transaction reported after a reconnection (commit
if it is the transaction of the last completed checkpoint, else abort). It also keeps the
worker's record of what it committed, so a test compares a sink's committed output with
:meth:`SinkDriver.committed_output`.

:class:`SinkProgram` runs a sink connector program (``wallaroo.connectors.file_sink``) as a
process on a fixed port, so it can be SIGKILLed and restarted where the driver finds it again;
:class:`FileSinkRun` is a ``file_sink`` for connector ``out`` of :data:`APP`, with helpers that
read its committed output and its transaction log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wallaroo.connectors.file_sink import read_committed, read_txnlog
from wallaroo.protocol.events import (
    SinkError,
    SinkReady,
    StreamAccepted,
    UncommittedReported,
    VoteReceived,
)
from wallaroo.protocol.sink_session import WorkerSinkSession

APP = """
    import os

    import wallaroo
    import wallaroo.experimental as wx


    @wx.octet_message_encoder
    def encode(data):
        return data


    @wx.octet_message_decoder
    def decode(data):
        if data.startswith(b"\\xff"):  # what the dead-letter tests send
            raise ValueError("not an output of this application")
        return data


    def application_setup(args):
        feed = wx.SourceConnectorConfig("feed", encoder=encode, decoder=decode, port=7100)
        out = wx.SinkConnectorConfig(
            "out", encoder=encode, decoder=decode, port=int(os.environ.get("OUT_PORT", "7200")),
            cookie=os.environ.get("OUT_COOKIE", ""))
        return wallaroo.build_application("twopc", wallaroo.source("p", feed).to_sink(out))
"""
"""An application with one connector sink ``out`` at ``$OUT_PORT`` with cookie ``$OUT_COOKIE``
(raw bytes both ways): write it as ``twopc_app.py`` with :func:`write_app`."""

COOKIE = "Dragons-Love-Tacos"
MODULE = [sys.executable, "-m", "wallaroo.connectors.file_sink"]


def write_app(directory: Path) -> str:
    """Write :data:`APP` into ``directory``; return the module name."""
    (directory / "twopc_app.py").write_text(textwrap.dedent(APP))
    return "twopc_app"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Never:
    """An event type that never arrives."""


class SinkDriver:
    """One worker's sink connection, driven step by step (see the module docstring).

    Attributes:
        session: the worker's session (offsets, transaction in progress).
        produced: the output at offsets ``[0, session.offset)`` as the worker produced it.
        last_checkpoint: ``(txn id, end offset)`` of the last completed checkpoint.
        reported: what the sink answered to the last LIST_UNCOMMITTED.
    """

    def __init__(
        self, port: int, *, worker: str = "w1", app: str = "twopc", cookie: str = COOKIE
    ) -> None:
        self.port = port
        self.session = WorkerSinkSession(app_name=app, worker_name=worker, sink_id=0, cookie=cookie)
        self.sock: socket.socket | None = None
        self.produced = bytearray()
        self.last_checkpoint: tuple[str, int] | None = None
        self.checkpoint_id = 0
        self.reported: tuple[str, ...] = ()
        self.errors: list[str] = []
        self._events: list[Any] = []
        self._rtag = 0

    # -- connection ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def connect(self, timeout: float = 20.0, *, resolve: bool = True) -> tuple[str, ...]:
        """Connect (retrying until ``timeout``), run the intro and, with ``resolve``, settle the
        reported transactions as the worker would. Returns the reported transaction ids."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.sock = sock
        self._events = []
        self._rtag += 1
        sock.sendall(self.session.intro(self._rtag))
        for kind in (SinkReady, StreamAccepted):
            if self.expect(kind, deadline - time.monotonic()) is None:
                raise ConnectionError(f"the sink closed the connection before {kind.__name__}")
        reply = self.expect(UncommittedReported, deadline - time.monotonic())
        if reply is None:
            raise ConnectionError("the sink closed the connection before REPLY_UNCOMMITTED")
        self.reported = tuple(reply.txn_ids)
        if resolve:
            self.resolve(self.reported)
        return self.reported

    def resolve(self, txn_ids: tuple[str, ...]) -> None:
        """PHASE2 for reported transactions: commit iff it is the last completed checkpoint's."""
        last = self.last_checkpoint[0] if self.last_checkpoint else None
        for txn_id in txn_ids:
            self._send(self.session.phase2(txn_id, txn_id == last))

    def wait_closed(self, timeout: float = 10.0) -> bool:
        """Read (and keep) events until the sink closes the connection; False on timeout."""
        try:
            self.expect(_Never, timeout)
        except TimeoutError:
            return False
        return True

    def drop(self) -> None:
        """Lose the connection (the worker keeps its state)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.session.connection_lost()

    def crash(self) -> None:
        """The worker dies and restarts from its last completed checkpoint."""
        self.drop()
        end = self.last_checkpoint[1] if self.last_checkpoint else 0
        self.session.restore(end)
        del self.produced[end:]

    # -- output and checkpoints ---------------------------------------------------------------

    def send(self, *payloads: bytes) -> None:
        """Produce output and send it."""
        self.produced += b"".join(payloads)
        self._send(self.session.payloads(payloads))

    def lose(self, *payloads: bytes) -> None:
        """Produce output that never reaches the sink (sent while the connection was down)."""
        self.produced += b"".join(payloads)
        self.session.payloads(payloads)

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (hand-made frames)."""
        self._send(data)

    def phase1(
        self, timeout: float = 10.0, after_send: Callable[[], None] | None = None
    ) -> tuple[str, bool | None]:
        """Send PHASE1 for the next checkpoint, call ``after_send`` (e.g. to kill the sink),
        return its txn id and the vote (None: the connection closed before a vote arrived)."""
        self.checkpoint_id += 1
        txn_id = self.session.txn_id(self.checkpoint_id)
        self._send(self.session.phase1(self.checkpoint_id))
        if after_send is not None:
            after_send()
        vote = self.expect(VoteReceived, timeout)
        if vote is not None and vote.txn_id != txn_id:
            raise AssertionError(f"vote for {vote.txn_id}, expected {txn_id}")
        return txn_id, None if vote is None else vote.commit

    def phase2(self, txn_id: str, commit: bool) -> None:
        """Send PHASE2 (the session applies it even when the connection is down)."""
        self._send(self.session.phase2(txn_id, commit))
        if not commit:
            del self.produced[self.session.offset :]

    def checkpoint(self, after_send: Callable[[], None] | None = None) -> bool | None:
        """A whole checkpoint as the worker runs it: PHASE1; a commit vote completes the
        checkpoint (recorded) and PHASE2 commit follows; no vote or an abort vote aborts it
        (PHASE2 abort, output back to the last commit). Returns the vote."""
        txn_id, vote = self.phase1(after_send=after_send)
        if vote:
            self.last_checkpoint = (txn_id, self.session.offset)
        self.phase2(txn_id, bool(vote))
        return vote

    def committed_output(self) -> bytes:
        """What the worker committed: its output up to the last completed checkpoint."""
        end = self.last_checkpoint[1] if self.last_checkpoint else 0
        return bytes(self.produced[:end])

    def close(self) -> None:
        self.drop()

    # -- plumbing -----------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if self.sock is None or not data:
            return
        try:
            self.sock.sendall(data)
        except OSError:
            self.drop()

    def expect(self, kind: type, timeout: float) -> Any:
        """The next event of ``kind``; None once the connection is closed (or on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self._events):
                if isinstance(event, kind):
                    return self._events.pop(index)
            if self.sock is None:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind.__name__} within {timeout} s")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                self.drop()
                return None
            events = self.session.receive(data)
            self.errors += [e.message for e in events if isinstance(e, SinkError)]
            self._events += events


class SinkProgram:
    """A sink connector program run as a process on a fixed port (restartable): ``command``
    (e.g. ``[sys.executable, "-m", "wallaroo.connectors.file_sink", ...]``) in ``cwd``, where
    the application module is, with ``env`` added to the environment."""

    def __init__(self, cwd: Path, command: list[str], env: dict[str, str]) -> None:
        self.cwd = cwd
        self.args = command
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, **env, "PYTHONPATH": str(cwd), "PYTHONUNBUFFERED": "1"}
        self.env["PATH"] = path
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._cond = threading.Condition()

    def start(self, timeout: float = 20.0) -> SinkProgram:
        """Start the program and wait for its first log line (it is then listening)."""
        seen = len(self.lines)
        self.start_process()
        self.wait_for("listening for the worker", timeout, seen)
        return self

    def start_process(self) -> None:
        """Start the program without waiting for anything."""
        self.proc = subprocess.Popen(
            self.args, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )  # fmt: skip
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def wait_for(self, text: str, timeout: float = 20.0, start: int = 0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if text in line:
                        return line
                if self.proc is not None and self.proc.poll() is not None:
                    time.sleep(0.1)  # let the reader thread collect the last lines
                    if not any(text in line for line in self.lines[start:]):
                        raise AssertionError(f"exited before {text!r}:\n{self.output}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"no {text!r} in {timeout} s:\n{self.output}")
                self._cond.wait(0.1)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        """SIGKILL: no cleanup at all."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and return the exit code."""
        if self.proc is None:
            raise RuntimeError("not started")
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.kill()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        if proc.stdout is None:
            return
        for line in proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        proc.stdout.close()


class FileSinkRun:
    """A ``file_sink`` program for connector ``out`` of :data:`APP` (written in ``directory``
    first, e.g. by :func:`write_app`), writing to ``<directory>/out``; its process is appended
    to ``programs`` (kill them at the end). ``rules`` become its abort-rules file; ``command``
    replaces ``python -m wallaroo.connectors.file_sink``; ``extra`` arguments are added."""

    def __init__(
        self, directory: Path, programs: list[SinkProgram], *, rules: list[dict] | None = None,
        command: list[str] | None = None, extra: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.dir = directory
        self.port = free_port()
        self.path = directory / "out"
        args = ["--application-module", "twopc_app", "--connector", "out",
                "--out-path", str(self.path)]  # fmt: skip
        if rules is not None:
            rules_file = directory / "rules"
            rules_file.write_text("# test rules\n" + "".join(json.dumps(r) + "\n" for r in rules))
            args += ["--out-abort_rules", str(rules_file)]
        args += extra
        env = {"OUT_PORT": str(self.port), "OUT_COOKIE": COOKIE}
        self.program = SinkProgram(directory, [*(command or MODULE), *args], env)
        programs.append(self.program)
        self.program.start()

    def restart(self) -> None:
        self.program.start()

    def committed(self, worker: str = "w1") -> bytes:
        return read_committed(f"{self.path}.{worker}", f"{self.path}.txnlog.{worker}")

    def ops(self, worker: str = "w1") -> list[str]:
        return [r["op"] for r in read_txnlog(f"{self.path}.txnlog.{worker}")[0]]

    def file(self, worker: str = "w1") -> bytes:
        return Path(f"{self.path}.{worker}").read_bytes()
