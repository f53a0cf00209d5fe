"""Parsing of the application's own ``--in``/``--out`` arguments.

``application_setup(args)`` receives the command line minus the worker's options; these helpers
read the address lists an application usually takes from it. Unknown arguments are ignored.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from wallaroo.errors import WallarooParameterError

__all__ = ["parse_address", "tcp_parse_input_addrs", "tcp_parse_output_addrs"]


def parse_address(text: str, flag: str) -> tuple[str, str]:
    """Split ``host:port`` (IPv6 hosts in brackets) into ``(host, port)``; the port stays a
    string, as in the original."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise WallarooParameterError(
            f"{flag} expects host:port entries (e.g. 127.0.0.1:7010), got {text!r}"
        )
    return host, port


def _flag_values(args: Sequence[str], long: str, short: str) -> list[str]:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument(long, short, action="append", default=[])
    known, _ = parser.parse_known_args([a for a in args if isinstance(a, str)])
    values: list[str] = getattr(known, long.lstrip("-"))
    if not values:
        raise WallarooParameterError(
            f"this application needs {long} (e.g. {long} 127.0.0.1:7010); pass it on the command "
            "line after the worker's own options"
        )
    return [entry for value in values for entry in value.split(",") if entry.strip()]


def tcp_parse_input_addrs(args: Sequence[str]) -> list[tuple[str, str] | tuple[str, str, str]]:
    """Addresses from ``--in``/``-i``: ``name@host:port`` gives ``(name, host, port)``, plain
    ``host:port`` gives ``(host, port)``. Entries are comma-separated; the flag may repeat."""
    result: list[tuple[str, str] | tuple[str, str, str]] = []
    for entry in _flag_values(args, "--in", "-i"):
        name, at, address = entry.strip().rpartition("@")
        if at:
            if not name:
                raise WallarooParameterError(f"--in entry {entry!r} has an empty name before '@'")
            host, port = parse_address(address, "--in")
            result.append((name, host, port))
        else:
            result.append(parse_address(address, "--in"))
    return result


def tcp_parse_output_addrs(args: Sequence[str]) -> list[tuple[str, str]]:
    """Addresses from ``--out``/``-o``: comma-separated ``host:port`` entries."""
    return [parse_address(e, "--out") for e in _flag_values(args, "--out", "-o")]
