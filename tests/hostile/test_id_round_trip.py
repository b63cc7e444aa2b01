"""Any id is either refused with a 400 naming its field, or comes back intact: from the
store, in the response header, in the events, at its own path, on replay and through /v1.

Hypothesis draws the ids (printable ASCII mixed with what once broke something: CR, LF,
NUL, a tab, DEL, `/`, a space, dots, non-ASCII); the rule they are held to is written here
on its own, as docs/security.md states it, not imported from the service.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import trio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.auth.test_access import make_key
from tests.integration.harness import running_service

QUESTION = "Why is the sky blue?"
EXAMPLES = 40
FAST_MOCK = {"MOCK_FIRST_TOKEN_MS": "1", "MOCK_TOKEN_MS": "0"}

IDS = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.sampled_from(["\r", "\n", "\x00", "\t", "\x7f", "/", " ", ".", "é", "\u2028"]),
    ),
    max_size=130,
)
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def follows_the_rule(value: str) -> bool:
    """docs/security.md: printable ASCII without the space and `/`, 1 to 128 characters,
    and not `.` or `..`."""
    return (
        1 <= len(value) <= 128
        and all("!" <= character <= "~" and character != "/" for character in value)
        and value not in (".", "..")
    )


def at(path: str, value: str) -> str:
    return path.format(quote(value, safe=""))


def events(text: str) -> list[tuple[str, str]]:
    """(event, data) of each frame of a stream."""
    found = []
    for frame in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.split("\n") if ": " in line)
        if "event" in fields:
            found.append((fields["event"], fields.get("data", "")))
    return found


def process(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post("/api/process", json={"message": QUESTION, **body})


def refused_naming(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


async def run_property(tmp_path: Path, check: Callable[[httpx.Client], None]) -> None:
    async with running_service(tmp_path, None, env=FAST_MOCK) as service:

        def in_thread() -> None:
            with httpx.Client(base_url=service.url, timeout=10) as client:
                check(client)

        await trio.to_thread.run_sync(in_thread)


async def test_any_conversation_id_is_refused_or_round_trips(tmp_path: Path) -> None:
    numbers = itertools.count()

    def check(client: httpx.Client) -> None:
        @PROPERTY
        @given(conversation_id=IDS)
        def round_trip(conversation_id: str) -> None:
            message_id = f"m-{next(numbers)}"
            sent = {"message_id": message_id, "conversation_id": conversation_id}
            answered = process(client, sent)
            if not follows_the_rule(conversation_id):
                refused_naming(answered, "conversation_id")
                assert client.get(at("/api/messages/{}", message_id)).status_code == 404
                return
            assert answered.status_code == 200, answered.text
            assert answered.headers["X-Conversation-Id"] == conversation_id
            assert events(answered.text)[-1][0] == "done"
            stored = client.get(at("/api/messages/{}", message_id)).json()
            assert stored["conversation_id"] == conversation_id
            conversation = client.get(at("/api/conversations/{}", conversation_id))
            assert conversation.status_code == 200, conversation.text
            assert conversation.json()["id"] == conversation_id
            again = process(client, sent)
            assert again.headers["X-Replayed"] == "true"
            assert again.headers["X-Conversation-Id"] == conversation_id
            assert events(again.text) == events(answered.text)

        round_trip()

    await run_property(tmp_path, check)


async def test_any_message_id_is_refused_or_round_trips(tmp_path: Path) -> None:
    def check(client: httpx.Client) -> None:
        sent_before: set[str] = set()

        @PROPERTY
        @given(message_id=IDS)
        def round_trip(message_id: str) -> None:
            answered = process(client, {"message_id": message_id})
            if not follows_the_rule(message_id):
                refused_naming(answered, "message_id")
                return
            assert answered.status_code == 200, answered.text
            assert (answered.headers.get("X-Replayed") == "true") == (message_id in sent_before)
            sent_before.add(message_id)
            stored = client.get(at("/api/messages/{}", message_id))
            assert stored.status_code == 200, stored.text
            assert stored.json()["message_id"] == message_id
            resumed = client.get(at("/api/messages/{}/events", message_id))
            assert events(resumed.text) == events(answered.text)
            assert client.post(at("/api/messages/{}/cancel", message_id)).status_code == 409

        round_trip()

    await run_property(tmp_path, check)


async def test_any_v1_metadata_id_is_refused_or_round_trips(tmp_path: Path) -> None:
    """Either metadata id drawn (the other one made fresh): refused naming it, or the same in
    the header and the store; and the same request sent again is the same answer, replayed."""
    numbers = itertools.count()
    used: set[str] = set()

    def check(client: httpx.Client) -> None:
        @PROPERTY
        @given(field=st.sampled_from(["message_id", "conversation_id"]), drawn=IDS)
        def round_trip(field: str, drawn: str) -> None:
            if field == "message_id":
                # A message id sent twice is a replay or a new version: each is drawn once.
                assume(drawn not in used)
                used.add(drawn)
            metadata = {"message_id": f"v-{next(numbers)}", "conversation_id": f"c-{next(numbers)}"}
            metadata[field] = drawn
            body = {
                "model": "default",
                "messages": [{"role": "user", "content": QUESTION}],
                "metadata": metadata,
            }
            answered = client.post("/v1/chat/completions", json=body)
            if not follows_the_rule(drawn):
                assert answered.status_code == 400, answered.text
                assert answered.json()["error"]["param"] == f"metadata.{field}"
                if field == "conversation_id":
                    assert (
                        client.get(at("/api/messages/{}", metadata["message_id"])).status_code
                        == 404
                    )
                return
            assert answered.status_code == 200, answered.text
            assert answered.headers["X-Conversation-Id"] == metadata["conversation_id"]
            stored = client.get(at("/api/messages/{}", metadata["message_id"])).json()
            assert (stored["message_id"], stored["conversation_id"]) == (
                metadata["message_id"],
                metadata["conversation_id"],
            )
            assert (stored["status"], stored["version"]) == ("completed", 1)
            again = client.post("/v1/chat/completions", json=body | {"stream": True})
            assert again.status_code == 200, again.text
            assert again.headers["X-Conversation-Id"] == metadata["conversation_id"]
            streamed = "".join(
                chunk["choices"][0]["delta"].get("content") or ""
                for data in chunks_of(again.text)
                for chunk in [json.loads(data)]
                if chunk.get("choices")
            )
            assert streamed == answered.json()["choices"][0]["message"]["content"]
            # A replay of the stored answer, not a second run: still version 1.
            replayed = client.get(at("/api/messages/{}", metadata["message_id"])).json()
            assert (replayed["version"], replayed["status"]) == (1, "completed")

        round_trip()

    await run_property(tmp_path, check)


def chunks_of(text: str) -> list[str]:
    """The data of each chunk of an OpenAI stream, without the closing [DONE]."""
    return [
        line[6:]
        for line in text.split("\n")
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


async def test_any_key_user_is_refused_or_round_trips(tmp_path: Path) -> None:
    """A key's `user` (POST /admin/keys) and an admin's `?user=`: refused with a 400 naming
    `user`, or the key's caller is that user everywhere: in the key list, its own
    conversations and messages as the admin finds them with `?user=`, and its usage."""
    env = {**FAST_MOCK, "AUTH": "keys", "AUTH_FAILURE_BURST": "1000", "AUTH_CACHE_S": "0"}
    async with running_service(tmp_path, None, env=env) as service:
        admin, _ = await make_key(service, "admin", user="root", role="admin")
        numbers = itertools.count()

        def in_thread() -> None:
            as_admin = {"Authorization": f"Bearer {admin}"}
            with httpx.Client(base_url=service.url, timeout=10, headers=as_admin) as client:

                @PROPERTY
                @given(user=IDS)
                def round_trip(user: str) -> None:
                    message_id = f"m-{next(numbers)}"
                    created = client.post("/admin/keys", json={"user": user})
                    named = {"user": user}
                    if not follows_the_rule(user):
                        refused_naming(created, "user")
                        listed = client.get("/admin/keys").json()["keys"]
                        assert user not in [key["user"] for key in listed]
                        for path in ("/api/conversations", "/admin/usage"):
                            refused_naming(client.get(path, params=named), "user")
                        return
                    assert created.status_code == 201, created.text
                    assert created.json()["user"] == user
                    as_user = {"Authorization": f"Bearer {created.json()['key']}"}
                    answered = client.post(
                        "/api/process",
                        json={"message": QUESTION, "message_id": message_id},
                        headers=as_user,
                    )
                    assert answered.status_code == 200, answered.text
                    conversation_id = answered.headers["X-Conversation-Id"]
                    listed = client.get("/admin/keys").json()["keys"]
                    assert user in [key["user"] for key in listed]
                    found = client.get("/api/conversations", params=named)
                    assert found.status_code == 200, found.text
                    ids = [c["id"] for c in found.json()["conversations"]]
                    assert conversation_id in ids
                    stored = client.get(at("/api/messages/{}", message_id), params=named)
                    assert stored.status_code == 200, stored.text
                    assert stored.json()["message_id"] == message_id
                    usage = client.get("/admin/usage", params=named)
                    assert usage.status_code == 200, usage.text
                    assert {line["user"] for line in usage.json()["usage"]} == {user}

                round_trip()

        await trio.to_thread.run_sync(in_thread)
