"""A sink connector process: take the worker's outputs with ``SinkConnector.read_many`` until
every one has arrived, then check them.

    python -m bench.peers.connector_sink --application-module bench.apps.celsius \
        --connector fahrenheit --workload w1 --messages N [app flags]
"""

from __future__ import annotations

import sys
import time

import wallaroo.experimental as wx
from bench.peers.common import expected_outputs, peer_args, ready, report, usage, verify


def main() -> int:
    args = peer_args(sys.argv[1:])
    want = expected_outputs(args)
    connector = wx.SinkConnector(args=sys.argv, buffer_size=65536)
    connector.listen()
    cpu_ready = ready()
    chunks: list[bytes] = []
    got = 0
    first = last = 0.0
    try:
        while got < want:
            values = connector.read_many(65536, timeout=args.timeout)
            last = time.monotonic()
            first = first or last
            got += len(values)
            chunks.append(b"".join(values))
    except TimeoutError:
        report(ok=False, error=f"timed out after {got} of {want} outputs")
        return 1
    at_last = usage()
    problem = verify(args, b"".join(chunks)) if got == want else f"{got} outputs of {want}"
    report(
        ok=problem is None,
        error=problem,
        received=got,
        first=first,
        last=last,
        cpu=at_last["cpu"] - cpu_ready,
        busy=at_last["busy"],
    )
    return 0 if problem is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
