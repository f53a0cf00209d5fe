"""Command-line parameters of a connector program: ``--application-module``, ``--connector`` and
``--<connector>-<param>``.

Connector parameters carry the connector's name as a prefix so that a connector program can be
given the worker's whole command line (and several connectors' parameters) without clashes::

    udp_source --application-module celsius --connector celsius_feed \\
        --celsius_feed-host 127.0.0.1 --celsius_feed-port 6789
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Mapping, Sequence

from wallaroo.errors import WallarooParameterError

__all__ = [
    "CONNECTOR_NAME_PLACEHOLDER",
    "KNOWN_PARAM_HELP",
    "param_help",
    "param_list",
    "parse_connector_args",
    "program_name",
]

CONNECTOR_NAME_PLACEHOLDER = "CONNECTOR_NAME"
"""The prefix shown in the usage message when ``--connector`` is missing (as in the original)."""

_RESERVED = frozenset({"application", "connector_name"})

KNOWN_PARAM_HELP: Mapping[str, str] = {
    "host": "the host of the address this program listens on or connects to",
    "port": "the port of that address (0 picks a free one where the program listens)",
    "instance": "names the stream <connector>-<instance>, so several programs can feed one "
    "connector",
    "deadletter_path": "the JSON Lines file where outputs the sink decoder rejects are kept "
    "(default ./wallaroo-deadletter/<connector>-sink.jsonl)",
}
"""Help text of parameters whose meaning is the same in every program; a program's own text,
given as a mapping to ``required_params`` or ``optional_params``, wins."""


def program_name(argv0: str | None = None) -> str:
    """The name a connector program's usage line shows: the base name of ``argv0``
    (``sys.argv[0]``) without ``.py``, so ``udp_source`` however the program was started
    (``connectors/udp_source``, ``python -m wallaroo.connectors.udp_source``,
    ``wallaroo connector udp_source`` or a copy of the file)."""
    name = os.path.basename(sys.argv[0] if argv0 is None else argv0) or "connector"
    return name[:-3] if name.endswith(".py") else name


def param_help(*params: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """The help text of each parameter: the program's own, where ``params`` is a mapping of
    name to text, else :data:`KNOWN_PARAM_HELP`'s."""
    found = dict(KNOWN_PARAM_HELP)
    for group in params:
        if isinstance(group, Mapping):
            found.update({str(k): str(v) for k, v in group.items() if v})
    return found


def param_list(params: Iterable[str] | str, what: str) -> list[str]:
    """Return ``params`` (names, or a mapping of name to help text) as a list of valid
    parameter names.

    Raises:
        WallarooParameterError: ``params`` is a lone string, or a name is empty, starts with
            ``-`` or is reserved (``application``, ``connector_name``).
    """
    if isinstance(params, str):  # a lone string is almost always a forgotten list
        raise WallarooParameterError(f"{what} must be a list of parameter names, got {params!r}")
    names = list(params)
    for name in names:
        if not isinstance(name, str) or not name or name.startswith("-"):
            raise WallarooParameterError(
                f"{what} holds {name!r}; a parameter name is a non-empty string without a "
                "leading '-' (it becomes --<connector>-<name>)"
            )
        if name in _RESERVED:
            raise WallarooParameterError(
                f"{what} holds {name!r}, which is reserved for the connector's own settings"
            )
    return names


def _connector_name(args: Sequence[str]) -> str:
    """Find ``--connector NAME`` (or ``--connector=NAME``) ahead of the real parse."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--connector", dest="connector_name", default=CONNECTOR_NAME_PLACEHOLDER)
    known, _ = pre.parse_known_args(args)
    name: str = known.connector_name
    return name


def parse_connector_args(
    args: Sequence[str] | None = None,
    required_params: Iterable[str] | Mapping[str, str] = (),
    optional_params: Iterable[str] | Mapping[str, str] = (),
) -> argparse.Namespace:
    """Parse a connector program's command line.

    Args:
        args: the arguments (``sys.argv[1:]`` when None). A leading program name, as in
            ``sys.argv``, is harmless: unknown arguments are ignored, so the worker's own flags
            may be passed too.
        required_params: names ``p`` of parameters given as ``--<connector>-<p> VALUE`` that
            must be present; a mapping of name to help text gives ``--help`` its lines.
        optional_params: names of parameters that may be given (absent ones are None), or a
            mapping of name to help text.

    Returns:
        A namespace with ``application`` (``--application-module``), ``connector_name``
        (``--connector``) and one attribute per parameter name (read a name containing ``-``
        with ``getattr``). Values are strings.

    Raises:
        WallarooParameterError: a parameter name is empty, starts with ``-``, is reserved
            (``application``, ``connector_name``) or is listed twice.
        SystemExit: like argparse, with exit code 2 and a usage message naming the missing
            ``--application-module``, ``--connector`` or ``--<connector>-<param>``; with code 0
            after printing the help for ``-h``.
    """
    argv = list(sys.argv[1:] if args is None else args)
    required = param_list(required_params, "required_params")
    optional = param_list(optional_params, "optional_params")
    twice = sorted({n for n in required + optional if (required + optional).count(n) > 1})
    if twice:
        raise WallarooParameterError(f"parameter(s) listed twice: {', '.join(twice)}")
    prefix = _connector_name(argv)
    helps = param_help(required_params, optional_params)
    parser = argparse.ArgumentParser(
        prog=program_name(),
        description=f"connector program for connector '{prefix}'",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--application-module",
        dest="application",
        required=True,
        help="the application module the worker runs (connector settings are read from it)",
    )
    parser.add_argument(
        "--connector",
        dest="connector_name",
        required=True,
        help="the name of the connector in the application",
    )
    for name in required:
        parser.add_argument(f"--{prefix}-{name}", dest=name, required=True, help=helps.get(name))
    for name in optional:
        text = helps.get(name)
        parser.add_argument(
            f"--{prefix}-{name}",
            dest=name,
            default=None,
            help=f"{text} (optional)" if text else "(optional)",
        )
    params, _unknown = parser.parse_known_args(argv)
    return params
