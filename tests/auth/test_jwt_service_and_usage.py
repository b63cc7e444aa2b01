"""AUTH=jwt end to end (a JWKS served over HTTP, claims for tenant and roles), and the usage
ledger adding up exactly what the `done` events reported."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import trio

from tests.auth.jwks_server import AUDIENCE, ISSUER, SigningKeys, serve_jwks
from tests.fake_upstream import FakeUpstream
from tests.integration.harness import read_events, running_service


async def test_a_jwt_service_scopes_rows_by_the_tokens_tenant_and_role(tmp_path: Path) -> None:
    keys = SigningKeys()
    keys.add("k1", "ec")
    async with trio.open_nursery() as nursery:
        jwks_url = await nursery.start(serve_jwks, keys)
        env = {
            "AUTH": "jwt",
            "JWT_JWKS_URL": jwks_url,
            "JWT_ISSUER": ISSUER,
            "JWT_AUDIENCE": AUDIENCE,
            "JWT_TENANT_CLAIM": "org",
            "JWT_ROLES_CLAIM": "realm_access.roles",
        }
        async with running_service(tmp_path, None, env=env) as service:

            def bearer(**claims: object) -> dict[str, str]:
                return {"Authorization": f"Bearer {keys.token('k1', **claims)}"}

            alice = bearer(sub="alice", org="acme")
            admin = bearer(sub="root", org="acme", realm_access={"roles": ["admin"]})
            other_admin = bearer(sub="root", org="globex", realm_access={"roles": ["admin"]})
            ran = await service.client.post(
                "/api/process", json={"message": "Hi?", "message_id": "m-1"}, headers=alice
            )
            mine = await service.client.get("/api/messages/m-1", headers=alice)
            tenant_admin = await service.client.get("/api/messages/m-1?user=alice", headers=admin)
            foreign_admin = await service.client.get(
                "/api/messages/m-1?user=alice", headers=other_admin
            )
            no_tenant = await service.client.get("/api/usage", headers=bearer(sub="x"))
            user_on_admin = await service.client.get("/admin/ensemble", headers=alice)
            keys.up = False  # the provider goes away: known keys keep working
            still = await service.client.get("/api/usage", headers=alice)
        nursery.cancel_scope.cancel()
    assert ran.status_code == 200
    assert mine.json()["question"] == "Hi?"
    assert tenant_admin.status_code == 200
    assert foreign_admin.status_code == 404
    assert no_tenant.status_code == 401
    assert user_on_admin.status_code == 403
    assert still.status_code == 200


async def test_usage_adds_up_to_what_the_done_events_reported(tmp_path: Path) -> None:
    async with running_service(tmp_path, FakeUpstream()) as service:
        reported: Counter[tuple[str, str]] = Counter()
        for number in range(3):
            payload = {"message": f"Question {number}?", "message_id": f"m-{number}"}
            async with service.client.stream("POST", "/api/process", json=payload) as response:
                done = (await read_events(response))[-1]
            assert done.event == "done"
            for caller, used in done.data["usage"].items():
                model = done.data["models"][caller]
                reported[(model, "prompt")] += used["prompt_tokens"]
                reported[(model, "completion")] += used["completion_tokens"]
                reported[(model, "calls")] += 1
        own = (await service.client.get("/api/usage")).json()
        tenant = (await service.client.get("/admin/usage?from=2000-01-01&to=2999-12-31")).json()
        none_yet = (await service.client.get("/admin/usage?to=2000-01-01")).json()
        bad_day = await service.client.get("/api/usage?from=yesterday")
    ledger: Counter[tuple[str, str]] = Counter()
    for line in own["usage"]:
        ledger[(line["model"], "prompt")] += line["prompt_tokens"]
        ledger[(line["model"], "completion")] += line["completion_tokens"]
        ledger[(line["model"], "calls")] += line["calls"]
    assert ledger == reported
    assert tenant["total"] == own["total"]
    assert none_yet["usage"] == []
    assert (bad_day.status_code, bad_day.json()["error"]["field"]) == (400, "from")


async def test_prices_add_a_cost_to_each_line(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."fake-summary"]\ninput = 1.0\noutput = 2.0\n')
    async with running_service(
        tmp_path, FakeUpstream(), env={"PRICES_FILE": str(prices)}
    ) as service:
        await service.client.post("/api/process", json={"message": "Hi?", "message_id": "m"})
        lines = (await service.client.get("/api/usage")).json()["usage"]
    priced = {line["model"]: line["cost"] for line in lines}
    summary = next(line for line in lines if line["model"] == "fake-summary")
    expected = (summary["prompt_tokens"] * 1.0 + summary["completion_tokens"] * 2.0) / 1e6
    assert priced["fake-summary"] == round(expected, 6)
    assert priced["fake-a"] is None  # no price known
