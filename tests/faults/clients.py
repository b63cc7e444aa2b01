"""Clients that keep score: each stream's status, its events and how it ended, so a case can
count what every client got instead of sampling a few.

    outcome = await ask(client, {"message": "Hi?", "message_id": "m-1"})
    outcome.terminals, outcome.code, outcome.leaked
    outcomes = await under_load(client, next_payload, workers=12, stop=stop)
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from tests.fake_upstream import SECRET_DETAIL_MARKER
from tests.integration.harness import SseEvent, iter_events

TERMINAL = frozenset({"done", "error"})


@dataclass(eq=False)
class StreamOutcome:
    """One POST /api/process as its client saw it."""

    message_id: str
    started_at: float
    status: int | None = None
    # The envelope's code when the answer was not a stream.
    refused_code: str | None = None
    events: list[SseEvent] = field(default_factory=list)
    headers_at: float | None = None
    ended_at: float | None = None
    # Why the connection ended early: the server went away, or the client hung up.
    broken: str | None = None
    hung_up: bool = False
    # Provider text found in what the client received.
    leaked: bool = False
    first_event: trio.Event = field(default_factory=trio.Event, repr=False)

    @property
    def terminals(self) -> int:
        return sum(event.event in TERMINAL for event in self.events)

    @property
    def last(self) -> SseEvent | None:
        return self.events[-1] if self.events else None

    @property
    def code(self) -> str | None:
        """`done`, or the error code of the terminal `error` event; None without either."""
        last = self.last
        if last is None or last.event not in TERMINAL:
            return None
        return "done" if last.event == "done" else str(last.data["error"]["code"])

    @property
    def ends_well(self) -> bool:
        """Exactly one terminal event, the last one, marked final."""
        last = self.last
        return self.terminals == 1 and last is not None and last.data.get("final") is True

    @property
    def open(self) -> bool:
        """Streaming now: an event came, the end did not."""
        return bool(self.events) and self.ended_at is None and self.terminals == 0

    @property
    def seconds(self) -> float:
        return (self.ended_at or self.started_at) - self.started_at


async def ask(
    client: httpx.AsyncClient,
    payload: dict[str, Any],
    *,
    hang_up_after: int | None = None,
    headers: dict[str, str] | None = None,
    into: list[StreamOutcome] | None = None,
) -> StreamOutcome:
    """Send one message and read its stream to the end, or leave after `hang_up_after`
    events (0: as soon as the headers arrive). Never raises for what the server does.
    `into` gets the outcome as the request starts, so others can watch it fill in."""
    outcome = StreamOutcome(str(payload.get("message_id")), trio.current_time())
    if into is not None:
        into.append(outcome)
    try:
        async with client.stream("POST", "/api/process", json=payload, headers=headers) as response:
            outcome.status = response.status_code
            outcome.headers_at = trio.current_time()
            if response.status_code != 200:
                body = await response.aread()
                outcome.leaked = SECRET_DETAIL_MARKER.encode() in body
                outcome.refused_code = _envelope_code(body)
                return outcome
            if hang_up_after == 0:
                outcome.hung_up = True
                return outcome
            async for event in iter_events(response):
                outcome.events.append(event)
                outcome.first_event.set()
                outcome.leaked = outcome.leaked or SECRET_DETAIL_MARKER in json.dumps(event.data)
                if hang_up_after is not None and len(outcome.events) >= hang_up_after:
                    outcome.hung_up = event.event not in TERMINAL
                    return outcome
    except (httpx.TransportError, trio.BrokenResourceError) as exc:
        outcome.broken = type(exc).__name__
    finally:
        outcome.ended_at = trio.current_time()
        outcome.first_event.set()
    return outcome


def _envelope_code(body: bytes) -> str | None:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


async def until(done: Callable[[], bool], *, poll_s: float = 0.05) -> None:
    """Wait until `done()`, a condition on what other tasks (clients) fill in, holds."""
    while True:
        if done():
            return
        await trio.sleep(poll_s)


def numbered_questions() -> Callable[[], dict[str, Any]]:
    """A new question, with its own message id, at every call: `under_load`'s payloads."""
    numbers = itertools.count()

    def next_payload() -> dict[str, Any]:
        number = next(numbers)
        return {"message": f"Question {number}?", "message_id": f"m-{number}"}

    return next_payload


async def under_load(
    client: httpx.AsyncClient,
    next_payload: Callable[[], dict[str, Any]],
    *,
    workers: int,
    stop: trio.Event,
    headers: dict[str, str] | None = None,
) -> list[StreamOutcome]:
    """`workers` clients, each sending its next message as soon as the last one ended,
    until `stop` is set; every outcome, in the order they started."""
    outcomes: list[StreamOutcome] = []

    async def worker() -> None:
        while not stop.is_set():
            await ask(client, next_payload(), headers=headers, into=outcomes)

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
    return outcomes


@dataclass
class Probes:
    """Answers to quick GETs, by route and status, with how long each took."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status >= 500)

    def count(self, route: str, status: int) -> int:
        return self.statuses[(route, status)]


async def probe(
    client: httpx.AsyncClient,
    routes: Sequence[str],
    *,
    every_s: float,
    stop: trio.Event,
    into: Probes,
) -> None:
    """GET each route in turn every `every_s` until `stop` is set; a request that gets no
    answer at all within 5 s counts as a failure."""
    while not stop.is_set():
        for route in routes:
            started = trio.current_time()
            try:
                with trio.fail_after(5):
                    response = await client.get(route)
            except (httpx.TransportError, trio.TooSlowError) as exc:
                into.failures[f"{route}: {type(exc).__name__}"] += 1
                continue
            into.statuses[(route, response.status_code)] += 1
            into.seconds.append(trio.current_time() - started)
        await trio.sleep(every_s)


def percentile(values: Iterable[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` 0.5 for the median); 0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
