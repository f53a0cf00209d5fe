"""machida and the wallaroo command, as real processes."""

import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from procs import BIN, ROOT, env_with, free_port, wait_port

from diagnostics import error_lines, give_up
from wallaroo.errors import ConfigurationError
from wallaroo.worker.flags import parse_worker_flags

MACHIDA = str(BIN / "machida")
WALLAROO = str(BIN / "wallaroo")
WORD_COUNT = ROOT / "examples" / "word_count"


def run_cli(*args, **kw):
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=60, env=env_with(WORD_COUNT), **kw
    )


def test_worker_flags_are_separated_from_application_arguments():
    flags = parse_worker_flags(
        [
            "--application-module",
            "wc",
            "--in",
            "a@127.0.0.1:1",
            "--ponythreads",
            "1",
            "--ponynoblock",
            "-n",
            "w2",
            "--out=127.0.0.1:2",
            "--metrics=127.0.0.1:5001",
            "--custom",
            "x",
            "--control",
            "127.0.0.1:6000",
            "-t",
            "--ponypin",
        ]
    )
    assert flags.application_module == "wc"
    assert flags.name == "w2"
    assert flags.cluster_initializer
    assert flags.app_args == ["--in", "a@127.0.0.1:1", "--out=127.0.0.1:2", "--custom", "x"]
    assert flags.pony_flags == ["--ponythreads", "1", "--ponynoblock", "--ponypin"]
    assert flags.cluster_flags_given() == ["--control"]


def test_worker_name_defaults():
    assert parse_worker_flags(["--application-module", "m"]).worker_name == "worker"
    assert parse_worker_flags(["--application-module", "m", "-t"]).worker_name == "initializer"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--worker-count", "abc"], "--worker-count expects a positive integer, got 'abc'"),
        (["--workers", "2"], "--worker-count 2 needs --backend ray"),
        (["--metrics", "nohost"], "--metrics expects host:port"),
        (["--time-between-checkpoints", "0"], "--time-between-checkpoints expects a positive"),
        (["--backend", "spark"], "--backend expects 'embedded' or 'ray'"),
        (["--name"], "--name needs a value"),
        (["--run-with-resilience=yes"], "--run-with-resilience takes no value"),
    ],
)
def test_a_bad_worker_flag_exits_2_with_one_line(args, words):
    out = run_cli(MACHIDA, "--application-module", "word_count", *args)
    assert out.returncode == 2
    (line,) = error_lines(out.stderr)
    assert line.startswith("machida: error: ")
    assert words in line


def test_missing_module_flag_and_unimportable_module():
    out = run_cli(MACHIDA)
    assert out.returncode == 2
    assert "--application-module is required" in out.stderr
    out = run_cli(MACHIDA, "--application-module", "no_such_app_module")
    assert out.returncode == 2
    (line,) = error_lines(out.stderr)
    assert "cannot import application module 'no_such_app_module'" in line


def test_an_application_error_exits_2_with_one_line():
    out = run_cli(MACHIDA, "--application-module", "word_count")  # it needs --in and --out
    assert out.returncode == 2
    (line,) = error_lines(out.stderr)
    assert "this application needs --in" in line


def test_help_and_version():
    out = run_cli(MACHIDA, "--help")
    assert out.returncode == 0
    assert "--application-module MODULE" in out.stdout
    assert "--ponythreads" in out.stdout
    out = run_cli(WALLAROO, "--help")
    assert out.returncode == 0
    assert "connector NAME" in out.stdout
    assert run_cli(str(BIN / "machida3"), "--version").stdout.startswith("machida3 (wallaroo-py)")


def test_a_port_in_use_exits_2(procs):
    port = free_port()
    blocker = procs.start(WALLAROO, "receive", "--listen", f"127.0.0.1:{port}", env=env_with())
    wait_port(port)
    out = run_cli(
        MACHIDA,
        "--application-module",
        "word_count",
        "--in",
        f"Split and Count@127.0.0.1:{port}",
        "--out",
        "127.0.0.1:1",
    )
    assert out.returncode == 2
    assert "cannot listen on 127.0.0.1:" in out.stderr
    assert blocker.poll() is None


