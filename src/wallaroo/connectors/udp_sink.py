#!/usr/bin/env python3
"""udp_sink: receive a connector sink's output from Wallaroo and send each value as a UDP
datagram.

Usage::

    udp_sink --application-module celsius --connector fahrenheit_conversion \\
        --fahrenheit_conversion-host 127.0.0.1 --fahrenheit_conversion-port 6790

Parameters (prefixed with the connector's name):
    host, port   (required) where to send the datagrams.

It listens for the worker at the address the application gives the connector, decodes every
output with the application's sink decoder and sends it as one datagram: a ``str`` as UTF-8,
bytes as they are, anything else as ``str(value)`` in UTF-8. UDP is at-most-once: a datagram
nobody receives is lost, and one larger than UDP allows is dropped with a warning.

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
from typing import Any, NoReturn

import wallaroo
import wallaroo.experimental

log = logging.getLogger("udp_sink")


class Stop(BaseException):
    """Raised in the main thread by SIGINT or SIGTERM. A BaseException, as KeyboardInterrupt
    is: a signal that lands inside code catching ``Exception`` (logging does) must not be
    swallowed."""


def _request_stop(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def datagram(value: Any) -> bytes:
    """The bytes to send for a decoded value."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return (value if isinstance(value, str) else str(value)).encode("utf-8")


def serve(
    connector: wallaroo.experimental.SinkConnector,
    out: socket.socket,
    destination: tuple[str, int],
) -> NoReturn:
    """Send every value the connector reads to ``destination``, until interrupted."""
    failures = 0
    while True:
        try:
            values = connector.read_many(1024)
        except wallaroo.experimental.ConnectorError:
            raise
        except wallaroo.WallarooError as exc:  # the decoder rejected one output
            log.warning("%s; dropped", exc)
            continue
        for value in values:
            try:
                out.sendto(datagram(value), destination)
            except OSError as exc:  # UDP is at-most-once: report, drop, go on
                failures += 1
                if failures == 1 or failures % 1000 == 0:
                    log.warning("cannot send to %s:%d (%s); %d datagrams dropped so far",
                                *destination, exc, failures)  # fmt: skip


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
    out: socket.socket | None = None
    connector: wallaroo.experimental.SinkConnector | None = None
    try:
        connector = wallaroo.experimental.SinkConnector(args, required_params=["host", "port"])
        port = port_number(connector.config.name, connector.params.port)
        destination = (connector.params.host, port)
        family = socket.AF_INET6 if ":" in destination[0] else socket.AF_INET
        out = socket.socket(family, socket.SOCK_DGRAM)
        connector.listen()
        host, port = connector.address
        log.info(
            "udp_sink for connector '%s': listening for the worker on %s:%d, sending UDP to %s:%d",
            connector.config.name, host, port, *destination,
        )  # fmt: skip
        serve(connector, out, destination)
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
            connector.close()
        if out is not None:
            out.close()


if __name__ == "__main__":
    sys.exit(main())
