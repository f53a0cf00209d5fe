#!/usr/bin/env python3
"""udp_source: listen for UDP datagrams and send each one to Wallaroo as a message.

Usage::

    udp_source --application-module celsius --connector celsius_feed \\
        --celsius_feed-host 127.0.0.1 --celsius_feed-port 6789

Parameters (prefixed with the connector's name):
    host, port   (required) the UDP address to listen on (port 0 picks a free one).
    instance     (optional) names the stream ``<connector>-<instance>`` so that several
                 udp_source processes can feed one connector.

Each datagram's bytes go, unchanged, through the application's source encoder to the worker
at the address the application gives the connector. UDP is at-most-once: datagrams that arrive
while this program is not running, or that the kernel drops, are lost. Once read, a datagram is
held until the worker acknowledges it and sent again after a reconnection.

Logs go to stderr; the first line names the connector and both addresses. SIGINT and SIGTERM
stop it cleanly (exit code 0).

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

import wallaroo
import wallaroo.experimental

log = logging.getLogger("udp_source")

MAX_DATAGRAM = 65535
BATCH = 1024
IDLE_POLL = 0.2  # seconds without datagrams before the connector checks on the worker


class Stop(BaseException):
    """Raised in the main thread by SIGINT or SIGTERM. A BaseException, as KeyboardInterrupt
    is: a signal that lands inside code catching ``Exception`` (logging does) must not be
    swallowed."""


def _request_stop(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def _receive_batch(udp: socket.socket) -> list[bytes]:
    """Wait for one datagram, then take the others already waiting (up to BATCH)."""
    try:
        batch = [udp.recv(MAX_DATAGRAM)]
    except TimeoutError:
        return []
    while len(batch) < BATCH:
        try:
            batch.append(udp.recv(MAX_DATAGRAM, socket.MSG_DONTWAIT))
        except (BlockingIOError, TimeoutError):
            break
    return batch


def serve(connector: wallaroo.experimental.SourceConnector, udp: socket.socket) -> NoReturn:
    """Write every datagram to the worker, until interrupted."""
    while True:
        batch = _receive_batch(udp)
        if len(batch) == 1:
            connector.write(batch[0])
        elif batch:
            connector.write_many(batch)
        else:  # idle: notice a worker that went away, resend what it had not acknowledged
            connector.poll()


def port_number(connector: str, value: str) -> int:
    """The ``--<connector>-port`` value as a port number.

    Raises:
        ValueError: not a number from 0 to 65535 (the message names the flag).
    """
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"--{connector}-port must be a number from 0 to 65535, got {value!r}")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    args = list(sys.argv if argv is None else argv)
    udp: socket.socket | None = None
    connector: wallaroo.experimental.SourceConnector | None = None
    try:
        connector = wallaroo.experimental.SourceConnector(
            args, required_params=["host", "port"], optional_params=["instance"]
        )
        host = connector.params.host
        port = port_number(connector.config.name, connector.params.port)
        udp = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        udp.bind((host, port))
        udp.settimeout(IDLE_POLL)
        bound_host, bound_port = udp.getsockname()[:2]
        config = connector.config
        log.info(
            "udp_source for connector '%s': listening for UDP on %s:%d, sending to the worker "
            "at %s:%d", config.name, bound_host, bound_port, config.host, config.port,
        )  # fmt: skip
        connector.connect()
        serve(connector, udp)
    except (Stop, KeyboardInterrupt) as stop:
        log.info("stopping (%s)", stop or "SIGINT")
        return 0
    except (wallaroo.WallarooError, OSError, ValueError) as exc:
        log.error("%s", exc)
        return 1 if isinstance(exc, OSError | wallaroo.experimental.ConnectorError) else 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if connector is not None:
            connector.close(timeout=2.0)
        if udp is not None:
            udp.close()


if __name__ == "__main__":
    sys.exit(main())
