"""Every caller against every operation of the published document, so a new route is in
the matrix the moment it is documented. What each caller may do follows from the route's
`x-access` alone; what the owner's rows may reach is checked by a marker in alice's
question, and by her rows still being there after everyone else has tried them. Each
answer also has to be one the document gives that operation."""

from __future__ import annotations

from pathlib import Path

from tests.auth.test_access import World, call, make_key, world
from tests.contract.conftest import concrete, operations, published, response_problems

# alice's own keys come last: they may delete her rows, so the others go first.
STRANGERS = ("anonymous", "revoked", "expired", "metrics-token", "bob", "carol", "admin")
OWNERS = ("process-only", "history-only", "alice")
# Refused with 401 (no caller it knows; a scrape token is no key), the others with 403.
UNIDENTIFIED = {"anonymous", "revoked", "expired", "metrics-token"}
# Who may pass each kind of route's door (its rows are another question).
MAY = {
    "open": set(STRANGERS + OWNERS),
    "metrics": {"admin", "metrics-token"},
    "admin": {"admin"},
    "history": {"bob", "carol", "admin", "history-only", "alice"},
    "process": {"bob", "carol", "admin", "process-only", "alice"},
}


async def alices_rows_are_there(w: World) -> bool:
    conversation = await call(w, "alice", "GET", f"/api/conversations/{w.conversation}")
    message = await call(w, "alice", "GET", "/api/messages/m-alice")
    return conversation.status_code == message.status_code == 200


async def test_every_caller_on_every_documented_operation(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        document = await published(w.service.client)
        _, victim = await make_key(w.service, "victim")
        values = {
            "conversation_id": w.conversation,
            "message_id": "m-alice",
            "key_id": victim,
            "model_id": "default",
            "name": "app.js",
            "evaluation_id": "ev-none",
        }
        failures: list[str] = []
        asked = 0
        for callers in (STRANGERS, OWNERS):
            for method, template, operation in operations(document):
                path = concrete(template, values)
                body = {"json": {}} if "requestBody" in operation else {}
                for who in callers:
                    response = await call(w, who, method, path, **body)
                    asked += 1
                    status = response.status_code
                    where = f"{who} {method} {template}: {status}"
                    access = operation["x-access"]
                    if who in MAY[access]:
                        if status in (401, 403):
                            failures.append(f"{where}, but it may")
                    elif status != (401 if who in UNIDENTIFIED else 403):
                        failures.append(f"{where}, but it may not")
                    if who in STRANGERS and "ALICE-PRIVATE" in response.text:
                        failures.append(f"{where} showed alice's question")
                    failures += [
                        f"{where}: {p}"
                        for p in response_problems(document, method, template, response)
                    ]
            if callers == STRANGERS and not await alices_rows_are_there(w):
                failures.append("alice's rows are gone after the strangers' calls")
    assert failures == []
    assert asked == len(list(operations(document))) * (len(STRANGERS) + len(OWNERS))
