"""``wallaroo.experimental.connector_wire_messages``: the protocol v3 frames under the original's
module path (conventionally imported as ``cwm``).

Only re-exports :mod:`wallaroo.protocol`, plus :class:`Frame`, the original's ``encode`` /
``decode`` entry points over whole frames. The frame classes are frozen values; ``encode()``
gives a whole frame, length prefix included.
"""

from __future__ import annotations

from typing import Any

from wallaroo.protocol import Frame as AnyFrame
from wallaroo.protocol.frames import (
    NONE_SEEN,
    SINK_VERSION,
    SOURCE_VERSION,
    Ack,
    EosMessage,
    Error,
    FrameType,
    Hello,
    Message,
    Notify,
    NotifyAck,
    Ok,
    Restart,
    decode_frame,
    encode_frame,
)
from wallaroo.protocol.reader import FrameReader
from wallaroo.protocol.twopc import (
    CONTROL_STREAM_ID,
    ListUncommitted,
    ReplyUncommitted,
    TwoPCFrame,
    TwoPCPhase1,
    TwoPCPhase2,
    TwoPCReply,
    TwoPCTag,
    WorkersLeft,
    decode_twopc,
    unwrap_twopc,
    wrap_twopc,
)

__all__ = [
    "CONTROL_STREAM_ID",
    "NONE_SEEN",
    "SINK_VERSION",
    "SOURCE_VERSION",
    "Ack",
    "EosMessage",
    "Error",
    "Frame",
    "FrameReader",
    "FrameType",
    "Hello",
    "ListUncommitted",
    "Message",
    "Notify",
    "NotifyAck",
    "Ok",
    "ReplyUncommitted",
    "Restart",
    "TwoPCFrame",
    "TwoPCPhase1",
    "TwoPCPhase2",
    "TwoPCReply",
    "TwoPCTag",
    "WorkersLeft",
    "decode_frame",
    "decode_twopc",
    "encode_frame",
    "unwrap_twopc",
    "wrap_twopc",
]


class Frame:
    """The original's frame codec: ``Frame.encode(msg)`` and ``Frame.decode(data)``."""

    @staticmethod
    def encode(msg: AnyFrame) -> bytes:
        """Return the whole frame (length prefix included) for ``msg``.

        Raises:
            FrameError: a field does not fit its wire layout.
        """
        return encode_frame(msg)

    @staticmethod
    def decode(data: bytes | bytearray | memoryview) -> Any:
        """Decode exactly one whole frame, length prefix included.

        Raises:
            FrameError: the bytes are not exactly one valid frame.
        """
        return decode_frame(data)
