"""A source connector process: send a workload's messages to the worker with
``SourceConnector.write`` (one call per message) or ``write_many`` (``--chunk`` per call),
then close the stream and wait for the worker's acknowledgement of its end.

    python -m bench.peers.connector_source --application-module bench.apps.celsius \
        --connector celsius --workload w1 --messages N --writer write_many [app flags]
"""

from __future__ import annotations

import sys
import time

import wallaroo.experimental as wx
from bench.peers.common import inputs, peer_args, ready, report


def main() -> int:
    args = peer_args(sys.argv[1:])
    data = inputs(args)
    connector = wx.SourceConnector(args=sys.argv)
    connector.connect(timeout=30)
    cpu_ready = ready()
    start = time.monotonic()
    if args.writer == "write":
        write = connector.write
        for message in data:
            write(message)
    else:
        for i in range(0, len(data), args.chunk):
            connector.write_many(data[i : i + args.chunk])
    written = time.monotonic()
    connector.close(timeout=args.timeout)
    stats = connector.statistics()
    report(
        ok=stats.unacked == 0 and stats.pending == 0,
        sent=stats.messages_written,
        start=start,
        written=written,
        end=time.monotonic(),
        cpu=time.process_time(),
        cpu_sending=time.process_time() - cpu_ready,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
