"""Every answer tells the browser not to guess its type (`X-Content-Type-Options:
nosniff`): JSON that holds a client's text (an error naming what it sent, a stored
question) must never be read as HTML or script."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.clients import exchange, headers_of
from tests.hostile.test_bad_input import raw_service
from tests.integration.harness import running_service

REQUESTS = {
    "a JSON answer": ("GET", "/healthz", None),
    "the published contract": ("GET", "/openapi.json", None),
    "a 400 envelope": ("POST", "/api/process", {"message": "<script>", "message_id": ""}),
    "a 404 envelope": ("GET", "/api/messages/m-none", None),
    "an unknown route": ("GET", "/no/such/route", None),
    "a /v1 error": ("POST", "/v1/chat/completions", {"model": "default", "messages": []}),
    "an event stream": ("POST", "/api/process", {"message": "Hi?", "message_id": "m-1"}),
    "a 204": ("DELETE", "/api/conversations/c-none", None),
}


async def test_every_answer_says_nosniff(tmp_path: Path) -> None:
    seen = {}
    async with running_service(tmp_path, None) as service:
        for name, (method, target, body) in REQUESTS.items():
            response = await service.client.request(method, target, json=body)
            seen[name] = response.headers.get("X-Content-Type-Options")
    assert seen == dict.fromkeys(REQUESTS, "nosniff")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /api/process HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    ],
)
async def test_the_parsers_refusals_say_nosniff(tmp_path: Path, request_bytes: bytes) -> None:
    async with raw_service(tmp_path) as (host, port):
        reply = await exchange(host, port, request_bytes)
    assert headers_of(reply).get("x-content-type-options") == "nosniff", reply
