"""``wallaroo top`` against a live worker, ``wallaroo send``'s progress bar, and the flags."""

import io
import re
import socket
import subprocess
import sys

import pytest
from metrics_helpers import BIN, HERE, free_port, numbers

from wallaroo.cli import send, top
from wallaroo.cli.progress import Progress
from wallaroo.worker.flags import parse_worker_flags

SENT, BAD = 1200, 3


def rows(text, header):
    """The rows of the table whose header line starts with ``header``, split into columns."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    out = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        out.append(re.split(r"\s{2,}", line.strip()))
    return out


@pytest.mark.slow
def test_top_renders_the_live_workers_numbers(worker):
    worker.send(numbers(0, SENT) + [b"oops"] * BAD)
    worker.receiver.wait_lines(SENT)
    worker.wait_stats(lambda d: d["sources"][0]["messages"] == SENT + BAD)
    out = subprocess.run(
        [str(BIN / "wallaroo"), "top", f"127.0.0.1:{worker.http_port}", "--once"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert out.startswith("wallaroo top - Parity Count - worker 'worker'")
    (pipeline,) = rows(out, "PIPELINE")
    assert pipeline[0] == "Parity"
    assert pipeline[3:6] == [f"{SENT + BAD:,}", f"{SENT:,}", str(BAD)]  # in, out, dead
    source_stage, keyed_stage = rows(out, "STAGE")
    assert source_stage[0] == "decoder decode > parse"
    assert source_stage[2:5] == [f"{SENT + BAD:,}", f"{SENT:,}", str(BAD)]
    assert keyed_stage[0] == "count (keyed)" and keyed_stage[2] == f"{SENT:,}"
    assert re.fullmatch(r"[\d.]+(ns|us|ms|s)", keyed_stage[5]) or keyed_stage[5] == "-"
    (source,) = rows(out, "SOURCE")
    assert source[:3] == ["numbers", "TCP source", f"127.0.0.1:{worker.source_port}"]
    assert source[4] == f"{SENT + BAD:,}"
    (sink,) = rows(out, "SINK")
    assert sink[1:3] == ["up", f"{SENT:,}"]
    assert f"dead letters: {BAD} (parse {BAD})" in out
    assert "state count: 2 keys" in out


def test_top_says_when_nothing_answers():
    port = free_port()
    assert top.main([str(port), "--once"]) == 1
    assert top.stats_url(str(port)) == f"http://127.0.0.1:{port}/api/stats"
    assert top.stats_url("http://h:1/") == "http://h:1/api/stats"


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_progress_bar_redraws_in_place_and_erases_itself():
    stream, clock = io.StringIO(), FakeClock()
    bar = Progress(stream, 1000, width=10, clock=clock)
    clock.now = 1.0
    bar.update(250)
    bar.update(300)  # too soon: not redrawn
    clock.now = 2.0
    bar.update(500)
    assert bar.line(500) == "[#####-----]  50%  500/1,000 msg  250 msg/s  ETA 0:02"
    bar.close()
    text = stream.getvalue()
    assert text.count("\r[") == 2 and "250/1,000 msg" in text and "300/1,000" not in text
    assert text.endswith("\r")
    unknown = Progress(io.StringIO(), None, clock=clock)
    clock.now = 4.0
    assert unknown.line(800) == "800 msg  400 msg/s  0:02"


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_send_shows_progress_on_a_terminal_and_a_final_rate(monkeypatch):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    try:
        assert send.main(["--host", f"127.0.0.1:{port}", "-m", "5000", "-s", "100"]) == 0
    finally:
        server.close()
    text = err.getvalue()
    assert "\r[" in text and "/5,000 msg" in text
    final = text.rsplit("\r", 1)[-1]
    assert re.fullmatch(
        r"wallaroo send: sent 5000 messages \(\d+ bytes\) in [\d.]+ s, [\d,]+ msg/s\n", final
    )


def test_send_prints_only_the_final_line_when_not_on_a_terminal():
    out = subprocess.run(
        [str(BIN / "wallaroo"), "send", "--host", "127.0.0.1:1", "-m", "10", "--no-write"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "\r" not in out.stderr
    assert re.fullmatch(
        r"wallaroo send: built \(not sent: --no-write\) 10 messages .* msg/s\n", out.stderr
    )


def test_send_to_a_port_nobody_listens_on_names_it_and_how_long_it_retried(capsys):
    port = free_port()
    assert send.main(["--host", f"127.0.0.1:{port}", "--connect-timeout", "0.3"]) == 2
    line = capsys.readouterr().err
    assert re.fullmatch(
        rf"wallaroo send: error: cannot connect to 127\.0\.0\.1:{port}: Connection refused "
        r"\(retried for 0\.[3-9] s; --connect-timeout sets how long\)\n",
        line,
    ), line


def test_scale_documents_its_timeout():
    out = subprocess.run(
        [str(BIN / "wallaroo"), "scale", "--help"], capture_output=True, text=True, timeout=30
    )
    text = " ".join(out.stdout.split())
    assert "--timeout TIMEOUT seconds to wait for the application's reply (default 300" in text


def test_metrics_flags_are_worker_options():
    flags = parse_worker_flags(
        ["--application-module", "m", "--metrics-http", "8080", "-m", "127.0.0.1:5001"]
    )
    assert flags.metrics_http == "127.0.0.1:8080"  # a bare port means loopback
    assert flags.metrics == "127.0.0.1:5001"
    assert flags.app_args == []


@pytest.mark.slow
def test_a_metrics_port_in_use_is_a_clear_error(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        out = subprocess.run(
            [
                str(BIN / "machida"),
                "--application-module",
                str(HERE / "metrics_app.py"),
                "--resilience-dir",
                str(tmp_path),
                "--metrics-http",
                str(port),
                "--in",
                f"numbers@127.0.0.1:{free_port()}",
                "--out",
                "127.0.0.1:1",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert out.returncode == 2
    assert f"machida: error: --metrics-http cannot listen on 127.0.0.1:{port}" in out.stderr
