"""The metrics endpoint's web layer (Starlette on uvicorn, on the caller's event loop): routes,
methods, query strings, bad and oversized requests, handler failures, stopping, and the message
when the ``metrics`` extra is missing."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from wallaroo.metrics import http
from wallaroo.metrics.http import HttpServer, Request, Response


def boom(_: Request) -> Response:
    raise RuntimeError("broken handler")


def echo(r: Request) -> Response:
    data = {"method": r.method, "path": r.path, "query": dict(r.query), "x": r.headers.get("x-a")}
    return Response(json.dumps(data).encode(), "application/json", headers=(("X-Extra", "1"),))


ROUTES = {"/hello": echo, "/boom": boom}


async def exchange(address: tuple[str, int], raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


def run(*requests: bytes) -> list[bytes]:
    """Each request on its own connection, which it closes (``Connection: close``)."""

    async def main() -> list[bytes]:
        server = HttpServer(ROUTES, logging.getLogger("test"))
        address = await server.start("127.0.0.1", 0)
        try:
            return [await exchange(address, r) for r in requests]
        finally:
            await server.stop()

    return asyncio.run(main())


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def headers_of(response: bytes) -> dict[str, str]:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head)}


def test_get_head_404_405_and_500(caplog: pytest.LogCaptureFixture) -> None:
    close = b"Connection: close\r\n"
    ok, head, missing, post, broken = run(
        b"GET /hello?a=1&b=x%20y HTTP/1.1\r\nHost: x\r\nX-A: v\r\n" + close + b"\r\n",
        b"HEAD /hello HTTP/1.1\r\nHost: x\r\n" + close + b"\r\n",
        b"GET /nope HTTP/1.0\r\n\r\n",
        b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" + close + b"\r\n",
        b"GET /boom HTTP/1.1\r\nHost: x\r\n" + close + b"\r\n",
    )
    assert status(ok) == 200
    body = ok.split(b"\r\n\r\n", 1)[1]
    assert json.loads(body) == {
        "method": "GET", "path": "/hello", "query": {"a": "1", "b": "x y"}, "x": "v",
    }  # fmt: skip
    h = headers_of(ok)
    assert h["content-length"] == str(len(body)) and h["content-type"] == "application/json"
    assert h["x-content-type-options"] == "nosniff" and h["x-extra"] == "1"
    assert "server" not in h
    assert status(head) == 200 and head.endswith(b"\r\n\r\n")  # no body for HEAD
    assert status(missing) == 404
    assert status(post) == 405 and "GET" in headers_of(post)["allow"]
    assert status(broken) == 500 and b"broken handler" not in broken
    assert "metrics endpoint /boom failed" in caplog.text


@pytest.mark.parametrize(
    "raw",
    [b"garbage\r\n\r\n", b"GET / HTTP/1.1\r\nbad\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"],
)
def test_malformed_requests_get_400(raw: bytes) -> None:
    (response,) = run(raw)
    assert status(response) == 400


def test_an_oversized_head_is_refused() -> None:
    (response,) = run(b"GET /hello HTTP/1.1\r\nX: " + b"a" * (http.MAX_HEAD + 10) + b"\r\n\r\n")
    assert status(response) in (400, 431)


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async def main() -> bytes:
        server = HttpServer(ROUTES, logging.getLogger("test"))
        address = await server.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"GET /hello?n=1 HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
            writer.write(b"GET /hello?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return data
        finally:
            await server.stop()
            assert server.requests == 3

    assert asyncio.run(main()).count(b"HTTP/1.1 200 OK") == 3


def test_a_taken_port_raises_oserror_and_stop_frees_the_port() -> None:
    async def main() -> None:
        first = HttpServer(ROUTES, logging.getLogger("test"))
        host, port = await first.start("127.0.0.1", 0)
        with pytest.raises(OSError, match="in use"):
            await HttpServer(ROUTES, logging.getLogger("test")).start(host, port)
        await first.stop()
        await first.stop()  # idempotent
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, port), timeout=1).close()
        again = HttpServer(ROUTES, logging.getLogger("test"))
        assert await again.start(host, port) == (host, port)
        await again.stop()

    asyncio.run(main())


def test_the_server_leaves_signal_handlers_alone() -> None:
    async def main() -> None:
        before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        server = HttpServer(ROUTES, logging.getLogger("test"))
        await server.start("127.0.0.1", 0)
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
        await server.stop()

    asyncio.run(main())


class FakeServer:
    """Stands in for uvicorn's server: ``serve`` starts (or not) and then fails (or waits)."""

    def __init__(self, *, starts: bool, fails_after: float | None) -> None:
        self.starts, self.fails_after = starts, fails_after
        self.started = self.should_exit = False

    async def serve(self, sockets: list[socket.socket]) -> None:
        self.started = self.starts
        if self.fails_after is None:
            while not self.should_exit:
                await asyncio.sleep(0.01)
            return
        await asyncio.sleep(self.fails_after)
        raise RuntimeError("serve broke")


