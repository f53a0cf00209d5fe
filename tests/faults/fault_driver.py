"""A driver for fault tests with real processes: the correctness app in a worker, fed by the
``file_source`` connector, writing to the durable ``file_sink``.

:class:`Pipeline` owns one run: it writes the input files (each key's values 0, 1, 2, ... in
order, keys spread over the files, from ``examples/correctness/sequence_check.make_input``),
starts and restarts the three programs as :class:`Proc` objects (each logs to its own file,
restarts appended), kills them, waits for the end, and compares the sink's committed output with
the expected output. :func:`run_fault_schedule` is the randomised fault suite's driver.

Every wait is on a condition with a generous deadline, never a fixed sleep. On a failure
:meth:`Pipeline.report` says what is needed to debug it: the seed, the faults injected, the
first divergence of every wrong key and the tail of every process's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from diagnostics import dump_stacks, give_up
from wallaroo.connectors.file_sink import log_state, read_committed, read_txnlog, worker_paths

REPO = Path(__file__).resolve().parents[2]
APP_DIR = REPO / "examples" / "correctness"
BIN = Path(sys.executable).parent
COOKIE = "fault-tests"
WORKER = "worker"  # the worker's name: the sink's files are <path>.worker
SEED_VARIABLE = "WALLAROO_FAULT_SEED"
CRASH_POINTS = ("during-write", "after-phase1")

sys.path.insert(0, str(APP_DIR))
from sequence_check import make_input, per_key  # noqa: E402 - found through APP_DIR

__all__ = [
    "COOKIE",
    "CRASH_POINTS",
    "SEED_VARIABLE",
    "FaultRecord",
    "Pipeline",
    "Proc",
    "choose_seed",
    "first_divergence",
    "free_port",
    "run_fault_schedule",
    "wait_until",
]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``condition`` until it holds.

    Raises:
        AssertionError: it did not hold within ``timeout`` seconds (the message says ``what``).
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:g} s")
        time.sleep(interval)


def choose_seed() -> int:
    """The seed of this run: ``$WALLAROO_FAULT_SEED`` if set (to replay a run), else random."""
    value = os.environ.get(SEED_VARIABLE)
    if value:
        return int(value)
    return random.SystemRandom().randrange(2**32)


def first_divergence(key: str, got: list[int], expected: list[int]) -> str | None:
    """Where ``got`` first differs from ``expected`` (None if equal), in one line."""
    if got == expected:
        return None
    for index, (g, e) in enumerate(zip(got, expected, strict=False)):
        if g != e:
            around = got[max(0, index - 3) : index + 4]
            return f"{key}: at position {index} got {g}, expected {e} (got around it: {around})"
    if len(got) < len(expected):
        return f"{key}: ends after {len(got)} values (last {got[-1:]}), expected {len(expected)}"
    return f"{key}: {len(got) - len(expected)} values too many after {len(expected)}: {got[-3:]}"


class Proc:
    """A program that can be started, killed and restarted; its stdout and stderr go to
    ``log_path``, each start appended after a ``==== start N`` line.

    Args:
        name: for reports.
        command: the command line.
        env: the whole environment of the process.
        cwd: its working directory.
        log_path: its log file.
    """

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], cwd: Path, log_path: Path
    ) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log: IO[bytes] | None = None

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        """Start the program (again).

        Raises:
            RuntimeError: it is still running.
        """
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self._close_log()
        self.starts += 1
        self._log = self.log_path.open("ab")
        note = f" with {extra_env}" if extra_env else ""
        self._log.write(f"==== start {self.starts}{note}\n".encode())
        self._log.flush()
        self.popen = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env={**self.env, **(extra_env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def kill(self) -> None:
        """SIGKILL (nothing is cleaned up) and reap it."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(30)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM; return the exit code (SIGKILL and AssertionError after ``timeout``)."""
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never started")
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            give_up(self.popen)  # its stacks land in its log first
            raise AssertionError(
                f"{self.name} did not stop within {timeout:g} s:\n{self.tail(80)}"
            ) from None

    def wait(self, timeout: float) -> int:
        """Wait for the exit; return the exit code.

        Raises:
            AssertionError: still running after ``timeout`` seconds.
        """
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never started")
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            dump_stacks(self.popen)
            raise AssertionError(
                f"{self.name} still runs after {timeout:g} s:\n{self.tail(80)}"
            ) from None

    def log(self) -> str:
        """Everything the program logged, over all its starts."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def current_log(self) -> str:
        """What the current (last) start logged."""
        text = self.log()
        marker = f"==== start {self.starts}"
        return text[text.rfind(marker) :] if marker in text else text

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Wait until the current start logs ``text``.

        Raises:
            AssertionError: not within ``timeout`` seconds, or the program exited first.
        """

        def seen() -> bool:
            if text in self.current_log():
                return True
            if self.popen is not None and self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.popen.poll()}) before {text!r}")
            return False

        try:
            wait_until(seen, timeout, f"{self.name} logging {text!r}")
        except AssertionError as exc:
            if self.popen is not None:
                give_up(self.popen)
            raise AssertionError(f"{exc}:\n{self.tail(80)}") from None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def close(self) -> None:
        """Kill it if it runs, and close its log."""
        self.kill()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class FaultRecord:
    """One fault injected: what, when (seconds since the start, output bytes at that moment),
    and whether the source was still sending."""

    kind: str
    at_s: float
    output_bytes: int
    source_running: bool
    detail: str = ""


