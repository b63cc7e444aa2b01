"""Evaluations the server runs for an admin, over HTTP: one on a data set it ships and one
sent in the body, followed by their events to the end, with the report the command would
have written; what is refused before anything runs; a cancel that keeps what was done and a
resume that asks nothing twice; and evaluations that are their owner's alone."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.auth.test_access import World, call, make_key, world
from tests.databases import BACKENDS, database_url
from tests.fake_upstream import Behaviour, CallRecord, FakeUpstream
from tests.integration.harness import SseEvent, read_events, running_service
from tests.service_process import served

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "eval"
QUICK = {"MOCK_FIRST_TOKEN_MS": "0", "MOCK_TOKEN_MS": "0"}
SAMPLE = {
    **QUICK,
    "ENSEMBLE_FILE": str(EXAMPLES / "ensemble.toml"),
    "EVAL_DATASETS_DIR": str(EXAMPLES),
}


async def start(client: httpx.AsyncClient, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    response = await client.post("/admin/evals", json=body, **kw)
    assert response.status_code == 202, response.text
    started: dict[str, Any] = response.json()
    assert response.headers["Location"] == f"/admin/evals/{started['id']}"
    return started


async def follow(client: httpx.AsyncClient, evaluation_id: str, **kw: Any) -> list[SseEvent]:
    """Its events until the stream ends (the evaluation did)."""
    with trio.fail_after(60):
        async with client.stream("GET", f"/admin/evals/{evaluation_id}/events", **kw) as response:
            assert response.status_code == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            return await read_events(response)


async def detail(client: httpx.AsyncClient, evaluation_id: str) -> dict[str, Any]:
    response = await client.get(f"/admin/evals/{evaluation_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def scores(report: dict[str, Any]) -> dict[str, float]:
    return {row["contestant"]: row["score"] for row in report["rows"]}


async def test_a_shipped_data_set_runs_as_the_command_runs_it_and_is_followed_to_its_end(
    tmp_path: Path,
) -> None:
    async with running_service(tmp_path, None, env=SAMPLE) as service:
        body = {"dataset": "arithmetic", "scorer": "numeric", "limit": 10}
        started = await start(service.client, body)
        events = await follow(service.client, started["id"])
        finished = await detail(service.client, started["id"])
        page = await service.client.get(f"/admin/evals/{started['id']}/report.html")
        listed = (await service.client.get("/admin/evals")).json()["evaluations"]

    # Ten questions, each of the ensemble and of its five agents alone.
    assert (started["status"], started["total"], started["dataset"]) == (
        "running",
        60,
        "arithmetic",
    )
    kinds = [event.event for event in events]
    assert kinds[-1] == "eval.ended"
    assert set(kinds[:-1]) == {"eval.progress"}
    assert [int(e.id) for e in events] == sorted({int(e.id) for e in events})  # rising
    done = [e.data["done"] for e in events]
    assert done == sorted(done)
    assert events[-1].data | {"spent_usd": 0} == {
        "type": "eval.ended",
        "evaluation_id": started["id"],
        "status": "completed",
        "phase": "asking",
        "done": 60,
        "total": 60,
        "spent_usd": 0,
        "error": None,
    }
    assert finished["status"] == "completed"
    assert finished["spent_usd"] == events[-1].data["spent_usd"] > 0
    report = finished["report"]
    assert report["questions"] == 10

    # The command, on the same questions and ensemble, finds the same scores.
    out = tmp_path / "out"
    command = await trio.run_process(
        [
            *(sys.executable, "-m", "service", "eval", str(EXAMPLES / "arithmetic.jsonl")),
            *("--scorer", "numeric", "--limit", "10", "--out", str(out)),
        ],
        cwd=ROOT,
        env={"USE_LLM_MOCK": "true", **SAMPLE, "PATH": "/usr/bin:/bin"},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert command.returncode == 0, command.stderr.decode()
    assert scores(report) == scores(json.loads((out / "report.json").read_text()))

    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "<svg" in page.text
    assert "default/alpha" in page.text
    assert [e["id"] for e in listed] == [started["id"]]


async def test_a_data_set_sent_as_rows_or_jsonl_runs_and_a_bad_one_is_refused(
    tmp_path: Path,
) -> None:
    rows = [
        {"id": "sum", "question": "What is 2 + 2?", "answer": "4"},
        {"question": "What is 3 + 3?", "answer": ["6", "six"]},
    ]
    jsonl = (
        '{"input": [{"role": "user", "content": "What is 5 + 5?"}], "ideal": "10"}\n'
        '{"question": "What is 1 + 1?", "answer": "2"}\n'
    )
    refused = [
        ({"jsonl": '{"question": "q", "answer": "a"}\nnot json\n'}, 400, "jsonl", "jsonl:2"),
        ({"rows": [rows[0], rows[0]]}, 400, "rows", "same id"),
        ({"dataset": "arithmetic", "rows": rows}, 400, None, "give one data set"),
        ({}, 400, None, "give one data set"),
        ({"dataset": "no-such-set"}, 404, "dataset", "no-such-set"),
        ({"rows": rows, "ensembles": ["nope"]}, 404, "ensembles", "nope"),
        ({"rows": rows, "judge": "nobody"}, 400, "judge", "nobody"),
        ({"rows": [{"question": " ", "answer": "4"}]}, 400, "rows.0.question", "blank"),
        ({"jsonl": '{"question": "q", "answer": ""}\n'}, 400, "jsonl", "jsonl:1: an empty answer"),
        ({"rows": rows, "concurrency": 0}, 400, "concurrency", "at least 1"),
        # A pattern from a data set would run on the server's CPU: the command's alone.
        ({"rows": rows, "scorer": "regex"}, 400, "scorer", "'exact', 'includes' or 'numeric'"),
        ({"rows": [{"question": "?" * 201, "answer": "4"}]}, 400, "rows", "longer than 200"),
    ]
    env = {**SAMPLE, "MAX_MESSAGE_CHARS": "200"}
    async with running_service(tmp_path, None, env=env) as service:
        answers = [await service.client.post("/admin/evals", json=body) for body, *_ in refused]
        assert (await service.client.get("/admin/evals")).json()["evaluations"] == []
        from_rows = await start(service.client, {"rows": rows, "scorer": "numeric"})
        from_jsonl = await start(service.client, {"jsonl": jsonl, "scorer": "numeric"})
        for started in (from_rows, from_jsonl):
            await follow(service.client, started["id"])
        kept_rows = await detail(service.client, from_rows["id"])
        kept_jsonl = await detail(service.client, from_jsonl["id"])

    for response, (body, status, field, says) in zip(answers, refused, strict=True):
        error = response.json()["error"]
        assert response.status_code == status, (body, response.text)
        assert error["field"] == field, (body, error)
        assert says in error["message"], (body, error)
    for kept in (kept_rows, kept_jsonl):
        assert (kept["status"], kept["dataset"], kept["questions"]) == ("completed", "upload", 2)
        assert kept["done"] == kept["total"] == 2 * 6  # the vote and its five agents
    assert kept_rows["report"]["rows"][0]["questions"] == 2


SLOW_SUMMARY = Behaviour(reply="The answer is 4.", first_token_delay_s=0.05)


def upstream() -> FakeUpstream:
    return FakeUpstream(
        {
            "fake-a": Behaviour(reply="4", first_token_delay_s=0.05),
            "fake-b": Behaviour(reply="5", first_token_delay_s=0.05),
            "fake-summary": SLOW_SUMMARY,
        }
    )


QUESTIONS = [{"id": f"q{n}", "question": f"Q{n}: what is 2 + 2?", "answer": "4"} for n in range(8)]


async def progress_reaches(client: httpx.AsyncClient, evaluation_id: str, done: int) -> None:
    with trio.fail_after(30):
        async with client.stream("GET", f"/admin/evals/{evaluation_id}/events") as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["done"] >= done:
                    return


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


async def test_a_cancel_keeps_what_was_done_and_a_resume_asks_nothing_twice(
    tmp_path: Path, url: str
) -> None:
    """On SQLite and PostgreSQL."""
    fake = upstream()
    body = {"rows": QUESTIONS, "scorer": "numeric", "concurrency": 1}
    async with running_service(tmp_path, fake, env={"DATABASE_URL": url}) as service:
        started = await start(service.client, body)
        await progress_reaches(service.client, started["id"], 6)
        while_running = await service.client.delete(f"/admin/evals/{started['id']}")
        cancelled = await service.client.post(f"/admin/evals/{started['id']}/cancel")
        again = await service.client.post(f"/admin/evals/{started['id']}/cancel")
        page = await service.client.get(f"/admin/evals/{started['id']}/report.html")
        ended = await follow(service.client, started["id"])
        resumed = await service.client.post(f"/admin/evals/{started['id']}/resume")
        events = await follow(service.client, started["id"])
        finished = await detail(service.client, started["id"])
        too_late = await service.client.post(f"/admin/evals/{started['id']}/resume")
        deleted = await service.client.delete(f"/admin/evals/{started['id']}")
        gone = await service.client.get(f"/admin/evals/{started['id']}")
        listed = (await service.client.get("/admin/evals")).json()["evaluations"]

    # A running evaluation is not deleted: its job would go on spending for nothing.
    assert (while_running.status_code, while_running.json()["error"]["code"]) == (409, "conflict")
    assert "cancel it first" in while_running.json()["error"]["message"]
    stopped = cancelled.json()
    assert cancelled.status_code == 200
    assert stopped["status"] == "cancelled"
    assert 6 <= stopped["done"] < stopped["total"] == 8 * 3
    # The report of what it had done.
    assert sum(row["questions"] for row in stopped["report"]["rows"]) == stopped["done"]
    assert (again.status_code, again.json()["error"]["code"]) == (409, "conflict")
    assert page.status_code == 200
    assert [e.data["status"] for e in ended] == ["cancelled"]
    assert resumed.status_code == 202
    assert events[-1].data["status"] == "completed"
    assert finished["done"] == finished["total"] == 24
    assert [row["questions"] for row in finished["report"]["rows"]] == [8, 8, 8]
    assert scores(finished["report"]) == {"default": 1.0, "default/alpha": 1.0, "default/beta": 0.0}
    # Each question of each contestant answered once: 3 calls for the ensemble's, 1 alone;
    # at most the one in flight when it was cancelled was asked again.
    answered = [call for call in fake.calls if call.outcome == "completed"]
    assert 8 * 5 <= len(answered) <= 8 * 5 + 2
    assert (too_late.status_code, too_late.json()["error"]["code"]) == (409, "conflict")
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert listed == []


async def test_a_cancel_made_on_another_instance_stops_the_job_at_its_next_result(
    tmp_path: Path,
) -> None:
    """Two instances on one database: the one that does not run it cancels it through its
    row, and the job, finding it no longer running, stops and writes nothing more."""
    fake = upstream()
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    body = {"rows": QUESTIONS, "scorer": "numeric", "concurrency": 1}
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
    async with (
        running_service(tmp_path / "one", fake, env={"DATABASE_URL": database}) as one,
        running_service(tmp_path / "two", fake, env={"DATABASE_URL": database}) as two,
    ):
        started = await start(one.client, body)
        await progress_reaches(one.client, started["id"], 3)
        cancelled = await two.client.post(f"/admin/evals/{started['id']}/cancel")
        ended = await follow(one.client, started["id"])
        kept = await detail(two.client, started["id"])
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert ended[-1].data["status"] == "cancelled"
        assert ended[-1].data["error"] is None
        # Nothing was kept after the cancel: the job's next result was refused.
        assert kept["done"] == cancelled.json()["done"] < kept["total"]


async def test_an_evaluation_is_its_owners_alone(tmp_path: Path) -> None:
    async with world(tmp_path, **SAMPLE) as w:
        # Two more admins: another of the owner's tenant, and one of the owner's name in
        # another tenant.
        for name, spec in {
            "second-admin": {"user": "root2", "role": "admin"},
            "foreign-root": {"user": "root", "tenant": "globex", "role": "admin"},
        }.items():
            w.keys[name], w.key_ids[name] = await make_key(w.service, name, **spec)
        headers = {"Authorization": f"Bearer {w.keys['admin']}"}
        started = await start(
            w.service.client, {"dataset": "arithmetic", "limit": 2}, headers=headers
        )
        await follow(w.service.client, started["id"], headers=headers)
        refused_wrongly = await strangers(w, started["id"])
        own = await call(w, "admin", "GET", f"/admin/evals/{started['id']}")
        by_a_user = await call(w, "alice", "POST", "/admin/evals", json={"dataset": "arithmetic"})
        deleted = await call(w, "admin", "DELETE", f"/admin/evals/{started['id']}")
        gone = await call(w, "admin", "GET", f"/admin/evals/{started['id']}")
    assert own.status_code == 200
    assert own.json()["status"] == "completed"
    assert refused_wrongly == []
    # The strangers' deletes deleted nothing; its owner's did.
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert by_a_user.status_code == 403


async def strangers(w: World, evaluation_id: str) -> list[str]:
    """Each call by anyone but its owner that is not refused as it should be: 404 for
    another admin (of its tenant or another), 403 for a user; and a list that shows it."""
    found = []
    routes = [
        ("GET", f"/admin/evals/{evaluation_id}"),
        ("GET", f"/admin/evals/{evaluation_id}/events"),
        ("GET", f"/admin/evals/{evaluation_id}/report.html"),
        ("POST", f"/admin/evals/{evaluation_id}/cancel"),
        ("POST", f"/admin/evals/{evaluation_id}/resume"),
        ("DELETE", f"/admin/evals/{evaluation_id}"),
    ]
    for who, expected in (("alice", 403), ("second-admin", 404), ("foreign-root", 404)):
        for method, path in routes:
            response = await call(w, who, method, path)
            if response.status_code != expected:
                found.append(f"{who} {method} {path}: {response.status_code}")
        listed = await call(w, who, "GET", "/admin/evals")
        if listed.status_code == 200 and listed.json()["evaluations"]:
            found.append(f"{who} sees it listed")
    return found


async def test_a_restart_leaves_a_running_evaluation_interrupted_and_a_resume_finishes_it(
    tmp_path: Path,
) -> None:
    """Killed (SIGKILL), the next start marks it; stopped (SIGTERM), it marks itself. Each
    time a resume goes on from the results kept, and none is asked twice."""
    # Slow enough that the evaluation is still running when each stop lands, on a busy
    # machine too (at 30 ms a question it once finished first, and nothing was interrupted).
    env = {
        **SAMPLE,
        "MOCK_FIRST_TOKEN_MS": "150",
        "MOCK_TOKEN_MS": "2",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fanout.db'}",
        "INSTANCE_ID": "the-one",
    }
    body = {"dataset": "arithmetic", "scorer": "numeric", "limit": 6, "concurrency": 2}
    async with served(tmp_path, **env) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            started = await start(client, body)
            await progress_reaches(client, started["id"], 4)
        service.process.kill()
        await service.process.wait()
    path = f"/admin/evals/{started['id']}"
    async with served(tmp_path, **env) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            killed = await detail(client, started["id"])
            assert (await client.post(f"{path}/resume")).status_code == 202
            await progress_reaches(client, started["id"], killed["done"] + 4)
        service.process.terminate()
        await service.process.wait()
    async with served(tmp_path, **env) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            stopped = await detail(client, started["id"])
            resumed = await client.post(f"{path}/resume")
            assert resumed.status_code == 202, (stopped, resumed.text)
            events = await follow(client, started["id"])
            finished = await detail(client, started["id"])

    for interrupted in (killed, stopped):
        assert (interrupted["status"], interrupted["error"]) == (
            "interrupted",
            {"code": "interrupted"},
        )
        assert 4 <= interrupted["done"] < 36
    assert killed["done"] < stopped["done"]
    assert events[-1].data["status"] == "completed"
    assert finished["done"] == finished["total"] == 36
    assert [row["questions"] for row in finished["report"]["rows"]] == [6] * 6


def most_open_at_once(calls: list[CallRecord]) -> int:
    edges = sorted(
        [(c.started_at, 1) for c in calls] + [(c.ended_at or c.started_at, -1) for c in calls],
        key=lambda edge: (edge[0], edge[1]),
    )
    most = open_now = 0
    for _, change in edges:
        open_now += change
        most = max(most, open_now)
    return most


async def test_each_question_is_admitted_through_the_callers_limits(tmp_path: Path) -> None:
    """With one stream slot, the questions asked at once (concurrency 4) take turns: never
    more calls open than one ensemble's two agents, never a summary beside another call.
    Without the limit, the same evaluation has more."""
    limits = tmp_path / "limits.toml"
    limits.write_text("[anonymous]\nconcurrent_streams = 1\n")
    slow = Behaviour(reply="4", first_token_delay_s=0.2)
    body = {"rows": QUESTIONS[:2], "scorer": "numeric", "concurrency": 4}
    opened = {}
    for limited in (True, False):
        fake = FakeUpstream({"fake-a": slow, "fake-b": slow, "fake-summary": slow})
        env = {"LIMITS_FILE": str(limits)} if limited else {}
        folder = tmp_path / ("limited" if limited else "free")
        folder.mkdir()
        async with running_service(folder, fake, env=env) as service:
            started = await start(service.client, body)
            ended = (await follow(service.client, started["id"]))[-1]
        assert ended.data["status"] == "completed"
        assert ended.data["done"] == 2 * 3
        summaries = [c for c in fake.calls if c.model == "fake-summary"]
        opened[limited] = (
            most_open_at_once(fake.calls),
            max(most_open_at_once([s, *fake.calls_for("fake-a")]) for s in summaries),
        )
    assert opened[True] == (2, 1)
    assert opened[False][0] > 2
