"""Ids are checked at the edge, before anything is stored or admitted, on SQLite and on
PostgreSQL; and a message whose start fails after it was stored still ends and gives its
stream slot back.

Each case was a 500 once: a CR, LF or NUL in `conversation_id` reached the response's
header after the message was stored (and, on /v1, paid for), which then stayed `running`
for ever with its stream slot taken.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from service.auth import ANONYMOUS
from service.storage import MessageEnd
from tests.auth.test_settings_and_cli import keys_command
from tests.databases import BACKENDS, database_url
from tests.integration.harness import RunningService, running_service
from tests.stored_messages import new_message

# One stream at a time: a request that kept its slot makes the next one a 429.
ONE_STREAM = "[anonymous]\nconcurrent_streams = 1\n"
BAD_IDS = {"CR": "c-1\r", "LF": "c-1\r\nX-Injected: yes", "NUL": "c\x001"}


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


@asynccontextmanager
async def one_stream_service(url: str, tmp_path: Path) -> AsyncIterator[RunningService]:
    limits = tmp_path / "limits.toml"
    limits.write_text(ONE_STREAM)
    env = {"DATABASE_URL": url, "LIMITS_FILE": str(limits)}
    async with running_service(tmp_path, None, env=env) as service:
        yield service


def ask(message_id: str, **extra: Any) -> dict[str, Any]:
    return {"message": "Why is the sky blue?", "message_id": message_id, **extra}


def ask_openai(**metadata: str) -> dict[str, Any]:
    return {
        "model": "default",
        "messages": [{"role": "user", "content": "Why is the sky blue?"}],
        "metadata": metadata,
    }


async def still_serves_one_stream(service: RunningService, message_id: str) -> None:
    """Nothing was kept for `message_id`, and the only stream slot is free again."""
    assert (await service.client.get(f"/api/messages/{message_id}")).status_code == 404
    answered = await service.client.post("/api/process", json=ask(message_id))
    assert answered.status_code == 200
    assert "event: done" in answered.text


@pytest.mark.parametrize("bad", sorted(BAD_IDS))
async def test_a_control_character_in_conversation_id_is_a_400_before_it_is_stored(
    url: str, tmp_path: Path, bad: str
) -> None:
    async with one_stream_service(url, tmp_path) as service:
        refused = await service.client.post(
            "/api/process", json=ask("m-1", conversation_id=BAD_IDS[bad])
        )
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["field"] == "conversation_id"
        assert "X-Injected" not in refused.headers
        await still_serves_one_stream(service, "m-1")


@pytest.mark.parametrize("bad", sorted(BAD_IDS))
@pytest.mark.parametrize("stream", [False, True])
async def test_a_control_character_in_v1_metadata_conversation_id_is_a_400(
    url: str, tmp_path: Path, bad: str, stream: bool
) -> None:
    async with one_stream_service(url, tmp_path) as service:
        body = {**ask_openai(message_id="m-1", conversation_id=BAD_IDS[bad]), "stream": stream}
        refused = await service.client.post("/v1/chat/completions", json=body)
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == "metadata.conversation_id"
        await still_serves_one_stream(service, "m-1")


@pytest.mark.parametrize("bad", sorted(BAD_IDS))
async def test_a_control_character_in_message_id_is_a_400(
    url: str, tmp_path: Path, bad: str
) -> None:
    async with one_stream_service(url, tmp_path) as service:
        refused = await service.client.post("/api/process", json=ask(BAD_IDS[bad]))
        assert refused.status_code == 400
        assert refused.json()["error"]["field"] == "message_id"
        openai = await service.client.post(
            "/v1/chat/completions", json=ask_openai(message_id=BAD_IDS[bad])
        )
        assert openai.status_code == 400
        assert openai.json()["error"]["param"] == "metadata.message_id"
        await still_serves_one_stream(service, "m-1")


async def status_of_message(service: RunningService, message_id: str) -> str:
    return str((await service.client.get(f"/api/messages/{message_id}")).json()["status"])


async def test_a_start_that_fails_after_storing_ends_the_message_and_frees_its_slot(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever fails between storing the message and streaming it (here: building the
    response), the message ends (never `running` for ever), a cancel finds nothing
    running, and the stream slot it took is given back."""
    from service.api.routes import streams

    def broken_response(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError("the response could not be made")

    async with one_stream_service(url, tmp_path) as service:
        with monkeypatch.context() as patched:
            patched.setattr(streams, "event_stream_response", broken_response)
            failed = await service.client.post("/api/process", json=ask("m-1"))
        assert failed.status_code == 500
        with trio.fail_after(5):
            while await status_of_message(service, "m-1") == "running":  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert await status_of_message(service, "m-1") == "cancelled"
        cancel = await service.client.post("/api/messages/m-1/cancel")
        assert cancel.status_code == 409
        answered = await service.client.post("/api/process", json=ask("m-2"))
        assert answered.status_code == 200, answered.text


async def test_a_client_that_leaves_before_its_stream_starts_leaves_no_run_behind(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message is stored and holds its slot; its response is sent but its body, which
    would start the run, is held back until the client has gone. The run is still ended,
    `cancelled`, and its slot given back."""
    from service.api.routes import streams

    real_response = streams.event_stream_response
    held_back = trio.Event()

    class HeldBack:
        def __init__(self, body: Any) -> None:
            self._body = body

        async def __aenter__(self) -> Any:
            held_back.set()
            await trio.sleep_forever()  # cancelled when the client hangs up

        async def __aexit__(self, *exc: object) -> None:
            return None

    def late_response(*args: Any, **kwargs: Any) -> Any:
        response = real_response(*args, **kwargs)
        response.response = HeldBack(response.response)
        return response

    async with one_stream_service(url, tmp_path) as service:
        with monkeypatch.context() as patched:
            patched.setattr(streams, "event_stream_response", late_response)
            async with trio.open_nursery() as client:

                async def leaving() -> None:
                    async with service.client.stream("POST", "/api/process", json=ask("m-1")):
                        await trio.sleep_forever()

                client.start_soon(leaving)
                with trio.fail_after(5):
                    await held_back.wait()
                client.cancel_scope.cancel()
        with trio.fail_after(5):
            while await status_of_message(service, "m-1") == "running":  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert await status_of_message(service, "m-1") == "cancelled"
        assert (await service.client.post("/api/messages/m-1/cancel")).status_code == 409
        answered = await service.client.post("/api/process", json=ask("m-2"))
        assert answered.status_code == 200, answered.text
        assert "event: done" in answered.text


@pytest.mark.parametrize("bad", ["CR", "LF"])
async def test_an_id_stored_before_the_rule_never_reaches_a_header(
    url: str, tmp_path: Path, bad: str
) -> None:
    """A row stored before ids were checked may hold a CR or LF in its conversation id:
    sending its message again replays it, without that header (once a 500, or a header
    of the client's choosing)."""
    async with one_stream_service(url, tmp_path) as service:
        store = service.resources.store
        assert store is not None
        begun = await new_message(
            store,
            ANONYMOUS,
            "m-old",
            conversation_id=BAD_IDS[bad],
            question="Why is the sky blue?",
            ensemble_version="v0",
            history_max_chars=1000,
        )
        await store.record(begun.pk, end=MessageEnd("failed", None, "internal_error", {}, {}, None))
        replayed = await service.client.post("/api/process", json=ask("m-old"))
        assert replayed.status_code == 200
        assert replayed.headers["X-Replayed"] == "true"
        assert "X-Conversation-Id" not in replayed.headers
        assert "X-Injected" not in replayed.headers
        assert "event: error" in replayed.text


@pytest.mark.parametrize(
    "args",
    [
        ("--user", "alice smith"),
        ("--user", "a/b"),
        ("--user", "alice", "--tenant", "acme\tcorp"),
        ("--user", "alice", "--tenant", ".."),
    ],
    ids=["space", "slash", "tab", "dots"],
)
async def test_the_keys_command_holds_user_and_tenant_to_the_id_rule(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    refused = await keys_command(tmp_path, "create", *args)
    assert refused.returncode == 2, refused.stdout
    assert b"printable ASCII" in refused.stderr
    listed = await keys_command(tmp_path, "list", "--json")
    assert json.loads(listed.stdout)["keys"] == []
