"""The worker process: the engine inside one asyncio event loop, with its sources and sinks."""
