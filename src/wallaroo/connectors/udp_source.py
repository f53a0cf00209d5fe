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

Latency: the program waits for the first datagram, then takes only the datagrams already
waiting in the kernel (up to 1,024) and sends them at once; a batch never waits for more.

An empty datagram carries no message (the protocol's empty MESSAGE means "no payload"): it is
skipped, not given to the encoder, and counted; the first one is logged with its sender, then
at most one summary line per 10 s while more come, and the total at exit (WARNING).

Logs go to stderr; the first line names the connector and both addresses. SIGINT and SIGTERM
stop it cleanly (exit code 0).

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
"""

from __future__ import annotations

import logging
import selectors
import socket
import sys
from collections.abc import Sequence

import wallaroo.experimental
from wallaroo.experimental import LogSummary
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
SUMMARY_INTERVAL = 10.0  # seconds between two log lines about empty datagrams


class Receiver:
    """Reads datagrams from a bound, non-blocking UDP socket, in batches of what is ready.

    Args:
        udp: the socket (made non-blocking here).
        empty: where empty datagrams are counted and logged.
    """

    def __init__(self, udp: socket.socket, empty: LogSummary) -> None:
        udp.setblocking(False)
        self.udp = udp
        self.empty = empty
        host, port = udp.getsockname()[:2]
        self.where = f"{host}:{port}"
        self._selector = selectors.DefaultSelector()
        self._selector.register(udp, selectors.EVENT_READ)

    def receive(self) -> list[bytes]:
        """Wait up to ``IDLE_POLL`` seconds for a datagram, then return it with those already
        waiting (up to ``BATCH``), empty ones left out; [] when none came."""
        if not self._selector.select(IDLE_POLL):
            self.empty.flush()  # the last empty datagrams of a burst get their summary line
            return []
        batch = []
        recvfrom = self.udp.recvfrom
        for _ in range(BATCH):
            try:
                data, sender = recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                break
            if data:
                batch.append(data)
            else:
                self.empty.event(
                    self.where, "an empty datagram from %s:%d to %s carries no message: "
                    "skipped (more are counted, one line per %.0f s)", sender[0], sender[1],
                    self.where, self.empty.interval,
                )  # fmt: skip
        return batch

    def close(self) -> None:
        self._selector.close()


def bind(udp: socket.socket, host: str, port: int, connector: str) -> None:
    """Bind ``udp`` to ``host:port``.

    Raises:
        OSError: it cannot be bound; the message names the address and the flags that give it.
    """
    try:
        udp.bind((host, port))
    except OSError as exc:
        raise OSError(
            f"cannot listen for UDP on {host}:{port} (--{connector}-host, --{connector}-port): "
            f"{exc.strerror or exc}"
        ) from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    args = list(sys.argv if argv is None else argv)
    with ProgramRun(log, errors=(ValueError,)) as run:
        connector = wallaroo.experimental.SourceConnector(
            args,
            required_params={
                "host": "the address to listen on for UDP datagrams",
                "port": "the UDP port to listen on (0 picks a free one)",
            },
            optional_params=["instance"],
        )
        host = connector.params.host
        port = port_number(
            f"--{connector.config.name}-port", connector.params.port, allow_zero=True
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        udp = run.enter_context(socket.socket(family, socket.SOCK_DGRAM))
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        config = connector.config
        bind(udp, host, port, config.name)
        bound_host, bound_port = udp.getsockname()[:2]
        log.info(
            "udp_source for connector '%s': listening for UDP on %s:%d, sending to the worker "
            "at %s:%d", config.name, bound_host, bound_port, config.host, config.port,
        )  # fmt: skip
        empty = LogSummary(log, interval=SUMMARY_INTERVAL, what="empty datagrams skipped")
        run.callback(empty.close)  # the total, after the stream's end
        receiver = Receiver(udp, empty)
        run.callback(receiver.close)
        run.callback(connector.close, timeout=2.0)  # the last registered is closed first
        connector.connect()
        send_forever(connector, receiver.receive)
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
