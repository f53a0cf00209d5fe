#!/usr/bin/env python3
"""udp_sink: receive a connector sink's output from Wallaroo and send each value as a UDP
datagram.

Usage::

    udp_sink --application-module celsius --connector fahrenheit_conversion \\
        --fahrenheit_conversion-host 127.0.0.1 --fahrenheit_conversion-port 6790

Parameters (prefixed with the connector's name):
    host, port        (required) where to send the datagrams.
    deadletter_path   (optional) where outputs the sink decoder rejects are kept (default
                      ``./wallaroo-deadletter/<connector>-sink.jsonl``).

It listens for the worker at the address the application gives the connector, decodes every
output with the application's sink decoder and sends it as one datagram: a ``str`` as UTF-8,
bytes as they are, anything else as ``str(value)`` in UTF-8. An output the decoder rejects is a
dead letter: appended to the dead-letter file (JSON Lines, the worker's format) and logged
(rate-limited), and the outputs after it are sent. UDP is at-most-once: a datagram nobody
receives is lost, and one that cannot be sent (larger than a datagram, say) is a dead letter,
like an output the decoder rejects.

Logs go to stderr; the first line names the connector and both addresses. SIGINT and SIGTERM
stop it cleanly (exit code 0).

This file is self-contained and uses only the public API: copy it into your tree and adapt it.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Sequence
from typing import NoReturn

import wallaroo.experimental
from wallaroo.experimental.program import (
    ProgramRun,
    as_bytes,
    configure_logging,
    port_number,
    read_outputs,
)

log = logging.getLogger("udp_sink")


def serve(
    connector: wallaroo.experimental.SinkConnector,
    out: socket.socket,
    destination: tuple[str, int],
) -> NoReturn:
    """Send every value the connector reads to ``destination``, until interrupted. A value
    that cannot be sent (larger than a datagram, say) is a dead letter, and the rest go on."""
    while True:
        for value in read_outputs(connector, log, 1024):
            try:
                out.sendto(as_bytes(value), destination)
            except OSError as exc:
                connector.dead_letter(value, exc, stage=f"udp_sink sendto {destination[0]}:"
                                      f"{destination[1]}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run the connector until SIGINT or SIGTERM; return the exit code."""
    configure_logging()
    args = list(sys.argv if argv is None else argv)
    with ProgramRun(log, errors=(ValueError,)) as run:
        connector = wallaroo.experimental.SinkConnector(args, required_params=["host", "port"])
        port = port_number(
            f"--{connector.config.name}-port", connector.params.port, allow_zero=True
        )
        destination = (connector.params.host, port)
        family = socket.AF_INET6 if ":" in destination[0] else socket.AF_INET
        out = run.enter_context(socket.socket(family, socket.SOCK_DGRAM))
        run.callback(connector.close)  # the last registered is closed first
        connector.listen()
        host, port = connector.address
        log.info(
            "udp_sink for connector '%s': listening for the worker on %s:%d, sending UDP to %s:%d",
            connector.config.name, host, port, *destination,
        )  # fmt: skip
        serve(connector, out, destination)
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
