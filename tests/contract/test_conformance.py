"""Real answers checked against the published document: every SSE event of real streams
(retries, failed agents, a cut straggler, a restarted summary, an error, a limited run)
against StreamEvent, every OpenAI chunk against ChatCompletionChunk, the JSON of the
history, key and usage routes, with real rows in them, against their responses, and an
evaluation's answers and events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.contract.conftest import component, published, response_problems, schema_problems
from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import RunningService, SseEvent, read_events, running_service
from tests.integration.test_upstream_faults import MOCK_FAILURES_EXAMPLE

QUICK = {"MOCK_FIRST_TOKEN_MS": "10", "MOCK_TOKEN_MS": "1"}
EVAL_EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "eval"


async def stream_problems(
    service: RunningService, document: dict[str, Any], body: dict[str, Any]
) -> tuple[list[SseEvent], list[str]]:
    """The events of one /api/process stream, and how they break the schema."""
    async with service.client.stream("POST", "/api/process", json=body) as response:
        assert response.status_code == 200
        events = await read_events(response)
    problems = []
    for event in events:
        problems += [
            f"{event.event}: {problem}"
            for problem in schema_problems(document, component("StreamEvent"), event.data)
        ]
        if event.event != event.data["type"]:
            problems.append(f"event: {event.event} but type {event.data['type']}")
    return events, problems


async def test_every_kind_of_event_matches_the_published_schema(tmp_path: Path) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text("[anonymous]\nrequests_per_minute = 600\ntokens_per_minute = 100000\n")
    env = {**QUICK, "ENSEMBLE_FILE": str(MOCK_FAILURES_EXAMPLE), "LIMITS_FILE": str(limits)}
    async with running_service(tmp_path, None, env=env) as service:
        document = await published(service.client)
        events, problems = await stream_problems(
            service, document, {"message": "Hi?", "message_id": "m-1"}
        )
        replay = await service.client.get("/api/messages/m-1/events")
        replayed = [
            problem
            for block in replay.text.split("\n\n")
            if block.strip()
            for problem in schema_problems(
                document,
                component("StreamEvent"),
                json.loads(block.split("data: ", 1)[1]),
            )
        ]
    assert problems == []
    assert replayed == []
    assert events[-1].data["charged"]["requests"] == 1
    assert {
        "agent.started",
        "agent.retrying",
        "agent.completed",
        "agent.failed",
        "summary.started",
        "summary.delta",
        "summary.restarted",
        "done",
    } <= {event.event for event in events}


async def test_an_error_event_matches_the_published_schema(tmp_path: Path) -> None:
    fake = FakeUpstream(default=Behaviour(status=401))
    async with running_service(tmp_path, fake) as service:
        document = await published(service.client)
        events, problems = await stream_problems(
            service, document, {"message": "Hi?", "message_id": "m-1"}
        )
    assert events[-1].event == "error"
    assert problems == []


async def test_openai_chunks_completions_and_errors_match_the_published_schema(
    tmp_path: Path,
) -> None:
    async with running_service(tmp_path, None, env=QUICK) as service:
        document = await published(service.client)
        question = {"model": "default", "messages": [{"role": "user", "content": "Hi?"}]}
        chunks: list[Any] = []
        async with service.client.stream(
            "POST",
            "/v1/chat/completions",
            json={**question, "stream": True, "stream_options": {"include_usage": True}},
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    chunks.append(json.loads(line.removeprefix("data: ")))
        whole = await service.client.post("/v1/chat/completions", json=question)
        unknown = await service.client.post(
            "/v1/chat/completions", json={**question, "model": "no-such-ensemble"}
        )
        models = await service.client.get("/v1/models")
    problems = [
        problem
        for chunk in chunks
        for problem in schema_problems(document, component("ChatCompletionChunk"), chunk)
    ]
    assert len(chunks) > 2
    assert problems == []
    assert response_problems(document, "POST", "/v1/chat/completions", whole) == []
    assert unknown.status_code == 404
    assert response_problems(document, "POST", "/v1/chat/completions", unknown) == []
    assert response_problems(document, "GET", "/v1/models", models) == []


async def test_history_keys_and_usage_with_real_rows_match_the_published_schema(
    tmp_path: Path,
) -> None:
    env = {**QUICK, "ENSEMBLE_FILE": str(MOCK_FAILURES_EXAMPLE)}
    async with running_service(tmp_path, None, env=env) as service:
        document = await published(service.client)
        first = await service.client.post(
            "/api/process", json={"message": "Hi?", "message_id": "m-1"}
        )
        conversation = first.headers["X-Conversation-Id"]
        await service.client.post(
            "/api/process",
            json={"message": "And?", "message_id": "m-2", "conversation_id": conversation},
        )
        asked: list[tuple[str, str, httpx.Response]] = [
            ("GET", "/api/conversations", await service.client.get("/api/conversations?limit=1")),
            (
                "GET",
                "/api/conversations/{conversation_id}",
                await service.client.get(f"/api/conversations/{conversation}"),
            ),
            ("GET", "/api/messages/{message_id}", await service.client.get("/api/messages/m-2")),
            ("GET", "/api/usage", await service.client.get("/api/usage")),
            ("GET", "/admin/usage", await service.client.get("/admin/usage")),
            ("GET", "/admin/ensemble", await service.client.get("/admin/ensemble")),
            ("GET", "/healthz", await service.client.get("/healthz")),
            ("GET", "/readyz", await service.client.get("/readyz")),
            (
                "POST",
                "/api/messages/{message_id}/cancel",
                await service.client.post("/api/messages/m-1/cancel"),
            ),
            (
                "GET",
                "/api/messages/{message_id}",
                await service.client.get("/api/messages/no-such-message"),
            ),
        ]
    problems = {
        f"{method} {path} {response.status_code}": found
        for method, path, response in asked
        if (found := response_problems(document, method, path, response))
    }
    assert problems == {}
    statuses = [response.status_code for _, _, response in asked]
    assert statuses == [200, 200, 200, 200, 200, 200, 200, 200, 409, 404]


async def test_evaluations_their_events_and_refusals_match_the_published_schema(
    tmp_path: Path,
) -> None:
    """An evaluation started, followed, read, cancelled (409: it is done), resumed (409),
    deleted (then a 404) and refused, each answer against the operation's documented one;
    its events against EvaluationEvent."""
    env = {**QUICK, "MOCK_FIRST_TOKEN_MS": "0", "EVAL_DATASETS_DIR": str(EVAL_EXAMPLES)}
    async with running_service(tmp_path, None, env=env) as service:
        document = await published(service.client)
        body = {"dataset": "arithmetic", "limit": 3, "scorer": "numeric"}
        started = await service.client.post("/admin/evals", json=body)
        evaluation = started.json()["id"]
        async with service.client.stream("GET", f"/admin/evals/{evaluation}/events") as events:
            frames = await read_events(events)
        path = "/admin/evals/{evaluation_id}"
        asked: list[tuple[str, str, httpx.Response]] = [
            ("POST", "/admin/evals", started),
            ("GET", path, await service.client.get(f"/admin/evals/{evaluation}")),
            ("GET", "/admin/evals", await service.client.get("/admin/evals")),
            (
                "GET",
                f"{path}/report.html",
                await service.client.get(f"/admin/evals/{evaluation}/report.html"),
            ),
            (
                "POST",
                f"{path}/cancel",
                await service.client.post(f"/admin/evals/{evaluation}/cancel"),
            ),
            (
                "POST",
                f"{path}/resume",
                await service.client.post(f"/admin/evals/{evaluation}/resume"),
            ),
            ("DELETE", path, await service.client.delete(f"/admin/evals/{evaluation}")),
            ("DELETE", path, await service.client.delete(f"/admin/evals/{evaluation}")),
            ("GET", path, await service.client.get("/admin/evals/ev-none")),
            ("POST", "/admin/evals", await service.client.post("/admin/evals", json={})),
        ]
    problems = {
        f"{method} {path} {response.status_code}": found
        for method, path, response in asked
        if (found := response_problems(document, method, path, response))
    }
    problems |= {
        f"{frame.event} {frame.id}": found
        for frame in frames
        if (found := schema_problems(document, component("EvaluationEvent"), frame.data))
    }
    assert problems == {}
    assert [response.status_code for _, _, response in asked] == [
        202, 200, 200, 200, 409, 409, 204, 404, 404, 400,
    ]  # fmt: skip
    assert [frame.event for frame in frames][-1] == "eval.ended"
    assert all(frame.event == frame.data["type"] for frame in frames)