@dataclass
class Pipeline:
    """One run of the correctness pipeline (see the module docstring).

    Args:
        directory: where the inputs, outputs, logs and the resilience directory go.
        keys: number of keys.
        per_key: values per key.
        files: number of input files (a key's values are all in one file).
        seed: seeds the input's interleaving (and is reported).
        checkpoint_ms: the worker's time between checkpoints.
        rate: the file source's ``rate`` (records per second), None for no limit.
        framing: the file source's ``framing``.
        abort_rules: the file sink's abort rules (JSON objects), if any.
        follow: run the file source with ``follow`` (it then never exits by itself).
    """

    directory: Path
    keys: int = 100
    per_key: int = 1000
    files: int = 2
    seed: int = 0
    checkpoint_ms: int = 200
    rate: float | None = None
    framing: str = "lines"
    abort_rules: list[dict[str, Any]] | None = None
    follow: bool = False
    faults: list[FaultRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.input_paths = self._write_inputs()
        self.out_prefix = self.directory / "out"
        self.output_path, self.txnlog_path = worker_paths(str(self.out_prefix), WORKER)
        self.resilience_dir = self.directory / "resilience"
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join([str(APP_DIR), env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            ),
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
            SEQUENCE_SOURCE_PORT=str(free_port()),
            SEQUENCE_SINK_PORT=str(free_port()),
            SEQUENCE_COOKIE=COOKIE,
        )
        env.pop("WALLAROO_CRASH_POINT", None)
        app = ["--application-module", "sequence_check"]
        sink = [sys.executable, "-m", "wallaroo.connectors.file_sink", *app,
                "--connector", "checked", "--checked-path", str(self.out_prefix)]  # fmt: skip
        if self.abort_rules is not None:
            rules = self.directory / "abort_rules"
            rules.write_text("".join(json.dumps(rule) + "\n" for rule in self.abort_rules))
            sink += ["--checked-abort_rules", str(rules)]
        source = [sys.executable, "-m", "wallaroo.connectors.file_source", *app,
                  "--connector", "sequences", "--sequences-files",
                  ",".join(str(p) for p in self.input_paths),
                  "--sequences-framing", self.framing]  # fmt: skip
        if self.rate is not None:
            source += ["--sequences-rate", str(self.rate)]
        if self.follow:
            source += ["--sequences-follow", "true"]

        def proc(name: str, command: list[str]) -> Proc:
            return Proc(name, command, env, self.directory, self.directory / f"{name}.log")

        self.sink = proc("sink", sink)
        self.worker = proc("worker", self._worker_command())
        self.source = proc("source", source)

    def _worker_command(self) -> list[str]:
        return [str(BIN / "machida"), "--application-module", "sequence_check",
                "--name", WORKER, "--run-with-resilience",
                "--resilience-dir", str(self.resilience_dir),
                "--time-between-checkpoints", str(self.checkpoint_ms * 1_000_000)]  # fmt: skip

    def set_checkpoint_interval(self, milliseconds: int) -> None:
        """Use another time between checkpoints from the worker's next start on."""
        self.checkpoint_ms = milliseconds
        self.worker.command = self._worker_command()

    # -- inputs and expectations ------------------------------------------------------------
    def _write_inputs(self) -> list[Path]:
        paths = []
        for index, records in enumerate(
            make_input(self.keys, self.per_key, streams=self.files, seed=self.seed)
        ):
            path = self.directory / f"input-{index}.{self.framing}"
            if self.framing == "lines":
                data = b"".join(record + b"\n" for record in records)
            else:
                data = b"".join(len(r).to_bytes(4, "big") + r for r in records)
            path.write_bytes(data)
            paths.append(path)
        return paths

    @property
    def expected(self) -> dict[str, list[int]]:
        """Each key's values, in order, as the committed output must hold them."""
        return {f"k{k:03d}": list(range(self.per_key)) for k in range(self.keys)}

    @property
    def expected_bytes(self) -> int:
        """The size of the whole committed output."""
        return sum(len(f"{key}:{n}\n") for key, values in self.expected.items() for n in values)

    # -- the programs -----------------------------------------------------------------------
    @property
    def procs(self) -> list[Proc]:
        return [self.sink, self.worker, self.source]

    def start(self, worker_env: dict[str, str] | None = None) -> None:
        """Start the sink (and wait until it listens), the worker and the source."""
        self.sink.start()
        self.sink.wait_for_log("listening for the worker", 30)
        self.worker.start(worker_env)
        self.source.start()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def output_size(self) -> int:
        """Bytes in the sink's output file now (committed or not): a measure of progress."""
        try:
            return os.stat(self.output_path).st_size
        except FileNotFoundError:
            return 0

    def record(self, kind: str, detail: str = "") -> FaultRecord:
        """Note a fault (for the report)."""
        fault = FaultRecord(kind, self.elapsed(), self.output_size(), self.source.running, detail)
        self.faults.append(fault)
        return fault

    def finish(self, timeout: float = 150.0) -> None:
        """Wait until the source has sent everything and exited 0 and the whole output is
        committed; then stop the worker and the sink, which must exit 0.

        Raises:
            AssertionError: a deadline passed or a program exited with another code.
        """
        assert self.source.wait(timeout) == 0, "the source did not exit cleanly"
        total = self.expected_bytes
        wait_until(lambda: self.committed_size() >= total, 60, "the whole output committed")
        assert self.worker.stop() == 0, "the worker did not stop cleanly"
        assert self.sink.stop() == 0, "the sink did not stop cleanly"

    def close(self) -> None:
        for proc in self.procs:
            proc.close()

    # -- results ----------------------------------------------------------------------------
    def committed(self) -> bytes:
        """The sink's committed output (empty before anything is committed)."""
        if not os.path.exists(self.output_path):
            return b""
        return read_committed(self.output_path, self.txnlog_path)

    def committed_size(self) -> int:
        """The committed offset of the sink's transaction log (0 when unreadable)."""
        try:
            return log_state(read_txnlog(self.txnlog_path)[0])[0]
        except (OSError, ValueError):
            return 0

    def txnlog(self) -> list[dict[str, Any]]:
        """The sink's transaction log records."""
        return read_txnlog(self.txnlog_path)[0]

    def txn_id(self, checkpoint: int) -> str:
        """The id of the sink transaction of the worker's checkpoint ``checkpoint``."""
        return f"Sequence Check-w-{WORKER}-id-0:c_id={checkpoint}"

    def outcomes(self, txn_suffix: str) -> list[str]:
        """The ops logged for the transactions whose id ends with ``txn_suffix``, in order."""
        return [r["op"] for r in self.txnlog() if r["txn"].endswith(txn_suffix)]

    def deadletters(self) -> str:
        """The worker's dead letters (empty when there are none)."""
        path = self.resilience_dir / "deadletter.jsonl"
        return path.read_text() if path.exists() else ""

    def divergences(self) -> list[str]:
        """The first divergence of every key whose committed values are not the expected ones,
        and a line for keys that should not be there."""
        got = per_key(self.committed())
        expected = self.expected
        lines = [
            line
            for key in sorted(expected)
            if (line := first_divergence(key, got.get(key, []), expected[key])) is not None
        ]
        lines += [
            f"{key}: not an input key ({len(got[key])} values)"
            for key in got.keys() - set(expected)
        ]
        return lines

    def check_output(self) -> None:
        """The committed output is exactly the expected one: per key, byte for byte, in order,
        and as a whole multiset of lines; and there are no dead letters.

        Raises:
            AssertionError: naming the first divergence of each wrong key.
        """
        data = self.committed()
        wrong = self.divergences()
        assert not wrong, f"{len(wrong)} keys diverge:\n" + "\n".join(wrong[:20])
        lines = data.split(b"\n")
        assert lines.pop() == b"", "the committed output ends inside a line"
        by_key: dict[bytes, list[bytes]] = {}
        for line in lines:
            by_key.setdefault(line.partition(b":")[0], []).append(line + b"\n")
        expected_lines: Counter[bytes] = Counter()
        for key, values in self.expected.items():
            expected = [f"{key}:{n}\n".encode() for n in values]
            got = b"".join(by_key.pop(key.encode(), []))
            assert got == b"".join(expected), f"{key}: the bytes differ"
            expected_lines.update(expected)
        assert not by_key, f"lines of keys that are not in the input: {sorted(by_key)[:10]}"
        assert Counter(line + b"\n" for line in lines) == expected_lines, "the lines differ"
        assert len(data) == self.expected_bytes
        dead = self.deadletters()
        assert not dead, f"dead letters:\n{dead[:3000]}"

    def report(self, seed: int | None = None) -> str:
        """Everything needed to debug a failed run."""
        parts = [f"==== run in {self.directory}"]
        if seed is not None:
            parts.append(f"seed {seed}: replay with {SEED_VARIABLE}={seed}")
        parts.append(f"elapsed {self.elapsed():.1f} s; faults:")
        parts += [
            f"  {f.at_s:6.2f} s  {f.kind:<28} output {f.output_bytes:>8} B  "
            f"source {'running' if f.source_running else 'exited'}  {f.detail}"
            for f in self.faults
        ]
        try:
            committed = self.committed_size()
            parts.append(f"committed {committed} of {self.expected_bytes} bytes")
            wrong = self.divergences()
            parts.append(f"{len(wrong)} keys diverge" + (":" if wrong else ""))
            parts += [f"  {line}" for line in wrong[:30]]
        except (OSError, ValueError) as exc:
            parts.append(f"cannot read the committed output: {exc}")
        dead = self.deadletters()
        if dead:
            parts.append(f"dead letters ({dead.count(chr(10))}), first ones:\n{dead[:2000]}")
        for proc in self.procs:
            parts.append(
                f"==== {proc.name} (exit {proc.returncode}), last lines of {proc.log_path}"
            )
            parts.append(proc.tail())
        return "\n".join(parts)

    @contextlib.contextmanager
    def reporting(self, seed: int | None = None) -> Iterator[Pipeline]:
        """Print :meth:`report` if the block fails; kill every program at the end."""
        try:
            yield self
        except BaseException:
            print(self.report(seed))  # pytest shows it with the failure
            raise
        finally:
            self.close()


# -- the randomised fault suite ---------------------------------------------------------------


def _plan(
    rng: random.Random, worker_deaths: int, connector_kills: int
) -> tuple[list[str], list[str]]:
    """How each worker incarnation dies, and the driver's faults in order.

    Returns:
        ``(deaths, faults)``: ``deaths[i]`` is how incarnation ``i`` dies: ``"kill"`` (by the
        driver) or a crash point (by itself); ``faults`` holds one ``"worker"`` per kill and
        ``connector_kills`` each of ``"source"`` and ``"sink"``, shuffled.
    """
    deaths = ["kill"] * (worker_deaths - len(CRASH_POINTS)) + list(CRASH_POINTS)
    rng.shuffle(deaths)
    faults = ["worker"] * deaths.count("kill") + ["source", "sink"] * connector_kills
    rng.shuffle(faults)
    return deaths, faults


def _crash_point_missed(log: str, attempt: int) -> bool:
    """True if the checkpoint of ``attempt`` of the worker whose log is ``log`` aborted (its
    id is the recovered checkpoint's plus the attempt's number)."""
    recovered = re.search(r"recovering from checkpoint (\d+)", log)
    checkpoint = (int(recovered.group(1)) if recovered else 0) + attempt
    return f"checkpoint {checkpoint} aborted" in log


def run_fault_schedule(
    run: Pipeline,
    rng: random.Random,
    *,
    worker_deaths: int = 6,
    connector_kills: int = 2,
    span: float = 0.75,
    gap: float = 0.03,
    timeout: float = 180.0,
) -> None:
    """Start ``run`` and inject faults while its source is still sending.

    ``worker_deaths`` deaths of the worker: two at the crash points ``during-write`` and
    ``after-phase1`` of a random checkpoint attempt (10 to 16, 2 to 3 s into that
    incarnation's life with 200 ms between checkpoints), through ``WALLAROO_CRASH_POINT``; the
    others SIGKILLs by the driver. Plus ``connector_kills`` SIGKILLs each of the source and of
    the sink. The order is random. The driver's faults fire when the committed output reaches random
    fractions of the expected output (in ``(0.03, span)``) and has grown by ``gap`` of it
    since the previous fault, so data is always in flight; none fires while an incarnation
    that is to crash by itself runs. Every dead program is restarted at once (the worker with
    the crash point of its next death, if any). If the checkpoint attempt of a crash point
    aborts (the crash point is then never reached), that incarnation is killed and the crash
    point tried again in the next one.

    Raises:
        AssertionError: a program did not behave as planned (an unplanned exit, a crash point
            not reached, a deadline passed), or a crash happened with no data in flight.
    """
    deaths, faults = _plan(rng, worker_deaths, connector_kills)
    total = run.expected_bytes
    pending = list(
        zip(faults, sorted(rng.uniform(0.03, span) * total for _ in faults), strict=True)
    )
    incarnation = 0
    attempt = 0  # the checkpoint attempt the current incarnation is to crash at

    def worker_env() -> dict[str, str] | None:
        nonlocal attempt
        if incarnation < len(deaths) and deaths[incarnation] != "kill":
            attempt = rng.randint(10, 16)
            return {"WALLAROO_CRASH_POINT": f"{deaths[incarnation]}:{attempt}"}
        return None

    run.start(worker_env())
    last = since = 0
    deadline = time.monotonic() + timeout
    while pending or incarnation < len(deaths):
        if time.monotonic() > deadline:
            raise AssertionError(f"the fault schedule did not complete within {timeout:g} s")
        committed = run.committed_size()
        crashing = incarnation < len(deaths) and deaths[incarnation] != "kill"
        if not run.worker.running:
            if not crashing or run.worker.returncode != -signal.SIGKILL:
                raise AssertionError(f"the worker exited ({run.worker.returncode}) unplanned")
            point = deaths[incarnation]
            log = run.worker.current_log()
            assert f"killing this worker at {point} of checkpoint attempt" in log, log[-2000:]
            fault = run.record(f"worker crash {point}", f"committed +{committed - since} B")
            if committed <= since or not fault.source_running:
                raise AssertionError(f"the crash at {point} had no data in flight")
            incarnation += 1
            run.worker.start(worker_env())
            last = since = committed
            fault.detail += f", restarted at {run.elapsed():.2f} s"
            continue
        if crashing and _crash_point_missed(run.worker.current_log(), attempt):
            # That checkpoint aborted before the crash point (e.g. its sink was not ready):
            # this incarnation never reaches it. Try again with a new one.
            run.record(f"worker SIGKILL, missed {deaths[incarnation]}:{attempt}")
            run.worker.kill()
            run.worker.start(worker_env())
            continue
        if crashing or not pending or committed < max(pending[0][1], last + gap * total):
            time.sleep(0.05)
            continue
        kind, _ = pending.pop(0)
        target = {"worker": run.worker, "source": run.source, "sink": run.sink}[kind]
        if not target.running:
            raise AssertionError(f"the {kind} exited ({target.returncode}) before its fault")
        fault = run.record(f"{kind} SIGKILL")
        target.kill()
        if kind == "worker":
            incarnation += 1
            target.start(worker_env())
            since = committed
        elif kind == "sink":
            target.start()
            target.wait_for_log("listening for the worker", 30)
        else:
            target.start()
        last = committed
        fault.detail += f"restarted at {run.elapsed():.2f} s"
