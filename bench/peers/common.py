"""What the senders and receivers share: their flags, the workloads' data and the checks."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench import proc, workloads

_PARENT = os.getppid()

#: bytes of one output record of the fixed-size workloads
RECORD = {"w1": 8, "w1-timed": 16}


def peer_args(argv: Sequence[str]) -> argparse.Namespace:
    """The peers' own flags; anything else (the application's, the connector's) is left."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workload", choices=("w1", "w2", "w1-timed"), required=True)
    parser.add_argument("--messages", type=int, required=True, help="inputs (W2: lines)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bench-host", default="127.0.0.1")
    parser.add_argument("--writer", choices=("write", "write_many"), default="write_many")
    parser.add_argument("--chunk", type=int, default=4096, help="messages per write_many")
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s (0: at once)")
    parser.add_argument(
        "--interval", type=float, default=0.001, help="seconds between paced bursts (--rate)"
    )
    parser.add_argument("--skip", type=float, default=0.05, help="warm-up share of latencies")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds without progress")
    known, _ = parser.parse_known_args(list(argv))
    return known


def inputs(args: argparse.Namespace) -> list[bytes]:
    if args.workload == "w2":
        return workloads.word_lines(args.messages)
    return workloads.celsius_inputs(args.messages)


def expected_outputs(args: argparse.Namespace) -> int:
    if args.workload == "w2":
        return workloads.WordCountCheck(inputs(args)).outputs
    return args.messages


def verify(args: argparse.Namespace, stream: bytes) -> str | None:
    """None if ``stream`` (every output, concatenated) is right, else what is wrong."""
    if args.workload == "w2":
        return workloads.WordCountCheck(inputs(args)).check(stream)
    if args.workload == "w1":
        expected = workloads.celsius_digest(inputs(args))
        if hashlib.sha256(stream).hexdigest() != expected:
            return f"the SHA-256 of {len(stream) // 8} outputs differs from the expected one"
        return None
    values = b"".join(stream[i : i + 8] for i in range(0, len(stream), 16))
    if values != b"".join(workloads.celsius_baseline(inputs(args))):
        return f"the values of {len(stream) // 16} timed outputs differ from the expected ones"
    return None


def ready() -> float:
    """Say that this peer can start; return its CPU time so far."""
    print("ready", file=sys.stderr, flush=True)
    return time.process_time()


def usage() -> dict[str, float]:
    """This process's CPU time and the whole machine's busy CPU time, now (seconds)."""
    return {"cpu": time.process_time(), "busy": proc.busy_seconds()}


def report(**fields: Any) -> None:
    """Print the result, then stay up (connections open, a sink connector still answering the
    worker's checkpoints) until the runner ends this process with SIGTERM, or goes away."""
    print(json.dumps(fields), flush=True)
    while os.getppid() == _PARENT:  # an orphan (the runner died) goes away by itself
        time.sleep(0.5)
