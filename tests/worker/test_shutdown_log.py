"""The worker's shutdown with a sink whose connection attempt is still under way."""

import asyncio
import logging
import socket
import time

from helpers import checked_app, with_worker

from wallaroo.worker.runtime import WorkerOptions


def silent_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A listening socket that never accepts, its accept queue already full: a connection
    attempt to it neither succeeds nor fails for a long time (the SYN is dropped)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(server.getsockname())
        except BlockingIOError:
            pass
        fillers.append(filler)
    return server, fillers


def test_a_silent_sink_neither_holds_up_the_stop_nor_logs_after_it(tmp_path, caplog):
    server, fillers = silent_listener()
    port = server.getsockname()[1]

    async def scenario(worker):
        await asyncio.sleep(0.5)  # the worker's attempt to connect to the sink hangs

    try:
        with caplog.at_level(logging.INFO, logger="wallaroo.worker"):
            started = time.monotonic()
            asyncio.run(
                with_worker(checked_app(port), scenario, WorkerOptions(resilience_dir=str(tmp_path),
                            drain_timeout=0.5))
            )  # fmt: skip
            took = time.monotonic() - started
    finally:
        for s in (server, *fillers):
            s.close()
    messages = [r.getMessage() for r in caplog.records]
    stopped = next(i for i, m in enumerate(messages) if m.endswith("stopped"))
    assert not [m for m in messages[stopped + 1 :] if "sink" in m], messages
    assert took < 5, f"the stop waited {took:.1f} s for the sink's connection attempt"
