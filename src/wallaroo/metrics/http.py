"""The metrics endpoint's web layer: Starlette routes served by uvicorn on the worker's loop.

Handlers are plain functions from :class:`Request` to :class:`Response` (this module's own
records, so the rest of the metrics code knows nothing of the framework). :class:`HttpServer`
turns them into a Starlette application of ``GET``/``HEAD`` routes and serves it with uvicorn
on the running event loop: no thread, no signal handlers of its own (the worker keeps its own),
no logging configuration of its own. Starlette answers unknown paths (404) and other methods
(405 with ``Allow``); uvicorn (h11) answers malformed requests (400) and bounds request heads to
``MAX_HEAD`` bytes. An exception in a handler becomes a 500 and one log line.

The task serving the endpoint belongs to its :class:`HttpServer`: :meth:`~HttpServer.start`
cancels and awaits it when the endpoint does not come up, :meth:`~HttpServer.stop` awaits it
(cancels it if the stop is cancelled), and an error that ends it is logged when it happens.

Both are in the ``metrics`` extra (``pip install 'wallaroo-py[metrics]'``) and imported only
when an HTTP endpoint is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from wallaroo.errors import ConfigurationError

__all__ = ["MAX_HEAD", "Handler", "HttpServer", "Request", "Response", "check_framework"]

MAX_HEAD = 16 * 1024
"""The largest request head (request line and headers) accepted, in bytes."""
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 2


@dataclass(frozen=True, slots=True)
class Request:
    """What a handler sees of a request."""

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


def _import_framework() -> tuple[Any, Any]:
    """``(starlette modules, uvicorn)``, or a ConfigurationError naming the extra."""
    try:
        import starlette.applications
        import starlette.responses
        import starlette.routing
        import uvicorn
    except ImportError as exc:
        raise ConfigurationError(
            f"--metrics-http needs Starlette and uvicorn ({exc}); install them with: "
            "pip install 'wallaroo-py[metrics]'"
        ) from exc
    return starlette, uvicorn


def check_framework() -> None:
    """Make sure Starlette and uvicorn can be imported, before anything is bound.

    Raises:
        ConfigurationError: one of them is missing; the message names the extra to install.
    """
    _import_framework()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=64)


class HttpServer:
    """Serves ``routes`` (exact path -> handler) until :meth:`stop`.

    Args:
        routes: exact paths and their handlers.
        log: where handler failures are reported.
    """

    def __init__(self, routes: Mapping[str, Handler], log: logging.Logger) -> None:
        self.routes = dict(routes)
        self.log = log
        self.address: tuple[str, int] = ("", 0)
        self.requests = 0
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (0 picks a free port); return the bound address once the
        server accepts requests.

        Raises:
            OSError: the address cannot be bound.
            ConfigurationError: Starlette or uvicorn is not installed (names the extra).
        """
        starlette, uvicorn = _import_framework()
        app = starlette.applications.Starlette(
            routes=[
                starlette.routing.Route(path, self._endpoint(handler, starlette), methods=["GET"])
                for path, handler in self.routes.items()
            ]
        )
        config = uvicorn.Config(
            app,
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,  # the worker's logging stays as it is
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=STOP_TIMEOUT_S,
            h11_max_incomplete_event_size=MAX_HEAD,
        )
        sock = _listen(host, port)
        self.address = sock.getsockname()[:2]
        try:
            server = _embedded_server(config)
            task = asyncio.create_task(server.serve(sockets=[sock]), name="metrics http")
        except BaseException:
            sock.close()
            raise
        try:
            await _started(server, task, f"{host}:{port}")
        except BaseException:  # not up (or start() was cancelled): leave nothing running
            await _cancel(task)
            sock.close()
            raise
        self._server, self._task = server, task
        task.add_done_callback(functools.partial(self._ended, sock))
        return self.address

    async def stop(self) -> None:
        """Stop listening; requests being answered finish (for up to 2 s). An error of the
        server is logged (when it happens), not raised. Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
            raise

    def _ended(self, sock: socket.socket, task: asyncio.Task[None]) -> None:
        """The serving task is over: close its socket (if uvicorn did not), log why unless
        :meth:`stop` ended it cleanly."""
        sock.close()
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.log.error("the metrics endpoint on %s:%d failed", *self.address, exc_info=exc)
        elif task is self._task:  # stop() was not called
            self.log.error("the metrics endpoint on %s:%d stopped by itself", *self.address)

    def dispatch(self, handler: Handler, request: Request) -> Response:
        """``handler``'s response to ``request``; a 500 and a log line if it raises."""
        try:
            return handler(request)
        except Exception:
            self.log.exception("metrics endpoint %s failed", request.path)
            return Response(b"internal error; see the worker's log\n", status=500)

    def _endpoint(self, handler: Handler, starlette: Any) -> Callable[[Any], Any]:
        async def endpoint(request: Any) -> Any:
            self.requests += 1
            query = dict(request.query_params)
            headers = {k.lower(): v for k, v in request.headers.items()}
            response = self.dispatch(
                handler, Request(request.method, request.url.path, query, headers)
            )
            return starlette.responses.Response(
                response.body,
                response.status,
                {"X-Content-Type-Options": "nosniff", **dict(response.headers)},
                media_type=response.content_type,
            )

        return endpoint


async def _started(server: Any, task: asyncio.Task[None], where: str) -> None:
    """Return once ``server`` accepts requests; raise why it does not.

    Raises:
        OSError: it stopped at once (its own error, if it raised one) or did not start in time.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while not server.started:
        if task.done():
            task.result()  # it failed to start: raise its error
            raise OSError(f"the metrics endpoint on {where} stopped at once")
        if loop.time() > deadline:
            raise OSError(f"the metrics endpoint on {where} did not start")
        await asyncio.sleep(0.01)


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it is over (its error, if any, is the caller's to raise)."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved: asyncio does not report it again


def _embedded_server(config: Any) -> Any:
    """A uvicorn server without its signal handling: the worker handles SIGINT and SIGTERM
    and stops the endpoint itself."""
    _, uvicorn = _import_framework()
    base: type = uvicorn.Server

    class EmbeddedServer(base):  # type: ignore[misc]
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return EmbeddedServer(config)
