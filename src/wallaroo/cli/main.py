"""``wallaroo``: the friendlier command line.

wallaroo run MODULE [worker options] [application arguments]
wallaroo connector NAME [connector arguments]
wallaroo send --host HOST:PORT [--file FILE ...]
wallaroo receive --listen HOST:PORT
wallaroo top HOST:PORT
wallaroo demo
wallaroo scale --workers N
"""

from __future__ import annotations

import pkgutil
import runpy
import sys
from collections.abc import Sequence

from wallaroo import __version__

__all__ = ["main"]

USAGE = """\
usage: wallaroo COMMAND [arguments]

commands:
  run MODULE [options]        run a worker for an application module (same options as machida)
  connector NAME [options]    run a prebuilt connector (udp_source, udp_sink, ...)
  send --host HOST:PORT       send u32-framed messages to a TCP source
  receive --listen HOST:PORT  print what a TCP sink writes
  top HOST:PORT               live table of a worker's metrics (its --metrics-http address)
  demo                        run a demo pipeline in this process
  scale --workers N           grow or shrink a running --backend ray application

Use 'wallaroo COMMAND --help' for a command's options.
"""


def connector_names() -> list[str]:
    """The connectors ``wallaroo connector NAME`` can run: the public modules of
    :mod:`wallaroo.connectors`, sorted.
    """
    import wallaroo.connectors

    return sorted(
        m.name
        for m in pkgutil.iter_modules(wallaroo.connectors.__path__)
        if not m.name.startswith("_")
    )


def _connector(args: list[str]) -> int:
    names = connector_names()
    if not args or args[0] in ("-h", "--help"):
        print(
            "usage: wallaroo connector NAME [--application-module M --connector C ...]\n\n"
            "connectors: " + ", ".join(names)
        )
        return 0
    name, rest = args[0], args[1:]
    if name not in names:
        print(
            f"wallaroo connector: error: no connector named {name!r}; available: "
            f"{', '.join(names)}",
            file=sys.stderr,
        )
        return 2
    sys.argv = [name, *rest]
    try:
        runpy.run_module(f"wallaroo.connectors.{name}", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``wallaroo COMMAND ...``: run the command; return its exit status (2 for a usage error
    or an unknown command).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "--version":
        print(f"wallaroo (wallaroo-py) {__version__}")
        return 0
    if command == "run":
        from wallaroo.cli import machida

        if not rest or rest[0].startswith("-"):
            return machida.main(rest, prog="wallaroo run")
        return machida.main(["--application-module", rest[0], *rest[1:]], prog="wallaroo run")
    if command == "connector":
        return _connector(rest)
    if command == "send":
        from wallaroo.cli import send

        return send.main(rest)
    if command == "receive":
        from wallaroo.cli import receive

        return receive.main(rest)
    if command == "top":
        from wallaroo.cli import top

        return top.main(rest)
    if command == "scale":
        from wallaroo.ray_backend.control import scale_main

        return scale_main(rest)
    if command == "demo":
        from wallaroo.cli import demo

        return demo.main(rest)
    print(f"wallaroo: error: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
