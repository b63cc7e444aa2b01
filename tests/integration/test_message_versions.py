"""Message versions over HTTP, on SQLite and PostgreSQL: a `message_id` sent again with
other text (the original service's own curl examples do it) runs as the id's next version;
the same text replays; `regenerate` and an edit make versions that branch a conversation;
the message, its events and its cancel follow the newest version, and the history API shows
every version with its parent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.databases import BACKENDS, database_url
from tests.fake_upstream import FakeUpstream
from tests.integration.harness import RunningService, SseEvent, read_events, running_service
from tests.integration.test_main_process import parse_sse

AGENT = "fake-a"


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


@asynccontextmanager
async def serving(url: str, tmp_path: Path) -> AsyncIterator[tuple[RunningService, FakeUpstream]]:
    """The service on the database at `url`, its one agent answered by a fake upstream."""
    fake = FakeUpstream()
    async with running_service(
        tmp_path, fake, agents={"llm-1": AGENT}, env={"DATABASE_URL": url}
    ) as service:
        yield service, fake


async def conversation_of(service: RunningService, *turns: tuple[str, str]) -> str:
    """Each (message_id, text) sent as the next turn of one new conversation; its id."""
    (first_id, first_text), *rest = turns
    first, _ = await send(service, {"message": first_text, "message_id": first_id})
    conversation = first.headers["X-Conversation-Id"]
    for message_id, text in rest:
        follow_up = {"message": text, "message_id": message_id, "conversation_id": conversation}
        await send(service, follow_up)
    return conversation


async def send(
    service: RunningService, payload: dict[str, Any]
) -> tuple[httpx.Response, list[SseEvent]]:
    async with service.client.stream("POST", "/api/process", json=payload) as response:
        if response.status_code != 200:
            await response.aread()
            return response, []
        return response, await read_events(response)


def questions_asked(fake: FakeUpstream, since: int = 0) -> list[str]:
    """The question each call of the agent was sent (its last user turn), in order."""
    return [call.messages[-1]["content"] for call in fake.calls[since:] if call.model == AGENT]


def summary(events: list[SseEvent]) -> str:
    return "".join(e.data["message"] for e in events if e.event == "summary.delta")


def history_sent(fake: FakeUpstream) -> list[str]:
    """The user turns before the question in the agent's last call: the history it saw."""
    call = [call for call in fake.calls if call.model == AGENT][-1]
    return [m["content"] for m in call.messages[:-1] if m["role"] == "user"]


async def test_the_original_services_two_examples_both_stream_their_own_answer(
    url: str, tmp_path: Path
) -> None:
    async with serving(url, tmp_path) as (service, fake):
        first, first_events = await send(
            service, {"message": "Explain gravity like I am 5", "message_id": "message_123"}
        )
        second, second_events = await send(
            service, {"message": "Build me a robot", "message_id": "message_123"}
        )
        newest = (await service.client.get("/api/messages/message_123")).json()
        earlier = (
            await service.client.get(f"/api/conversations/{first.headers['X-Conversation-Id']}")
        ).json()
        replayed = await service.client.get("/api/messages/message_123/events")

    assert (first.status_code, second.status_code) == (200, 200)
    assert first_events[-1].event == second_events[-1].event == "done"
    assert questions_asked(fake) == ["Explain gravity like I am 5", "Build me a robot"]
    assert (first.headers["X-Message-Version"], second.headers["X-Message-Version"]) == ("1", "2")
    assert "X-Replayed" not in second.headers
    assert second.headers["X-Conversation-Id"] != first.headers["X-Conversation-Id"]
    assert summary(second_events) != summary(first_events)
    # From now on the id names the newest; the first stays in its own conversation.
    assert (newest["version"], newest["question"]) == (2, "Build me a robot")
    assert [(m["message_id"], m["version"], m["question"]) for m in earlier["messages"]] == [
        ("message_123", 1, "Explain gravity like I am 5")
    ]
    assert newest["summary"] == summary(second_events)
    assert second_events[-1].data["usage"] == parse_sse(replayed.text)[-1].data["usage"]
    assert [e.event for e in parse_sse(replayed.text)] == [e.event for e in second_events]


