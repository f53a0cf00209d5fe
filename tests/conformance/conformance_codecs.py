"""Sink decoders and payloads for the conformance checks of the built-in sink connectors.

The connector processes import this module (tests/conformance is put on their PYTHONPATH), so
the decoders are module-level functions. Every built-in sink takes a pair from its decoder:
kafka_sink ``(key, value)``, kinesis_sink ``(partition key, data)``, redis_hash_sink ``(field,
value)``, s3_bucket_sink ``(object key, body)``, postgres_insert_sink a row of two columns.
"""

from __future__ import annotations


def payload(i: int) -> bytes:
    """The ``i``-th payload the fake worker sends: ``key-<i>=value-<i>``."""
    return f"key-{i:04d}=value-{i:04d}".encode()


def pair(data: bytes) -> tuple[str, str]:
    """``(key, value)`` of a payload made by :func:`payload`."""
    key, _, value = data.decode("utf-8").partition("=")
    return key, value


def key_value(data: bytes) -> tuple[str, str]:
    """The sink decoder of every built-in sink: ``b"k=v"`` -> ``("k", "v")``."""
    return pair(data)
