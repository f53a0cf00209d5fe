"""A small HTTP/1.1 server for read-only GET endpoints, on the worker's event loop.

It serves what a metrics endpoint needs and nothing more: ``GET`` and ``HEAD`` of fixed paths
(a query string is parsed and passed on), one request per connection (``Connection: close``),
no request bodies. Requests are bounded: the head must arrive within ``HEAD_TIMEOUT_S`` and fit
in ``MAX_HEAD`` bytes, else the connection gets 408 or 431 and is closed. Handlers are plain
functions that return a :class:`Response`; an exception in one becomes a 500 and a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["HEAD_TIMEOUT_S", "MAX_HEAD", "Handler", "HttpServer", "Request", "Response"]

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT_S = 10.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request head."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Response:
    """What a handler returns."""

    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Response]


def _text(status: int, message: str) -> Response:
    return Response((message + "\n").encode(), status=status)


def parse_head(head: bytes) -> Request:
    """Parse a request line and headers (without the final blank line).

    Raises:
        ValueError: the head is not an HTTP/1.x request; the message is the reason.
    """
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise ValueError("malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise ValueError(f"unsupported version {version}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError("malformed header line")
        headers[name.lower()] = value.strip()
    parts = urlsplit(target)
    if not parts.path.startswith("/"):
        raise ValueError("the target must be an absolute path")
    return Request(method, unquote(parts.path), dict(parse_qsl(parts.query)), headers)


def encode_response(response: Response, *, head_only: bool = False) -> bytes:
    """The bytes of ``response`` (``Content-Length`` included, the body left out for HEAD)."""
    reason = _REASONS.get(response.status, "Unknown")
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close",
        "X-Content-Type-Options: nosniff",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


class HttpServer:
    """Serves ``routes`` (path -> handler) until :meth:`stop`.

    Args:
        routes: exact paths and their handlers.
        log: where handler failures are reported.
    """

    def __init__(self, routes: Mapping[str, Handler], log: logging.Logger) -> None:
        self.routes = dict(routes)
        self.log = log
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] = ("", 0)
        self.requests = 0

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (0 picks a free port); return the bound address.

        Raises:
            OSError: the address cannot be bound.
        """
        self._server = await asyncio.start_server(
            self._serve, host, port, reuse_address=True, limit=MAX_HEAD
        )
        self.address = self._server.sockets[0].getsockname()[:2]
        return self.address

    async def stop(self) -> None:
        """Stop listening; requests being answered finish."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def dispatch(self, request: Request) -> Response:
        """The response to ``request`` (404, 405 and 500 included)."""
        if request.method not in ("GET", "HEAD"):
            return Response(b"only GET and HEAD\n", status=405, headers=(("Allow", "GET, HEAD"),))
        handler = self.routes.get(request.path)
        if handler is None:
            return _text(404, f"no such page: {request.path}")
        try:
            return handler(request)
        except Exception:
            self.log.exception("metrics endpoint %s failed", request.path)
            return _text(500, "internal error; see the worker's log")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head_only = False
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            request = parse_head(head[:-4])
            head_only = request.method == "HEAD"
            response = self.dispatch(request)
        except TimeoutError:
            response = _text(408, "the request took too long")
        except asyncio.LimitOverrunError:
            response = _text(431, f"the request head is over {MAX_HEAD} bytes")
        except asyncio.IncompleteReadError:
            writer.close()  # the client went away before finishing its request
            return
        except ValueError as exc:
            response = _text(400, str(exc))
        self.requests += 1
        with contextlib.suppress(ConnectionError):
            writer.write(encode_response(response, head_only=head_only))
            await writer.drain()
        writer.close()