async def test_the_same_text_again_replays_the_newest_version_without_a_call(
    url: str, tmp_path: Path
) -> None:
    async with serving(url, tmp_path) as (service, fake):
        await send(service, {"message": "One?", "message_id": "m-1"})
        _, second_events = await send(service, {"message": "Two?", "message_id": "m-1"})
        calls = len(fake.calls)
        again, again_events = await send(service, {"message": "Two?", "message_id": "m-1"})
    assert len(fake.calls) == calls
    assert again.headers["X-Replayed"] == "true"
    assert again.headers["X-Message-Version"] == "2"
    assert [(e.id, e.event, e.data) for e in again_events] == [
        (e.id, e.event, e.data) for e in second_events
    ]


async def test_regenerate_runs_a_turn_again_and_keeps_the_answer_before(
    url: str, tmp_path: Path
) -> None:
    async with serving(url, tmp_path) as (service, fake):
        conversation = await conversation_of(service, ("m-1", "First?"), ("m-2", "Second?"))
        since = len(fake.calls)
        again, events = await send(service, {"message_id": "m-2", "regenerate": True})
        unknown = await service.client.post(
            "/api/process", json={"message_id": "never", "regenerate": True}
        )
        shown = (await service.client.get(f"/api/conversations/{conversation}")).json()

    assert again.status_code == 200
    assert again.headers["X-Message-Version"] == "2"
    assert again.headers["X-Conversation-Id"] == conversation
    assert events[-1].event == "done"
    assert questions_asked(fake, since) == ["Second?"]
    assert history_sent(fake) == ["First?"]
    assert unknown.status_code == 404
    assert unknown.json()["error"]["field"] == "message_id"
    turns = [
        (m["message_id"], m["version"], m["parent"], m["current"], m["status"])
        for m in shown["messages"]
    ]
    assert turns == [
        ("m-1", 1, None, True, "completed"),
        ("m-2", 1, {"message_id": "m-1", "version": 1}, False, "completed"),
        ("m-2", 2, {"message_id": "m-1", "version": 1}, True, "completed"),
    ]


async def test_an_edit_branches_the_conversation_and_follow_ups_see_the_new_branch(
    url: str, tmp_path: Path
) -> None:
    async with serving(url, tmp_path) as (service, fake):
        conversation = await conversation_of(
            service, ("m-1", "First?"), ("m-2", "Second?"), ("m-3", "Third?")
        )
        edited, _ = await send(
            service,
            {"message": "Second, edited?", "message_id": "m-2", "conversation_id": conversation},
        )
        edit_history = history_sent(fake)
        await send(
            service, {"message": "Fourth?", "message_id": "m-4", "conversation_id": conversation}
        )
        shown = (await service.client.get(f"/api/conversations/{conversation}")).json()

    assert edited.headers["X-Message-Version"] == "2"
    assert edit_history == ["First?"]
    assert history_sent(fake) == ["First?", "Second, edited?"]
    current = [(m["message_id"], m["version"]) for m in shown["messages"] if m["current"]]
    assert current == [("m-1", 1), ("m-2", 2), ("m-4", 1)]
    assert len(shown["messages"]) == 5  # m-2's first version and m-3 are kept


