"""MultiSourceConnector across a worker crash between a file's end of stream and the checkpoint
covering it: the file's tail is sent again, nothing is lost."""

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from recovery_helpers import BIN, free_port

from wallaroo.connectors.file_sink import read_committed
from wallaroo.experimental.connectors import FramedFileReader, MultiSourceConnector

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "correctness"))
sys.path.insert(0, str(ROOT))  # bench.proc
import sequence_check  # noqa: E402
from bench.proc import terminate  # noqa: E402


@pytest.mark.slow
def test_an_unacknowledged_end_of_stream_is_replayed_after_a_worker_crash(tmp_path):
    (records,) = sequence_check.make_input(keys=10, per_key=100, streams=1, seed=0)
    data = tmp_path / "in.u32"
    data.write_bytes(b"".join(struct.pack(">I", len(r)) + r for r in records))
    source_port, sink_port = free_port(), free_port()
    env = {
        **os.environ,
        "SEQUENCE_SOURCE_PORT": str(source_port),
        "SEQUENCE_SINK_PORT": str(sink_port),
        "SEQUENCE_COOKIE": "c",
        "PYTHONPATH": str(ROOT / "examples" / "correctness"),
    }
    logs = [(tmp_path / f"{n}.log").open("w") for n in ("sink", "w1", "w2")]
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wallaroo.connectors.file_sink",
            "--application-module",
            "sequence_check",
            "--connector",
            "checked",
            "--checked-path",
            str(tmp_path / "out"),
        ],
        env=env,
        stderr=logs[0],
    )
    worker_cmd = [
        str(BIN / "machida"),
        "--application-module",
        "sequence_check",
        "--run-with-resilience",
        "--resilience-dir",
        str(tmp_path / "res"),
        "--time-between-checkpoints",
        "3000000000",
    ]  # no checkpoint before the crash
    worker = subprocess.Popen(worker_cmd, env=env, stderr=logs[1])
    connector = MultiSourceConnector("0.0.1", "c", "feed", "i", "127.0.0.1", source_port)
    try:
        connector.connect(retry=True, timeout=20)
        connector.add_source(FramedFileReader(str(data)))
        time.sleep(1.0)  # every record and the end of stream sent, nothing checkpointed
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = subprocess.Popen(worker_cmd, env=env, stderr=logs[2])
        assert connector.join(30) is None
        committed = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(committed.splitlines()) < len(records):
            time.sleep(0.2)
            if (tmp_path / "out.worker").exists():
                committed = read_committed(
                    str(tmp_path / "out.worker"), str(tmp_path / "out.txnlog.worker")
                )
    finally:
        connector.shutdown()
        for proc in (worker, sink):
            terminate(proc, timeout=20)
        for f in logs:
            f.close()
    assert sequence_check.per_key(committed) == {f"k{k:03d}": list(range(100)) for k in range(10)}
