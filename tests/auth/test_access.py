"""Who may do what, over HTTP with AUTH=keys: every kind of caller against every route, on
its own rows, another user's, another tenant's and missing ones. No response to anyone but
the owner (or the owner's tenant admin, asked for it) ever holds the owner's data."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import trio

from service.auth.keys import issue_key
from service.storage.keys import revoke_key
from tests.integration.harness import RunningService, running_service

SECRET_QUESTION = "What is ALICE-PRIVATE-QUESTION about?"
METRICS_TOKEN = "scrape-token-0123456789"
CALLERS = (
    "anonymous",
    "alice",
    "bob",
    "carol",
    "admin",
    "revoked",
    "expired",
    "history-only",
    "process-only",
)
_ids = itertools.count()


@dataclass
class World:
    service: RunningService
    keys: dict[str, str]
    key_ids: dict[str, str]
    conversation: str


async def make_key(service: RunningService, name: str, **kw: object) -> tuple[str, str]:
    store = service.resources.store
    assert store is not None
    options: dict[str, object] = {
        "user": "alice",
        "tenant": "acme",
        "role": "user",
        "scopes": frozenset(),
        "expires_in": None,
        "name": name,
    }
    options |= kw
    key, record = await store.read(lambda c: issue_key(c, **options))  # type: ignore[arg-type]
    return key, record.id


@asynccontextmanager
async def world(tmp_path: Path, **env: str) -> AsyncIterator[World]:
    settings = {
        "AUTH": "keys",
        "AUTH_CACHE_S": "0",
        "METRICS_TOKEN": METRICS_TOKEN,
        "AUTH_FAILURE_BURST": "1000",
        **env,
    }
    async with running_service(tmp_path, None, env=settings) as service:
        keys: dict[str, str] = {}
        ids: dict[str, str] = {}
        specs: dict[str, dict[str, object]] = {
            "alice": {},
            "bob": {"user": "bob"},
            "carol": {"user": "carol", "tenant": "globex"},
            "admin": {"user": "root", "role": "admin"},
            "revoked": {},
            "expired": {"expires_in": timedelta(seconds=1)},
            "history-only": {"scopes": frozenset({"history"})},
            "process-only": {"scopes": frozenset({"process"})},
        }
        for name, spec in specs.items():
            keys[name], ids[name] = await make_key(service, name, **spec)
        store = service.resources.store
        assert store is not None
        await store.read(lambda c: revoke_key(c, key_id=ids["revoked"], tenant=None))
        headers = {"Authorization": f"Bearer {keys['alice']}"}
        response = await service.client.post(
            "/api/process",
            json={"message": SECRET_QUESTION, "message_id": "m-alice"},
            headers=headers,
        )
        assert response.status_code == 200
        conversation = response.headers["X-Conversation-Id"]
        await trio.sleep(1.1)  # the expired key's second is over
        yield World(service, keys, ids, conversation)


async def call(world: World, who: str, method: str, path: str, **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {world.keys[who]}"} if who in world.keys else {}
    if who == "metrics-token":
        headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    return await world.service.client.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]


REFUSED = {"anonymous": 401, "revoked": 401, "expired": 401}


def expect(table: dict[str, int], default: int) -> dict[str, int]:
    return {who: table.get(who, REFUSED.get(who, default)) for who in CALLERS}


# (method, path, expected status per caller). `{c}` is alice's conversation id.
MATRIX: list[tuple[str, str, dict[str, int]]] = [
    ("GET", "/api/conversations", expect({"process-only": 403}, 200)),
    (
        "GET",
        "/api/conversations/{c}",
        expect({"alice": 200, "history-only": 200, "process-only": 403}, 404),
    ),
    (
        "GET",
        "/api/conversations/{c}?user=alice",
        expect(
            {"alice": 200, "history-only": 200, "admin": 200, "process-only": 403, "carol": 403},
            403,
        ),
    ),
    ("GET", "/api/conversations/nope", expect({"process-only": 403}, 404)),
    (
        "GET",
        "/api/messages/m-alice",
        expect({"alice": 200, "history-only": 200, "process-only": 403}, 404),
    ),
    (
        "GET",
        "/api/messages/m-alice?user=alice",
        expect(
            {"alice": 200, "history-only": 200, "admin": 200, "process-only": 403, "carol": 403},
            403,
        ),
    ),
    (
        "GET",
        "/api/messages/m-alice/events",
        expect({"alice": 200, "process-only": 200, "history-only": 403}, 404),
    ),
    ("GET", "/api/messages/nope", expect({"process-only": 403}, 404)),
    (
        "POST",
        "/api/messages/m-alice/cancel",
        expect({"alice": 409, "process-only": 409, "history-only": 403}, 404),
    ),
    ("DELETE", "/api/conversations/nope", expect({"process-only": 403}, 404)),
    ("GET", "/api/usage", expect({"process-only": 403}, 200)),
    ("GET", "/admin/usage", expect({"admin": 200}, 403)),
    ("GET", "/admin/keys", expect({"admin": 200}, 403)),
    ("GET", "/admin/ensemble", expect({"admin": 200}, 403)),
    ("GET", "/metrics", expect({"admin": 200}, 403)),
    ("GET", "/healthz", {who: 200 for who in CALLERS}),
    ("GET", "/readyz", {who: 200 for who in CALLERS}),
    ("GET", "/no/such/route", expect({}, 404)),
]


async def test_every_caller_on_every_route_gets_what_it_may_and_nothing_more(
    tmp_path: Path,
) -> None:
    failures = []
    async with world(tmp_path) as w:
        for method, template, expected in MATRIX:
            path = template.replace("{c}", w.conversation)
            for who in CALLERS:
                response = await call(w, who, method, path)
                if response.status_code != expected[who]:
                    failures.append(
                        f"{who} {method} {path}: {response.status_code}, not {expected[who]}"
                    )
                sees_alice = who in ("alice", "history-only", "process-only") or (
                    who == "admin" and "user=alice" in path
                )
                if not sees_alice:
                    assert "ALICE-PRIVATE" not in response.text, (who, path)
                if response.status_code == 401:
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
                    assert response.json()["error"]["code"] == "unauthenticated"
                if response.status_code == 403:
                    assert response.json()["error"]["code"] == "forbidden"
        for who in CALLERS:
            payload = {"message": "Hi?", "message_id": f"m-{who}-{next(_ids)}"}
            response = await call(w, who, "POST", "/api/process", json=payload)
            allowed = 401 if who in REFUSED else 403 if who == "history-only" else 200
            if response.status_code != allowed:
                failures.append(f"{who} POST /api/process: {response.status_code}, not {allowed}")
        scraped = await call(w, "metrics-token", "GET", "/metrics")
        not_for_scrapers = await call(w, "metrics-token", "GET", "/api/conversations")
    assert failures == []
    assert scraped.status_code == 200
    assert not_for_scrapers.status_code == 401


async def test_deleting_another_users_conversation_is_a_404_and_deletes_nothing(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        for who in ("bob", "carol", "admin"):
            response = await call(w, who, "DELETE", f"/api/conversations/{w.conversation}")
            assert response.status_code == 404, who
        still = await call(w, "alice", "GET", f"/api/conversations/{w.conversation}")
        assert still.status_code == 200
        by_admin = await call(
            w, "admin", "DELETE", f"/api/conversations/{w.conversation}?user=alice"
        )
        gone = await call(w, "alice", "GET", f"/api/conversations/{w.conversation}")
    assert by_admin.status_code == 204
    assert gone.status_code == 404


async def test_two_users_may_both_use_the_same_message_id(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        payload = {"message": "Mine?", "message_id": "m-alice"}
        bobs = await call(w, "bob", "POST", "/api/process", json=payload)
        alices = await call(w, "alice", "GET", "/api/messages/m-alice")
    assert bobs.status_code == 200
    assert "X-Replayed" not in bobs.headers  # a run of bob's own, not alice's replayed
    assert "ALICE-PRIVATE" not in bobs.text
    assert alices.json()["question"] == SECRET_QUESTION


async def test_admins_manage_keys_of_their_own_tenant_only(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        listed = (await call(w, "admin", "GET", "/admin/keys")).json()["keys"]
        created = await call(
            w,
            "admin",
            "POST",
            "/admin/keys",
            json={"user": "dave", "scopes": ["process"], "expires": "30d", "name": "ci"},
        )
        new_key = created.json()["key"]
        works = await w.service.client.post(
            "/api/process",
            json={"message": "Hi?", "message_id": "m-dave"},
            headers={"X-API-Key": new_key},
        )
        foreign = await call(w, "admin", "DELETE", f"/admin/keys/{w.key_ids['carol']}")
        revoked = await call(w, "admin", "DELETE", f"/admin/keys/{created.json()['id']}")
        refused = await w.service.client.get(
            "/api/messages/m-dave/events", headers={"X-API-Key": new_key}
        )
        bad = await call(w, "admin", "POST", "/admin/keys", json={"user": "x", "expires": "soon"})
    assert {k["tenant"] for k in listed} == {"acme"}
    assert all("key" not in k and "hash" not in k for k in listed)
    assert created.status_code == 201
    assert created.json()["scopes"] == ["process"]
    assert new_key.startswith("fo_")
    assert works.status_code == 200
    assert foreign.status_code == 404
    assert revoked.status_code == 204
    assert refused.status_code == 401
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "expires")


async def test_a_revoked_key_stops_within_the_cache_bound(tmp_path: Path) -> None:
    async with world(tmp_path, AUTH_CACHE_S="1") as w:
        before = await call(w, "bob", "GET", "/api/conversations")
        store = w.service.resources.store
        assert store is not None
        await store.read(lambda c: revoke_key(c, key_id=w.key_ids["bob"], tenant=None))
        revoked_at = trio.current_time()
        # The bound itself, not a request's latency on a loaded machine: a request that
        # starts AUTH_CACHE_S after the revoke finds no cached answer older than that.
        await trio.sleep_until(revoked_at + 1.0)
        after_the_bound = await call(w, "bob", "GET", "/api/conversations")
    assert before.status_code == 200
    assert after_the_bound.status_code == 401


async def test_failed_sign_ins_from_one_address_are_limited(tmp_path: Path) -> None:
    async with world(tmp_path, AUTH_FAILURE_BURST="10", AUTH_FAILURE_EVERY_S="60") as w:
        statuses = []
        for _ in range(12):
            response = await w.service.client.get(
                "/api/conversations", headers={"Authorization": "Bearer fo_not-a-key"}
            )
            statuses.append(response.status_code)
        good_but_limited = await call(w, "alice", "GET", "/api/conversations")
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]
    assert good_but_limited.status_code == 429
    assert good_but_limited.json()["error"]["code"] == "rate_limited"


async def test_a_spoofed_forwarded_for_does_not_escape_the_sign_in_limit(tmp_path: Path) -> None:
    """Each guess claims another address, in both headers: from an untrusted peer neither
    counts, so every guess is charged to the peer itself."""
    async with world(tmp_path, AUTH_FAILURE_BURST="5", AUTH_FAILURE_EVERY_S="60") as w:
        statuses = []
        for number in range(7):
            claimed = f"203.0.113.{number}"
            response = await w.service.client.get(
                "/api/conversations",
                headers={
                    "Authorization": "Bearer fo_not-a-key",
                    "X-Forwarded-For": claimed,
                    "Forwarded": f"for={claimed}",
                },
            )
            statuses.append(response.status_code)
    assert statuses == [401] * 5 + [429] * 2


async def test_no_key_reaches_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        async with world(tmp_path) as w:
            for who in ("alice", "revoked", "expired", "history-only"):
                await call(
                    w, who, "POST", "/api/process", json={"message": "Hi", "message_id": f"x-{who}"}
                )
            await w.service.client.get("/api/conversations", headers={"X-API-Key": "fo_garbage"})
            keys = list(w.keys.values())
    text = "\n".join(
        record.getMessage() + " " + " ".join(str(v) for v in record.__dict__.values())
        for record in caplog.records
    )
    assert "refused a caller" in text  # the refusals were logged, with their reason
    assert "revoked" in text
    for key in keys:
        assert key not in text
        assert key[12:] not in text  # not even its secret part
