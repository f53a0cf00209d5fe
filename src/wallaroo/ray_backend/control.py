"""The control port of a running Ray application, and ``wallaroo scale``.

The driver listens on ``--external HOST:PORT`` (the original's external channel, which its
``cluster_shrinker`` used), or on a free port of 127.0.0.1, and writes the address to
``<resilience dir>/ray-control.json``. The protocol is one JSON object per line each way:

    {"op": "scale", "workers": 3}   ->  {"ok": true, "workers": 3, "checkpoint": 12}
    {"op": "status"}                ->  {"ok": true, "workers": 3, "restarts": 0, ...}
    {"op": "statistics"}            ->  {"ok": true, "actors": {"worker actor w0": {...}}}

Requests are served one at a time by the coordinator's loop, between checkpoints.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import socketserver
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from wallaroo.engine.directories import RESILIENCE_DIR

__all__ = ["CONTROL_FILE", "ControlServer", "request", "scale_main"]

CONTROL_FILE = "ray-control.json"
REPLY_TIMEOUT = 300.0
log = logging.getLogger("wallaroo.ray")


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        for line in self.rfile:
            try:
                body = json.loads(line)
                if not isinstance(body, dict):
                    raise ValueError("a request is a JSON object")
            except ValueError as exc:
                reply: dict[str, Any] = {"ok": False, "error": f"bad request: {exc}"}
            else:
                future: Future[dict[str, Any]] = Future()
                self.server.requests.put((body, future))
                try:
                    reply = future.result(REPLY_TIMEOUT)
                except TimeoutError:
                    reply = {"ok": False, "error": "no reply in time"}
            self.wfile.write(json.dumps(reply).encode() + b"\n")
            self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    requests: Any


class ControlServer:
    """Serves control requests into ``requests`` (a queue of (request, future)).

    Args:
        requests: the coordinator's request queue.
        address: ``host:port`` to listen on (None: 127.0.0.1 and a free port).
        directory: where ``ray-control.json`` is written.

    Raises:
        OSError: the address cannot be bound.
    """

    def __init__(self, requests: Any, address: str | None, directory: str) -> None:
        host, port = "127.0.0.1", 0
        if address:
            host, _, text = address.rpartition(":")
            port = int(text)
        self.server = _Server((host, port), _Handler)
        self.server.requests = requests
        self.address = "{}:{}".format(*self.server.server_address[:2])
        self.path = Path(directory) / CONTROL_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"address": self.address, "pid": os.getpid()}) + "\n")
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        log.info("control port on %s (wallaroo scale --workers N)", self.address)

    def close(self) -> None:
        """Stop serving and remove the control file if it is still this process's."""
        self.server.shutdown()
        self.server.server_close()
        try:
            current = json.loads(self.path.read_text())
            if current.get("pid") == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass


def request(address: str, body: dict[str, Any], timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
    """Send one request to a control port and return the reply.

    Raises:
        OSError: the port cannot be reached, or it closed without replying.
    """
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(json.dumps(body).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("the control port closed without replying")
            data += chunk
    reply = json.loads(data)
    if not isinstance(reply, dict):
        raise OSError("the control port sent something that is not a JSON object")
    return reply


def _find_address(directory: str) -> str:
    path = Path(directory) / CONTROL_FILE
    try:
        return str(json.loads(path.read_text())["address"])
    except (OSError, ValueError, KeyError) as exc:
        raise OSError(
            f"no running Ray application found ({path}: {exc}); give --address HOST:PORT"
        ) from exc


def scale_main(argv: Sequence[str]) -> int:
    """``wallaroo scale --workers N``: rescale a running ``--backend ray`` application."""
    parser = argparse.ArgumentParser(
        prog="wallaroo scale",
        description="Grow or shrink a running --backend ray application: it takes a "
        "checkpoint, reassigns key groups to N workers and resumes.",
    )
    parser.add_argument("--workers", "--worker-count", type=int, help="the new number of workers")
    parser.add_argument("--status", action="store_true", help="print the application's status")
    parser.add_argument("--address", help="the control port (the worker's --external)")
    parser.add_argument(
        "--resilience-dir",
        default=RESILIENCE_DIR,
        help="the application's --resilience-dir (to find its control port)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=REPLY_TIMEOUT,
        help=f"seconds to wait for the application's reply (default {REPLY_TIMEOUT:g}; a "
        "rescale takes a checkpoint and restarts the workers)",
    )
    args = parser.parse_args(list(argv))
    if args.status == (args.workers is not None):
        parser.error("give exactly one of --workers N and --status")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    body: dict[str, Any] = (
        {"op": "status"} if args.status else {"op": "scale", "workers": args.workers}
    )
    try:
        address = args.address or _find_address(args.resilience_dir)
        reply = request(address, body, args.timeout)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"wallaroo scale: error: {exc}\n")
        return 1
    sys.stdout.write(json.dumps(reply) + "\n")
    return 0 if reply.get("ok") else 1
