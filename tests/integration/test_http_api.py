"""Everything but the happy stream: validation errors, limits, health, readiness, draining."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import httpx
import pytest
import trio

from tests.fake_upstream import FakeUpstream
from tests.integration.harness import host_port, running_service

GOOD = {"message": "hi", "message_id": "m-1"}


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert set(error) == {"code", "message", "field"}
    return error


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"message_id": "m"}, "message", "message: is required"),
        ({"message": " ", "message_id": "m"}, "message", "message: must not be blank"),
        ({"message": "x" * 51, "message_id": "m"}, "message", "at most 50 characters"),
        ({"message": "hi", "message_id": "m" * 129}, "message_id", "at most 128 characters"),
        ({"message": "hi", "message_id": "m", "conversation_id": 7}, "conversation_id", "string"),
    ],
)
async def test_invalid_fields_get_a_400_that_names_the_field(
    tmp_path: Path, body: dict[str, object], field: str, says: str
) -> None:
    async with running_service(tmp_path, None, env={"MAX_MESSAGE_CHARS": "50"}) as service:
        response = await service.client.post("/api/process", json=body)
    error = assert_envelope(response, 400, "invalid_request")
    assert error["field"] == field
    assert says in error["message"]


async def test_malformed_json_and_wrong_content_type(tmp_path: Path) -> None:
    async with running_service(tmp_path, None) as service:
        malformed = await service.client.post(
            "/api/process", content=b'{"message": ', headers={"content-type": "application/json"}
        )
        plain = await service.client.post(
            "/api/process", content=b"hi", headers={"content-type": "text/plain"}
        )
        form = await service.client.post("/api/process", data={"message": "hi"})
    assert "not valid JSON" in assert_envelope(malformed, 400, "invalid_request")["message"]
    assert_envelope(plain, 415, "unsupported_media_type")
    assert_envelope(form, 415, "unsupported_media_type")


async def raw_exchange(url: str, head: bytes, body_chunks: list[bytes]) -> tuple[bytes, bytes]:
    """Send a request over a plain socket while reading the answer; (head, body) of the reply.

    A client library would finish uploading before it reads, and the server refuses to read an
    oversized body, so only a client that reads while it writes sees the early 413.
    """
    stream = await trio.open_tcp_stream(*host_port(url))
    received = b""

    async def upload() -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            for chunk in body_chunks:
                await stream.send_all(chunk)

    async with stream, trio.open_nursery() as nursery:
        await stream.send_all(head)
        nursery.start_soon(upload)
        with trio.fail_after(5):
            while b"\r\n\r\n" not in received:
                received += await stream.receive_some()
            reply_head, _, body = received.partition(b"\r\n\r\n")
            length = int(reply_head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += await stream.receive_some()
        nursery.cancel_scope.cancel()
    return reply_head, body


async def test_a_body_over_one_mebibyte_is_refused_with_413(tmp_path: Path) -> None:
    fake = FakeUpstream()
    over = 1024 * 1024 + 1
    async with running_service(tmp_path, fake) as service:
        declared_head, declared_body = await raw_exchange(
            service.url,
            b"POST /api/process HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {over}\r\n\r\n".encode(),
            [b"x" * over],
        )
        chunk = b"x" * 65536
        chunked_head, chunked_body = await raw_exchange(
            service.url,
            b"POST /api/process HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            [b"10000\r\n" + chunk + b"\r\n"] * 17 + [b"0\r\n\r\n"],
        )
        still_serving = await service.client.get("/healthz")

    for head, body in ((declared_head, declared_body), (chunked_head, chunked_body)):
        assert head.startswith(b"HTTP/1.1 413")
        assert b"connection: close" in head.lower()
        assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert still_serving.status_code == 200
    assert fake.calls == []


async def test_unknown_routes_and_methods_use_the_same_envelope(tmp_path: Path) -> None:
    async with running_service(tmp_path, None) as service:
        missing = await service.client.get("/nope")
        wrong_method = await service.client.get("/api/process")
    assert assert_envelope(missing, 404, "not_found")["field"] is None
    assert_envelope(wrong_method, 405, "method_not_allowed")
    assert "POST" in wrong_method.headers["allow"]


async def test_health_and_readiness(tmp_path: Path) -> None:
    async with running_service(tmp_path, None) as service:
        health = await service.client.get("/healthz")
        ready = await service.client.get("/readyz")
        service.resources.lifecycle.begin_draining()
        draining = await service.client.get("/readyz")
        refused = await service.client.post("/api/process", json=GOOD)
        still_alive = await service.client.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert draining.status_code == 503
    assert draining.json()["status"] == "draining"
    assert_envelope(refused, 503, "shutting_down")
    assert still_alive.status_code == 200
