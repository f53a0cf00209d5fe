"""Connector codecs: the ``stream_message_*`` and ``octet_message_*`` decorators.

On the connector protocol a payload is exactly the encoder's bytes (``decisions.md``), so the two
families differ only in name: an encoder turns a value into bytes (``str`` is sent as UTF-8), a
decoder gets the payload bytes. The decoders also frame plain TCP input with a 4-byte big-endian
length header, as the original's did.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wallaroo.decorators import Decoder, Encoder, check_arity

__all__ = [
    "octet_message_decoder",
    "octet_message_encoder",
    "stream_message_decoder",
    "stream_message_encoder",
]


def stream_message_encoder(fn: Callable[[Any], Any]) -> Encoder:
    """Decorate ``fn(value) -> bytes``: what a connector sends for each value it writes."""
    check_arity(fn, 1, "stream_message_encoder", "data")
    return Encoder(fn, "stream")


def stream_message_decoder(fn: Callable[[bytes], Any]) -> Decoder:
    """Decorate ``fn(payload: bytes) -> message``: how the receiving side reads a payload."""
    check_arity(fn, 1, "stream_message_decoder", "data")
    return Decoder(fn, 4, ">I", "stream")


def octet_message_encoder(fn: Callable[[Any], Any]) -> Encoder:
    """Like :func:`stream_message_encoder`; the original's name for raw sink payloads."""
    check_arity(fn, 1, "octet_message_encoder", "data")
    return Encoder(fn, "octet")


def octet_message_decoder(fn: Callable[[bytes], Any]) -> Decoder:
    """Like :func:`stream_message_decoder` (and working, unlike the original's)."""
    check_arity(fn, 1, "octet_message_decoder", "data")
    return Decoder(fn, 4, ">I", "octet")
