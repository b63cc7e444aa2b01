"""The same input means the same thing on SQLite and on PostgreSQL.

PostgreSQL refuses the NUL character in text, SQLite stores it. Once, on PostgreSQL, a NUL
in a path id, in `?user=` or in a key's user was a 503 with the statement's parameters in
an ERROR line, and a NUL inside `message` streamed normally but was never stored (so the
same message sent again ran, and was billed, twice), while SQLite accepted them all. Now
each is a 400 naming its field, on both, before any statement runs. A token whose user or
tenant holds a NUL is refused (401) on both, as a token that names no user.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.auth.jwks_server import AUDIENCE, ISSUER, SigningKeys, serve_jwks
from tests.databases import BACKENDS, database_url
from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import running_service

# (method, target, body, the field the 400 names)
NUL_REQUESTS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/api/messages/m%00x", None, "message_id"),
    ("GET", "/api/messages/m%00x/events", None, "message_id"),
    ("POST", "/api/messages/m%00x/cancel", None, "message_id"),
    ("GET", "/api/conversations/c%00x", None, "conversation_id"),
    ("DELETE", "/api/conversations/c%00x", None, "conversation_id"),
    ("GET", "/api/conversations?user=a%00b", None, "user"),
    ("GET", "/api/conversations?cursor=1.c%00x", None, "cursor"),
    ("GET", "/api/messages/m?user=a%00b", None, "user"),
    ("GET", "/admin/usage?user=a%00b", None, "user"),
    ("DELETE", "/admin/keys/k%00x", None, "key_id"),
    ("POST", "/admin/keys", {"user": "a\x00b"}, "user"),
    ("POST", "/admin/keys", {"user": "bob", "name": "laptop\x00"}, "name"),
    ("POST", "/api/process", {"message": "Why\x00?", "message_id": "m"}, "message"),
]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


async def test_a_nul_anywhere_is_the_same_400_on_both_databases(
    url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    answers = {}
    async with running_service(tmp_path, None, env={"DATABASE_URL": url}) as service:
        for method, target, body, _ in NUL_REQUESTS:
            response = await service.client.request(method, target, json=body)
            answers[(method, target, str(body))] = (
                response.status_code,
                response.json()["error"]["field"] if response.status_code >= 400 else None,
            )
        # Nothing of the refused message was stored: the id is free.
        assert (await service.client.get("/api/messages/m")).status_code == 404
    assert answers == {
        (method, target, str(body)): (400, field) for method, target, body, field in NUL_REQUESTS
    }
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("stream", [False, True])
async def test_a_nul_in_a_v1_message_is_a_400_on_both_databases(
    url: str, tmp_path: Path, stream: bool
) -> None:
    body = {
        "model": "default",
        "messages": [{"role": "user", "content": "Why\x00?"}],
        "metadata": {"message_id": "m"},
        "stream": stream,
    }
    async with running_service(tmp_path, None, env={"DATABASE_URL": url}) as service:
        refused = await service.client.post("/v1/chat/completions", json=body)
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "messages[0].content"
        assert (await service.client.get("/api/messages/m")).status_code == 404


async def test_a_nul_in_a_models_answer_is_stored_the_same_on_both_databases(
    url: str, tmp_path: Path
) -> None:
    """A client cannot send a NUL, but a model can write one. PostgreSQL refused the
    answer and the summary holding it, so the message stayed `running` for good (SQLite
    kept them). Now both keep such text, the NUL as U+FFFD; the stream, and its replay, carry
    the NUL as sent."""
    fake = FakeUpstream(
        {"fake-a": Behaviour(tokens=["a\x00b"]), "fake-summary": Behaviour(tokens=["sum\x00"])}
    )
    env = {"DATABASE_URL": url}
    async with running_service(tmp_path, fake, agents={"alpha": "fake-a"}, env=env) as service:
        sent = await service.client.post("/api/process", json={"message": "Hi?", "message_id": "m"})
        stored = (await service.client.get("/api/messages/m")).json()
        replayed = await service.client.post(
            "/api/process", json={"message": "Hi?", "message_id": "m"}
        )
    assert "event: done" in sent.text
    assert stored["status"] == "completed"
    assert stored["summary"] == "sum\ufffd"
    assert [answer["text"] for answer in stored["agents"]] == ["a\ufffdb"]
    assert replayed.headers["X-Replayed"] == "true"
    assert replayed.text == sent.text
    assert "\\u0000" in sent.text


@pytest.mark.parametrize(
    "claims",
    [{"sub": "a\x00b", "org": "acme"}, {"sub": "alice", "org": "ac\x00me"}],
    ids=["user", "tenant"],
)
async def test_a_nul_in_a_tokens_user_or_tenant_is_a_401_on_both_databases(
    url: str, tmp_path: Path, claims: dict[str, str]
) -> None:
    """Was: on PostgreSQL, the message ran unrecorded and the caller's history was a 503;
    on SQLite, both worked."""
    keys = SigningKeys()
    keys.add("rsa-1", "rsa")
    env = {
        "DATABASE_URL": url,
        "AUTH": "jwt",
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
        "JWT_TENANT_CLAIM": "org",
    }
    async with trio.open_nursery() as nursery:
        env["JWT_JWKS_URL"] = await nursery.start(serve_jwks, keys)
        async with running_service(tmp_path, None, env=env) as service:
            headers = {"Authorization": f"Bearer {keys.token('rsa-1', **claims)}"}
            sent = await service.client.post(
                "/api/process", json={"message": "Hi?", "message_id": "m"}, headers=headers
            )
            listed = await service.client.get("/api/conversations", headers=headers)
            honest = {"Authorization": f"Bearer {keys.token('rsa-1', sub='alice', org='acme')}"}
            unstored = await service.client.get("/api/messages/m", headers=honest)
        nursery.cancel_scope.cancel()
    assert (sent.status_code, listed.status_code) == (401, 401)
    assert sent.json()["error"]["code"] == "unauthenticated"
    assert unstored.status_code == 404