async def test_a_follow_up_may_continue_an_earlier_branch_named_by_its_parent(
    url: str, tmp_path: Path
) -> None:
    async with serving(url, tmp_path) as (service, fake):
        conversation = await conversation_of(
            service, ("m-1", "First?"), ("m-2", "Second?"), ("m-3", "Third?")
        )
        await send(
            service,
            {"message": "Second, edited?", "message_id": "m-2", "conversation_id": conversation},
        )
        # Back on the first branch: a follow-up of m-3, which is no longer the newest turn.
        followed, _ = await send(
            service,
            {
                "message": "Fourth?",
                "message_id": "m-4",
                "conversation_id": conversation,
                "parent": {"message_id": "m-3", "version": 1},
            },
        )
        history = history_sent(fake)
        shown = (await service.client.get(f"/api/conversations/{conversation}")).json()
        refused = {
            "elsewhere": await send(
                service,
                {
                    "message": "Lost?",
                    "message_id": "m-5",
                    "conversation_id": "c-other",
                    "parent": {"message_id": "m-3", "version": 1},
                },
            ),
            "no_version": await send(
                service,
                {
                    "message": "Lost?",
                    "message_id": "m-5",
                    "conversation_id": conversation,
                    "parent": {"message_id": "m-3", "version": 7},
                },
            ),
            "no_conversation": await send(
                service,
                {
                    "message": "Lost?",
                    "message_id": "m-5",
                    "parent": {"message_id": "m-3", "version": 1},
                },
            ),
            "regenerate": await send(
                service,
                {
                    "message_id": "m-3",
                    "regenerate": True,
                    "conversation_id": conversation,
                    "parent": {"message_id": "m-1", "version": 1},
                },
            ),
        }
        after = (await service.client.get(f"/api/conversations/{conversation}")).json()

    assert followed.status_code == 200
    assert history == ["First?", "Second?", "Third?"]
    current = [(m["message_id"], m["version"]) for m in shown["messages"] if m["current"]]
    assert current == [("m-1", 1), ("m-2", 1), ("m-3", 1), ("m-4", 1)]
    statuses = {
        name: (r.status_code, r.json()["error"]["field"]) for name, (r, _) in refused.items()
    }
    assert statuses == {
        "elsewhere": (404, "parent"),
        "no_version": (404, "parent"),
        "no_conversation": (400, "parent"),
        "regenerate": (400, "parent"),
    }
    assert after["messages"] == shown["messages"]  # nothing refused was stored


async def test_regenerate_needs_a_database_and_message_is_needed_without_it(
    tmp_path: Path,
) -> None:
    async with running_service(tmp_path, FakeUpstream(), env={"DATABASE_URL": "none"}) as service:
        regenerate = await service.client.post(
            "/api/process", json={"message_id": "m-1", "regenerate": True}
        )
        no_message = await service.client.post("/api/process", json={"message_id": "m-1"})
    assert regenerate.status_code == 400
    assert regenerate.json()["error"]["field"] == "regenerate"
    assert no_message.status_code == 400
    assert no_message.json()["error"]["field"] == "message"


async def statuses_in(service: RunningService, conversation: str) -> list[tuple[int, str]]:
    shown = (await service.client.get(f"/api/conversations/{conversation}")).json()
    return [(m["version"], m["status"]) for m in shown["messages"]]


async def test_cancel_and_resume_follow_the_newest_version_while_an_older_one_runs(
    url: str, tmp_path: Path
) -> None:
    """Two versions of one id running at once: the id's cancel stops the newest and leaves
    the older running; the id's events are the newest's."""
    env = {"DATABASE_URL": url, "MOCK_FIRST_TOKEN_MS": "1500"}
    async with running_service(tmp_path, None, env=env) as service:
        conversations = []
        for text in ("One?", "Two?"):
            payload = {"message": text, "message_id": "m-1", "on_disconnect": "continue"}
            async with service.client.stream("POST", "/api/process", json=payload) as started:
                assert started.status_code == 200  # and its client leaves: the run goes on
                conversations.append(started.headers["X-Conversation-Id"])
        older, newest = conversations
        cancelled = await service.client.post("/api/messages/m-1/cancel")
        async with service.client.stream("GET", "/api/messages/m-1/events") as resumed:
            resumed_events = await read_events(resumed)
        older_while_newest_ended = await statuses_in(service, older)
        again = await service.client.post("/api/messages/m-1/cancel")
        with trio.fail_after(10):  # the older one runs to its end
            while (await statuses_in(service, older))[0][1] == "running":  # noqa: ASYNC110
                await trio.sleep(0.05)
        older_at_its_end = await statuses_in(service, older)
        newest_at_its_end = await statuses_in(service, newest)

    assert cancelled.status_code == 202
    assert resumed_events[-1].event == "error"
    assert resumed_events[-1].data["error"]["code"] == "cancelled"
    assert older_while_newest_ended == [(1, "running")]
    assert again.status_code == 409  # the id names the newest, which is over
    assert older_at_its_end == [(1, "completed")]
    assert newest_at_its_end == [(2, "cancelled")]
