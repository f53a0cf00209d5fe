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
import socket
import sys
from collections.abc import Sequence

import wallaroo.experimental
from wallaroo.experimental.program import (
    ProgramRun,
    configure_logging,
    port_number,
    send_forever,
)

log = logging.getLogger("udp_source")

MAX_DATAGRAM = 65535
BATCH = 1024
IDLE_POLL = 0.2  # seconds without datagrams before the connector checks on the worker


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    args = list(sys.argv if argv is None else argv)
    with ProgramRun(log, errors=(ValueError,)) as run:
        connector = wallaroo.experimental.SourceConnector(
            args, required_params=["host", "port"], optional_params=["instance"]
        )
        host = connector.params.host
        port = port_number(
            f"--{connector.config.name}-port", connector.params.port, allow_zero=True
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        udp = run.enter_context(socket.socket(family, socket.SOCK_DGRAM))
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        udp.bind((host, port))
        udp.settimeout(IDLE_POLL)
        bound_host, bound_port = udp.getsockname()[:2]
        config = connector.config
        log.info(
            "udp_source for connector '%s': listening for UDP on %s:%d, sending to the worker "
            "at %s:%d", config.name, bound_host, bound_port, config.host, config.port,
        )  # fmt: skip
        run.callback(connector.close, timeout=2.0)  # the last registered is closed first
        connector.connect()
        send_forever(connector, lambda: _receive_batch(udp))
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