def counts_from(text):
    final = {}
    for word, n in re.findall(r"^(\S+) => (\d+)$", text, re.M):
        assert int(n) == final.get(word, 0) + 1
        final[word] = int(n)
    return Counter(final)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("program", "module", "in_arg"),
    [
        ("machida", "word_count", "Split and Count@127.0.0.1:{port}"),
        ("machida3", "word_count_builder", "127.0.0.1:{port}"),
    ],
)
def test_word_count_through_send_and_receive_gives_exact_counts(
    procs, tmp_path, program, module, in_arg
):
    in_port, out_port = free_port(), free_port()
    words = [f"w{i % 97}" for i in range(20000)]
    text = tmp_path / "lines.txt"
    text.write_text("\n".join(" ".join(words[i : i + 10]) for i in range(0, len(words), 10)))
    out_file = tmp_path / "out.txt"
    env = env_with(WORD_COUNT)
    receiver = procs.start(
        WALLAROO, "receive", "--listen", f"127.0.0.1:{out_port}", "--output", str(out_file), env=env
    )
    wait_port(out_port)
    worker = procs.start(
        str(BIN / program),
        "--application-module",
        module,
        "--in",
        in_arg.format(port=in_port),
        "--out",
        f"127.0.0.1:{out_port}",
        "--ponythreads=1",
        "--ponynoblock",
        "--resilience-dir",
        str(tmp_path),
        cwd=tmp_path,
        env=env,
    )
    sent = subprocess.run(
        [WALLAROO, "send", "--host", f"127.0.0.1:{in_port}", "--file", str(text)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert sent.returncode == 0, sent.stderr
    assert "sent 2000 messages" in sent.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if out_file.exists() and out_file.read_text().count("\n") >= len(words):
            break
        time.sleep(0.1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    receiver.send_signal(signal.SIGINT)
    assert receiver.wait(10) == 0
    assert counts_from(out_file.read_text()) == Counter(words)
    log = worker.stderr.read().decode()
    assert "TCP source 'Split and Count' listening on 127.0.0.1:" in log
    assert "stopped" in log


def test_python_dash_m_wallaroo():
    out = subprocess.run(
        [sys.executable, "-m", "wallaroo", "--version"], capture_output=True, text=True, timeout=30
    )
    assert out.stdout.startswith("wallaroo (wallaroo-py)")


def test_parse_errors_raise_configuration_error():
    with pytest.raises(ConfigurationError, match="--join cannot be combined"):
        parse_worker_flags(["--application-module", "m", "-t", "--join", "127.0.0.1:1"])


def test_the_first_line_names_version_pid_and_command_and_sigusr1_dumps_the_stacks(tmp_path):
    port = free_port()
    log = tmp_path / "worker.log"
    with log.open("w") as err:
        worker = subprocess.Popen(
            [MACHIDA, "--application-module", "word_count",
             "--in", f"Split and Count@127.0.0.1:{port}", "--out", "127.0.0.1:9"],
            stderr=err, env=env_with(WORD_COUNT),
        )  # fmt: skip
        try:
            wait_port(port)
            first = log.read_text().splitlines()[0]
            assert re.search(rf"wallaroo-py \S+ worker starting: pid {worker.pid}, ", first)
            assert (
                f"machida --application-module word_count --in 'Split and Count@127.0.0.1:{port}'"
                in first
            )
            worker.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while "most recent call first" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert worker.poll() is None  # the dump does not stop it
            assert 'File "' in log.read_text() and "thread 0x" in log.read_text().lower()
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(20) == 0
        finally:
            give_up(worker)  # a no-op once it exited


def test_a_sigterm_while_the_application_is_imported_exits_0(tmp_path):
    (tmp_path / "slow_app.py").write_text(
        "import sys, time\n"
        "print('importing', flush=True, file=sys.stderr)\n"
        "time.sleep(30)\n"
        "def application_setup(args):\n"
        "    raise AssertionError('never reached')\n"
    )
    worker = subprocess.Popen(
        [MACHIDA, "--application-module", "slow_app"],
        stderr=subprocess.PIPE, text=True, env=env_with(tmp_path),
    )  # fmt: skip
    try:
        assert worker.stderr is not None
        lines = [worker.stderr.readline(), worker.stderr.readline()]
        assert " worker starting: pid " in lines[0] and lines[1] == "importing\n"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 0
    finally:
        give_up(worker)
        if worker.stderr is not None:
            worker.stderr.close()
