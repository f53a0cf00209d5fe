"""A sink that does not keep up stops the sources; memory stays bounded and nothing is lost."""

import asyncio
import struct

from helpers import with_worker

import wallaroo
from wallaroo.worker.flow import HIGH_WATER
from wallaroo.worker.runtime import WorkerOptions

MESSAGES = 60_000
PAYLOAD = b"x" * 1000


@wallaroo.decoder(header_length=4, length_fmt=">I")
def passthrough(data):
    return data


@wallaroo.encoder
def same(data):
    return data


def test_a_stalled_sink_pauses_the_source_and_everything_arrives_later(tmp_path):
    async def main():
        release = asyncio.Event()
        received = bytearray()
        finished = asyncio.Event()

        async def slow_sink(reader, writer):
            await release.wait()
            while data := await reader.read(1 << 20):
                received.extend(data)
                if len(received) >= MESSAGES * len(PAYLOAD):
                    finished.set()
            writer.close()

        sink = await asyncio.start_server(slow_sink, "127.0.0.1", 0)
        sink_port = sink.sockets[0].getsockname()[1]
        app = wallaroo.build_application(
            "bp",
            wallaroo.source(
                "in", wallaroo.TCPSourceConfig("in", "127.0.0.1", 0, passthrough)
            ).to_sink(wallaroo.TCPSinkConfig("127.0.0.1", sink_port, same)),
        )

        async def scenario(worker):
            _, writer = await asyncio.open_connection("127.0.0.1", worker.addresses["in"][1])
            frame = struct.pack(">I", len(PAYLOAD)) + PAYLOAD
            sent = 0

            async def send_all():
                nonlocal sent
                for _ in range(MESSAGES // 100):
                    writer.write(frame * 100)
                    await writer.drain()
                    sent += 100

            sender = asyncio.create_task(send_all())
            await asyncio.sleep(1.5)
            stats = worker.statistics()
            (out,) = stats.sinks
            assert not stats.gate.open
            assert stats.gate.blockers == (f"127.0.0.1:{sink_port}",)
            assert out.buffered_bytes <= 2 * HIGH_WATER
            assert sent < MESSAGES  # the sender is held back by TCP
            release.set()
            await asyncio.wait_for(sender, 30)
            await asyncio.wait_for(finished.wait(), 30)
            writer.close()
            return worker.statistics()

        try:
            return await with_worker(app, scenario, WorkerOptions(resilience_dir=str(tmp_path)))
        finally:
            sink.close()
            await sink.wait_closed()
            assert received == PAYLOAD * MESSAGES

    stats = asyncio.run(main())
    assert stats.gate.open
    assert stats.gate.times_closed >= 1
