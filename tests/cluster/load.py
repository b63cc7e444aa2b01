"""The steady load of the restart cases, through nginx: readers, each reading message after
message to its end, and leavers, each leaving a running message (`on_disconnect:
"continue"`) after a few events and resuming it at once with the last id it saw. nginx sends
a resume to either replica: the other one follows the run through Redis's relay and the
database, which is what a Redis or PostgreSQL restart tests.

    async with trio.open_nursery() as load:
        load.start_soon(partial(steady_load, client, 8, 4, stop=stop, reads=reads, resumes=leaves))
    resume.continues(replays[message_id])
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import trio

from tests.faults.clients import TERMINAL, StreamOutcome, ask
from tests.integration.harness import SseEvent, iter_events

# A leaver leaves after this many events: its run's agents have started, nothing more.
LEFT_AFTER = 2


def questions(prefix: str) -> Any:
    """A new payload at every call, its message id `prefix-N`."""
    numbers = itertools.count()

    def next_payload() -> dict[str, Any]:
        number = next(numbers)
        return {"message": f"Question {number}?", "message_id": f"{prefix}-{number}"}

    return next_payload


@dataclass(eq=False)
class Resume:
    """A message left after LEFT_AFTER events, and its resume with the last id seen (none
    when the sender was refused, or its stream ended before it left)."""

    sender: StreamOutcome
    status: int | None = None
    events: list[SseEvent] = field(default_factory=list)
    started_at: float | None = None
    ended_at: float | None = None
    # Why the resume's connection ended early, when it did.
    broken: str | None = None

    @property
    def message_id(self) -> str:
        return self.sender.message_id

    @property
    def last_seen(self) -> int:
        assert self.sender.last is not None
        return int(self.sender.last.id)

    @property
    def one_terminal(self) -> bool:
        terminals = sum(event.event in TERMINAL for event in self.events)
        return terminals == 1 and self.events[-1].event in TERMINAL

    def continues(self, replay: list[SseEvent]) -> bool:
        """Exactly the replay's events after the last id the sender saw: none lost, none
        sent twice, in order."""
        after = [(e.id, e.event, e.data) for e in replay if int(e.id) > self.last_seen]
        return [(e.id, e.event, e.data) for e in self.events] == after


async def read_steadily(
    client: httpx.AsyncClient,
    prefix: str,
    *,
    workers: int,
    stop: trio.Event,
    into: list[StreamOutcome],
) -> None:
    """`workers` clients, each sending its next message once the last one ended."""
    next_payload = questions(prefix)

    async def reader() -> None:
        while not stop.is_set():
            await ask(client, next_payload(), into=into)

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(reader)


async def leave_and_resume(
    client: httpx.AsyncClient,
    prefix: str,
    *,
    workers: int,
    stop: trio.Event,
    into: list[Resume],
) -> None:
    """`workers` clients, each leaving a message after LEFT_AFTER events and resuming it at
    once, to its end, then sending the next."""
    next_payload = questions(prefix)

    async def leaver() -> None:
        while not stop.is_set():
            payload = next_payload() | {"on_disconnect": "continue"}
            resume = Resume(await ask(client, payload, hang_up_after=LEFT_AFTER))
            into.append(resume)
            if resume.sender.hung_up:  # else refused, or over before: nothing to resume
                await _resume(client, resume)

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(leaver)


async def steady_load(
    client: httpx.AsyncClient,
    readers: int,
    leavers: int,
    *,
    stop: trio.Event,
    reads: list[StreamOutcome],
    resumes: list[Resume],
) -> None:
    """`readers` readers and `leavers` leavers at once, until `stop`."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            partial(read_steadily, client, "r", workers=readers, stop=stop, into=reads)
        )
        nursery.start_soon(
            partial(leave_and_resume, client, "l", workers=leavers, stop=stop, into=resumes)
        )


async def _resume(client: httpx.AsyncClient, resume: Resume) -> None:
    resume.started_at = trio.current_time()
    path = f"/api/messages/{resume.message_id}/events"
    headers = {"Last-Event-ID": str(resume.last_seen)}
    try:
        async with client.stream("GET", path, headers=headers) as response:
            resume.status = response.status_code
            if response.status_code == 200:
                async for event in iter_events(response):
                    resume.events.append(event)
            else:
                await response.aread()
    except httpx.TransportError as exc:
        resume.broken = type(exc).__name__
    finally:
        resume.ended_at = trio.current_time()


async def replay(client: httpx.AsyncClient, message_id: str) -> list[SseEvent]:
    """Every event the service kept for the message, from the first."""
    async with client.stream("GET", f"/api/messages/{message_id}/events") as response:
        assert response.status_code == 200, await response.aread()
        return [event async for event in iter_events(response)]
