"""The metrics HTTP server: routes, methods, bad and oversized requests, handler failures."""

import asyncio
import json
import logging

import pytest

from wallaroo.metrics import http
from wallaroo.metrics.http import HttpServer, Request, Response, parse_head


def boom(_: Request) -> Response:
    raise RuntimeError("broken handler")


ROUTES = {
    "/hello": lambda r: Response(json.dumps(dict(r.query)).encode(), "application/json"),
    "/boom": boom,
}


async def exchange(server: HttpServer, raw: bytes, *, close_write: bool = False) -> bytes:
    host, port = server.address
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(raw)
    if close_write:
        writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


def run(*requests: bytes, close_write: bool = False) -> list[bytes]:
    async def main() -> list[bytes]:
        server = HttpServer(ROUTES, logging.getLogger("test"))
        await server.start("127.0.0.1", 0)
        try:
            return [await exchange(server, r, close_write=close_write) for r in requests]
        finally:
            await server.stop()

    return asyncio.run(main())


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_get_head_404_405_and_500(caplog):
    ok, head, missing, post, broken = run(
        b"GET /hello?a=1&b=x%20y HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD /hello HTTP/1.1\r\n\r\n",
        b"GET /nope HTTP/1.0\r\n\r\n",
        b"POST /hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"GET /boom HTTP/1.1\r\n\r\n",
    )
    assert status(ok) == 200
    headers, body = ok.split(b"\r\n\r\n", 1)
    assert json.loads(body) == {"a": "1", "b": "x y"}
    assert b"Content-Length: %d" % len(body) in headers and b"Connection: close" in headers
    assert status(head) == 200 and head.endswith(b"\r\n\r\n")  # no body for HEAD
    assert status(missing) == 404
    assert status(post) == 405 and b"Allow: GET, HEAD" in post
    assert status(broken) == 500 and b"broken handler" not in broken
    assert "metrics endpoint /boom failed" in caplog.text


@pytest.mark.parametrize(
    "raw",
    [
        b"garbage\r\n\r\n",
        b"GET /x HTTP/2\r\n\r\n",
        b"GET x HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nbad\r\n\r\n",
    ],
)
def test_malformed_requests_get_400(raw):
    (response,) = run(raw)
    assert status(response) == 400


def test_an_oversized_head_gets_431():
    (response,) = run(b"GET / HTTP/1.1\r\nX: " + b"a" * (http.MAX_HEAD + 10) + b"\r\n\r\n")
    assert status(response) == 431


def test_a_client_that_leaves_early_gets_nothing_and_the_server_carries_on():
    gone, ok = run(b"GET /hel", b"GET /hello HTTP/1.1\r\n\r\n", close_write=True)
    assert gone == b""
    assert status(ok) == 200


def test_a_slow_client_is_timed_out(monkeypatch):
    monkeypatch.setattr(http, "HEAD_TIMEOUT_S", 0.2)
    (response,) = run(b"GET /hello HTTP/1.1\r\n")
    assert status(response) == 408


def test_parse_head_reads_headers_case_insensitively():
    req = parse_head(b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nX-Thing:  v ")
    assert (req.method, req.path, dict(req.query)) == ("GET", "/a b", {"x": "1"})
    assert req.headers == {"host": "h", "x-thing": "v"}
