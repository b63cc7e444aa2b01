"""kill -9 while clients are mid-summary, then every client resumes with the last id it saw
(as EventSource does by itself): each resume ends with exactly one terminal event, and no
event id ever names two different events of the same message, on SQLite and PostgreSQL,
with the service restarted under its own name or followed and taken over by a second
instance (PostgreSQL and Redis, as behind a load balancer; SQLite without Redis, as two
processes sharing the file, the follower reading the database)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.databases import REDIS_URL, database_url, forget_redis_prefix, redis_reachable
from tests.faults.clients import StreamOutcome, ask, until
from tests.faults.report import CaseReport
from tests.integration.harness import SseEvent, iter_events
from tests.service_process import served

# Slow enough that a kill finds every client inside the summary: its tokens are sent live
# and only stored at the end, so the client holds ids the database never had.
MOCK = {"MOCK_FIRST_TOKEN_MS": "300", "MOCK_TOKEN_MS": "100"}


@dataclass(frozen=True)
class Crash:
    streams: int
    backend: str
    # 1: the service comes back under its own name; 2: a second instance was following
    # every message and takes them over once the dead one's heartbeat has expired.
    instances: int

    @property
    def relayed(self) -> bool:
        """Two instances on PostgreSQL follow through Redis; on SQLite, through the file."""
        return self.instances == 2 and self.backend == "postgresql"

    @property
    def name(self) -> str:
        shape = "one instance" if self.instances == 1 else "two instances"
        return f"kill -9 mid-summary, {self.streams} resumes, {self.backend}, {shape}"


CASES = [
    pytest.param(Crash(streams, backend, instances), id=f"{size}-{backend}-{instances}", marks=mark)
    for size, streams, mark in (("small", 3, ()), ("full", 20, (pytest.mark.faults,)))
    for backend, instances in (("sqlite", 1), ("sqlite", 2), ("postgresql", 1), ("postgresql", 2))
]


Content = tuple[str, dict[str, Any]]
Streams = dict[str, list[SseEvent]]


def contents(events: list[SseEvent]) -> dict[str, Content]:
    return {event.id: (event.event, event.data) for event in events}


async def resumed(
    base_url: str,
    message_id: str,
    last_event_id: str | None,
    into: list[SseEvent] | None = None,
    answered: set[str] | None = None,
) -> list[SseEvent]:
    """The message's events after `last_event_id` to the end, each put `into` as it comes
    (and the message id put in `answered` once the stream's 200 has come)."""
    events = [] if into is None else into
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        path = f"/api/messages/{message_id}/events"
        async with client.stream("GET", path, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            if answered is not None:
                answered.add(message_id)
            async for event in iter_events(response):
                events.append(event)
    return events


async def follow(base_url: str, outcome: StreamOutcome, into: Streams, answered: set[str]) -> None:
    """Follow a message running elsewhere from the last id its sender has, to the end."""
    last = outcome.last
    into[outcome.message_id] = []
    await resumed(
        base_url, outcome.message_id, last and last.id, into[outcome.message_id], answered
    )


def mid_summary(outcomes: list[StreamOutcome], count: int) -> bool:
    """Every one of `count` clients has a summary token."""
    return len(outcomes) == count and all(
        any(e.event == "summary.delta" for e in o.events) for o in outcomes
    )


@pytest.mark.parametrize("crash", CASES)
async def test_every_resume_after_kill_9_ends_once_and_never_reuses_an_id(
    tmp_path: Path, report: CaseReport, crash: Crash
) -> None:
    report.did(
        crash.name,
        f"{crash.streams} streams read until each has a summary token, SIGKILL, then every "
        "client resumes with its last id and from the start",
    )
    with database_url(crash.backend, tmp_path) as url:
        env = {**MOCK, "DATABASE_URL": url, "INSTANCE_ID": "first", "HEARTBEAT_S": "0.2"}
        if crash.relayed:
            await redis_reachable()
            env["REDIS_URL"] = REDIS_URL
        try:
            seen, followed, ends, replays = await _crash_and_resume(tmp_path, env, crash)
        finally:
            if crash.relayed:
                await forget_redis_prefix("fanout:events:")

    def terminals(events: list[SseEvent]) -> int:
        return sum(event.event in ("done", "error") for event in events)

    # Every id any stream of a message carried, against what it named first.
    reused = []
    for message_id, events in seen.items():
        named = contents(events)
        for stream in (followed.get(message_id, []), ends[message_id], replays[message_id]):
            for event_id, content in contents(stream).items():
                if named.setdefault(event_id, content) != content:
                    reused.append((message_id, event_id, named[event_id][0], content[0]))
    client_ends = {m: terminals(seen[m] + ends[m]) for m in seen}
    report.count(
        streams=len(seen),
        killed_before_their_end=sum(terminals(events) == 0 for events in seen.values()),
        resumes_with_one_terminal=sum(n == 1 for n in client_ends.values()),
        replays_with_one_terminal=sum(terminals(r) == 1 for r in replays.values()),
        ids_naming_two_events=len(reused),
    )
    assert len(seen) == crash.streams
    assert all(terminals(events) == 0 for events in seen.values()), "a run ended before the kill"
    assert client_ends == dict.fromkeys(seen, 1), "every client ends with one terminal event"
    for message_id, events in ends.items():
        assert events[-1].event in ("done", "error")
        assert events[-1].data["final"] is True
        assert all(int(e.id) > int(seen[message_id][-1].id) for e in events), "only what is new"
    assert all(terminals(replay) == 1 for replay in replays.values())
    for message_id, events in followed.items():
        assert terminals(events) == 1, f"{message_id}: the follower's stream never ended"
    assert not reused, reused


async def _crash_and_resume(
    tmp_path: Path, env: dict[str, str], crash: Crash
) -> tuple[Streams, Streams, Streams, Streams]:
    """What each client saw before the kill, what followers on a second instance saw to the
    end (two instances), each client's resume after the restart or the takeover, and each
    message's replay from the start."""
    outcomes: list[StreamOutcome] = []
    followed: Streams = {}
    second_env = {**env, "INSTANCE_ID": "second"}
    async with (
        served(tmp_path, **env) as first,
        served(tmp_path, **second_env) if crash.instances == 2 else nullcontext() as second,
    ):
        async with (
            httpx.AsyncClient(base_url=first.url, timeout=30) as client,
            trio.open_nursery() as clients,
        ):
            for number in range(crash.streams):
                payload = {"message": f"Question {number}?", "message_id": f"m-{number}"}
                clients.start_soon(partial(ask, client, payload, into=outcomes))
            with trio.fail_after(30):
                await until(partial(mid_summary, outcomes, crash.streams))
            async with trio.open_nursery() as followers:
                if second is not None:
                    answered: set[str] = set()
                    for outcome in outcomes:
                        followers.start_soon(follow, second.url, outcome, followed, answered)
                    with trio.fail_after(10):
                        # Through Redis each follower reads the run live; through the
                        # database it has only the stored phases, older than what its
                        # sender has, so it waits for the next one (the end).
                        await until(
                            lambda: (
                                len(answered) == len(outcomes)
                                and (not crash.relayed or all(followed.values()))
                            )
                        )
                first.process.kill()
                await first.process.wait()
        # The clients' nursery has ended: every client has seen its connection end.
        seen = {o.message_id: list(o.events) for o in outcomes}
        if second is not None:
            ends, replays = await _resume_all(second.url, seen)
    if second is None:
        async with served(tmp_path, **env) as restarted:
            ends, replays = await _resume_all(restarted.url, seen)
    return seen, followed, ends, replays


async def _resume_all(base_url: str, seen: dict[str, list[SseEvent]]) -> tuple[Streams, Streams]:
    """Each client's resume with the last id it saw, and each message's replay from the
    start (whose ids must name what they named before the kill)."""
    ends: Streams = {}
    replays: Streams = {}
    with trio.fail_after(20):
        for message_id, events in seen.items():
            ends[message_id] = await resumed(base_url, message_id, events[-1].id)
            replays[message_id] = await resumed(base_url, message_id, None)
    return ends, replays
