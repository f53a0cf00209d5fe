"""Every exception wallaroo raises, under one base.

The whole tree::

    WallarooError                      base of everything below
    ├── WallarooParameterError         the application description is wrong (API misuse);
    │                                  raised while building, never while running
    ├── ConnectorError                 a connector or the worker's side of a connection failed
    │   ├── ProtocolError              a peer broke the connector wire protocol
    │   │   └── FrameError             bytes that are not a valid frame (bad length, unknown type,
    │   │                              truncated body); carries no partial state
    │   └── UnexpectedSocketError      the socket failed in a way the protocol cannot explain
    ├── StreamDecoderError             a decoder rejected a payload (recorded as a dead letter)
    ├── UserCodeError                  a user computation broke its contract (wrong return type);
    │                                  recorded as a dead letter, never raised out of the engine
    ├── CheckpointError                a checkpoint could not be written or read back intact
    └── ConfigurationError             a bad value of a worker or connector command-line flag

Messages are lowercase, say what was wrong and where, and name the likely fix. Library code never
prints or exits; the command-line layer maps these exceptions to exit codes. :func:`first_line`
puts any exception in one line, for a log line or an error message.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigurationError",
    "ConnectorError",
    "FrameError",
    "ProtocolError",
    "StreamDecoderError",
    "UnexpectedSocketError",
    "UserCodeError",
    "WallarooError",
    "WallarooParameterError",
    "first_line",
]


class WallarooError(Exception):
    """Base class of every exception raised by wallaroo."""


class WallarooParameterError(WallarooError):
    """The application description is wrong: a misused builder method, decorator or config."""


class ConnectorError(WallarooError):
    """A connector, or the worker's end of a connector connection, failed."""


class ProtocolError(ConnectorError):
    """The peer broke the connector wire protocol (bad handshake, frame in the wrong state...)."""


class FrameError(ProtocolError):
    """Bytes that do not form a valid frame: bad length, unknown type or a truncated body."""


class UnexpectedSocketError(ConnectorError):
    """The socket failed in a way the protocol does not explain."""


class StreamDecoderError(WallarooError):
    """A decoder could not turn a payload into a message."""


class UserCodeError(WallarooError):
    """A user computation broke its contract, e.g. a ``computation_multi`` that returned no list."""


class CheckpointError(WallarooError):
    """A checkpoint could not be written, or a stored one failed its integrity check."""


class ConfigurationError(WallarooError):
    """A bad value of a command-line flag of the worker or of a connector program."""


def first_line(exc: BaseException, *, typed: bool = False) -> str:
    """The first line of ``str(exc)``, stripped, for one log line or one-line error message.

    An exception with an empty message gives its type name. With ``typed``, the type name
    comes first: ``"ValueError: bad value"`` (still ``"ValueError"`` for an empty message).
    """
    lines = str(exc).strip().splitlines()
    name = type(exc).__name__
    if not lines:
        return name
    return f"{name}: {lines[0]}" if typed else lines[0]
