"""Command-line programs: ``machida``/``machida3`` (the worker) and ``wallaroo``."""