def others() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


def test_a_server_that_fails_while_serving_is_logged_at_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(http, "_embedded_server", lambda _: FakeServer(starts=True, fails_after=0))

    async def main() -> None:
        server = HttpServer(ROUTES, logging.getLogger("test"))
        host, port = await server.start("127.0.0.1", 0)
        await asyncio.sleep(0.05)
        assert not others()
        assert f"the metrics endpoint on {host}:{port} failed" in caplog.text
        assert "RuntimeError: serve broke" in caplog.text
        await server.stop()  # returns: the error is in the log

    asyncio.run(main())


@pytest.mark.parametrize(("fails_after", "match"), [(0, "serve broke"), (None, "did not start")])
def test_an_endpoint_that_does_not_come_up_raises_and_leaves_no_task(
    monkeypatch: pytest.MonkeyPatch, fails_after: float | None, match: str
) -> None:
    monkeypatch.setattr(
        http, "_embedded_server", lambda _: FakeServer(starts=False, fails_after=fails_after)
    )
    monkeypatch.setattr(http, "START_TIMEOUT_S", 0.1)

    async def main() -> list[asyncio.Task]:
        with pytest.raises((OSError, RuntimeError), match=match):
            await HttpServer(ROUTES, logging.getLogger("test")).start("127.0.0.1", 0)
        return others()

    assert asyncio.run(main()) == []


def test_a_cancelled_stop_cancels_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    class Slow(FakeServer):
        async def serve(self, sockets: list[socket.socket]) -> None:
            self.started = True
            await asyncio.sleep(60)  # ignores should_exit

    monkeypatch.setattr(http, "_embedded_server", lambda _: Slow(starts=True, fails_after=None))

    async def main() -> list[asyncio.Task]:
        server = HttpServer(ROUTES, logging.getLogger("test"))
        await server.start("127.0.0.1", 0)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(server.stop(), 0.05)
        await asyncio.sleep(0)
        return others()

    assert asyncio.run(main()) == []


def test_without_the_metrics_extra_the_error_names_it() -> None:
    code = (
        "import asyncio, logging, sys\n"
        "sys.modules['uvicorn'] = None  # as if it were not installed\n"
        "from wallaroo.metrics.http import HttpServer\n"
        "try:\n"
        "    asyncio.run(HttpServer({}, logging.getLogger()).start('127.0.0.1', 0))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ConfigurationError --metrics-http needs Starlette and uvicorn")
    assert "pip install 'wallaroo-py[metrics]'" in out.stdout


def test_machida_checks_the_metrics_extra_before_any_source_listens(tmp_path) -> None:
    word_count = Path(__file__).resolve().parents[2] / "examples" / "word_count"
    code = (
        "import sys\n"
        "sys.modules['uvicorn'] = None  # as if it were not installed\n"
        "from wallaroo.cli.machida import main\n"
        "sys.exit(main(['--application-module', 'word_count', '--metrics-http', '0',\n"
        "               '--in', 'Split and Count@127.0.0.1:0', '--out', '127.0.0.1:9']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=word_count, timeout=60
    )
    assert out.returncode == 2, out.stderr
    assert "listening" not in out.stderr
    (error,) = [line for line in out.stderr.splitlines() if "error" in line]
    assert "--metrics-http needs Starlette and uvicorn" in error
    assert "pip install 'wallaroo-py[metrics]'" in error
