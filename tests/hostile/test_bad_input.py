"""Bad input is a 4xx with the JSON error envelope, never a 5xx, a hang or an empty body.

Each case here was answered wrongly once: a 500, a smuggling-shaped request accepted and its
connection kept, OPTIONS as an empty text/html 200, an encoded slash routed as a slash, and
the parser's own refusals with no body at all.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests.hostile.clients import envelope_of, exchange, headers_of, status_of
from tests.integration.harness import host_port, running_service

ROUTES_AND_METHODS = {
    "/api/process": "OPTIONS, POST",
    "/admin/ensemble": "GET, HEAD, OPTIONS",
    "/metrics": "GET, HEAD, OPTIONS",
    "/healthz": "GET, HEAD, OPTIONS",
    "/readyz": "GET, HEAD, OPTIONS",
}


@asynccontextmanager
async def raw_service(tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    async with running_service(tmp_path, None) as service:
        yield host_port(service.url)


async def closed_after(stream: trio.SocketStream, reply: bytes) -> bytes:
    """Read the rest: what follows `reply` before the server closes (b"" if nothing)."""
    rest = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some():
            rest += chunk
    return rest[len(reply) :] if rest.startswith(reply) else rest


async def test_an_integer_longer_than_pythons_digit_limit_is_a_400(tmp_path: Path) -> None:
    body = b'{"message": ' + b"9" * 5000 + b', "message_id": "m"}'
    request = (
        b"POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    async with raw_service(tmp_path) as (host, port):
        reply = await exchange(host, port, request)
    assert status_of(reply) == 400
    assert envelope_of(reply) == {
        "code": "invalid_request",
        "message": "the body holds a number with too many digits",
        "field": None,
    }


async def test_content_length_with_transfer_encoding_is_refused_and_closed(
    tmp_path: Path,
) -> None:
    request = (
        b"POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"  # smuggled: must never be answered
    )
    async with raw_service(tmp_path) as (host, port):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(request)
            reply = await closed_after(stream, b"")
    assert status_of(reply) == 400
    assert headers_of(reply)["connection"] == "close"
    assert envelope_of(reply)["field"] == "Transfer-Encoding"
    assert reply.count(b"HTTP/1.1 ") == 1, reply


@pytest.mark.parametrize("route", sorted(ROUTES_AND_METHODS))
async def test_options_is_an_empty_204_with_allow(tmp_path: Path, route: str) -> None:
    async with raw_service(tmp_path) as (host, port):
        reply = await _options(host, port, route)
    assert status_of(reply) == 204
    headers = headers_of(reply)
    assert headers["allow"] == ROUTES_AND_METHODS[route]
    assert "content-type" not in headers
    assert "content-length" not in headers


async def _options(host: str, port: int, route: str) -> bytes:
    request = f"OPTIONS {route} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(request)
        return await closed_after(stream, b"")


async def test_options_on_an_unknown_route_is_a_404(tmp_path: Path) -> None:
    async with raw_service(tmp_path) as (host, port):
        reply = await _options(host, port, "/nope")
    assert status_of(reply) == 404
    assert envelope_of(reply)["code"] == "not_found"


@pytest.mark.parametrize(
    "target", ["/admin%2fensemble", "/admin%2Fensemble", "/api%2Fprocess", "%2Fhealthz"]
)
async def test_an_encoded_slash_does_not_route_as_a_slash(tmp_path: Path, target: str) -> None:
    method = "POST" if "process" in target else "GET"
    request = f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    async with raw_service(tmp_path) as (host, port):
        reply = await exchange(host, port, request)
        # The same route spelled plainly, or with other escapes, still routes.
        plain = await exchange(
            host, port, b"GET /%61dmin/ensemble HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    assert status_of(reply) == 404
    assert envelope_of(reply)["code"] == "not_found"
    assert status_of(plain) == 200


PARSER_REFUSALS = {
    "bad chunk size": (
        b"POST /api/process HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "invalid_request",
    ),
    "two content lengths": (
        b"POST /api/process HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        400,
        "invalid_request",
    ),
    "a NUL in a header": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
        400,
        "invalid_request",
    ),
    "no Host": (b"GET /healthz HTTP/1.1\r\n\r\n", 400, "invalid_request"),
    "huge headers": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        431,
        "headers_too_large",
    ),
    "an unknown transfer coding": (
        b"POST /api/process HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
        "transfer_coding_not_supported",
    ),
}


@pytest.mark.parametrize("case", sorted(PARSER_REFUSALS))
async def test_the_parsers_refusals_carry_the_envelope(tmp_path: Path, case: str) -> None:
    request, status, code = PARSER_REFUSALS[case]
    async with raw_service(tmp_path) as (host, port):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(request)
            reply = await closed_after(stream, b"")
    assert status_of(reply) == status, reply
    assert headers_of(reply)["content-type"] == "application/json", reply
    error = envelope_of(reply)
    assert error["code"] == code
    assert error["message"]
    assert json.loads(reply.partition(b"\r\n\r\n")[2]) == {"error": error}
