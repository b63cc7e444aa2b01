"""kill -9 of the service under a steady load of open streams: after a restart every message
is `completed` or `interrupted`, none missing and none left `running`, whether the process
comes back under its own name or another instance takes over once the dead one's heartbeat
has expired. A client that received `done` finds its message `completed` with every event
it was sent, and its replay ends with that `done`."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.faults.clients import StreamOutcome, ask
from tests.faults.records import StoredMessage, stored_messages
from tests.faults.report import CaseReport
from tests.integration.test_main_process import parse_sse
from tests.service_process import served

# A mock stream takes about 3.5 s (first token 400 ms, then 50 ms a token).
MOCK = {"MOCK_FIRST_TOKEN_MS": "400", "MOCK_TOKEN_MS": "50"}
STREAM_S = 3.5


@dataclass(frozen=True)
class Load:
    open_at_kill: int
    done_before_kill: int

    @property
    def open_every_s(self) -> float:
        """The pace that keeps `open_at_kill` streams open at once."""
        return STREAM_S / self.open_at_kill


async def wait_until_nothing_runs(url: str, *, within_s: float) -> dict[str, StoredMessage]:
    """The database's messages once none is `running` any more (or `within_s` passed)."""
    kept = await stored_messages(url)
    with trio.move_on_after(within_s):
        while any(message.status == "running" for message in kept.values()):
            await trio.sleep(0.2)
            kept = await stored_messages(url)
    return kept


async def replayed_ends(base_url: str, message_ids: list[str]) -> dict[str, str | None]:
    """The terminal event each message's replay ends with (None: none, or no replay)."""
    ends: dict[str, str | None] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        for message_id in message_ids:
            response = await client.get(f"/api/messages/{message_id}/events")
            ok = response.status_code == 200 and response.text.strip()
            events = parse_sse(response.text) if ok else []
            terminal = [e.event for e in events if e.event in ("done", "error")]
            ends[message_id] = terminal[-1] if terminal else None
    return ends


@pytest.mark.parametrize(
    ("restart_as", "load"),
    [
        pytest.param("same instance", Load(10, 3), id="small-same-instance"),
        *(
            pytest.param(name, Load(50, 10), id=f"full-{name.replace(' ', '-')}", marks=mark)
            for name in ("same instance", "another instance")
            for mark in [pytest.mark.faults]
        ),
    ],
)
async def test_kill_9_under_load_loses_no_message(
    tmp_path: Path, postgres_url: str, report: CaseReport, restart_as: str, load: Load
) -> None:
    report.did(
        f"kill -9 with {load.open_at_kill} open streams, restart as {restart_as}",
        f"PostgreSQL; a stream every {load.open_every_s * 1000:.0f} ms until "
        f"{load.open_at_kill} are open and {load.done_before_kill} done, SIGKILL, "
        f"restart as {restart_as}",
    )
    env = {**MOCK, "DATABASE_URL": postgres_url, "INSTANCE_ID": "first", "HEARTBEAT_S": "0.2"}
    outcomes: list[StreamOutcome] = []
    async with served(tmp_path, **env) as service:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with (
            httpx.AsyncClient(base_url=service.url, timeout=30, limits=limits) as client,
            trio.open_nursery() as clients,
        ):
            # Bounded: on a machine too slow to get there the counts below say so.
            with trio.move_on_after(60):
                for number in itertools.count():
                    payload = {"message": f"Question {number}?", "message_id": f"m-{number}"}
                    clients.start_soon(partial(ask, client, payload, into=outcomes))
                    await trio.sleep(load.open_every_s)
                    open_now = sum(outcome.open for outcome in outcomes)
                    done = sum(outcome.code == "done" for outcome in outcomes)
                    if open_now >= load.open_at_kill and done >= load.done_before_kill:
                        break
            service.process.kill()
            await service.process.wait()
        # The clients' nursery has ended: every client has seen its connection end.

    second = "first" if restart_as == "same instance" else "second"
    async with served(tmp_path, **{**env, "INSTANCE_ID": second}) as service:
        kept = await wait_until_nothing_runs(postgres_url, within_s=20)
        replays = await replayed_ends(service.url, list(kept))

    answered = [o for o in outcomes if o.status == 200]
    open_at_kill = [o for o in answered if o.events and o.terminals == 0]
    missing = [o.message_id for o in answered if o.message_id not in kept]
    statuses = Counter(message.status for message in kept.values())
    done_by_client = [o for o in outcomes if o.code == "done"]
    done_but_not_kept_whole = [
        o.message_id
        for o in done_by_client
        if not (
            (message := kept.get(o.message_id)) is not None
            and message.status == "completed"
            and message.has_events_up_to(len(o.events))
        )
    ]
    completed_without_done = [
        m.message_id
        for m in kept.values()
        if m.status == "completed" and m.last_event_type != "done"
    ]
    interrupted = [m for m in kept.values() if m.status == "interrupted"]
    # A run cut by the kill was stored up to its last phase, with no terminal event: its
    # replay ends with an `error` made up from the status (code `interrupted`).
    interrupted_replays_ending = sum(replays[m.message_id] == "error" for m in interrupted)
    completed_replays_without_end = [
        m.message_id
        for m in kept.values()
        if m.status == "completed" and replays[m.message_id] is None
    ]
    report.count(
        sent=len(outcomes),
        answered=len(answered),
        open_at_kill=len(open_at_kill),
        stored=len(kept),
        completed=statuses["completed"],
        interrupted=statuses["interrupted"],
        running=statuses["running"],
        other_status=sum(n for s, n in statuses.items() if s not in ("completed", "interrupted")),
        missing=len(missing),
        done_seen_by_clients=len(done_by_client),
        done_but_not_stored_whole=len(done_but_not_kept_whole),
        completed_replays_without_a_terminal_event=len(completed_replays_without_end),
        interrupted_replays_with_a_terminal_event=f"{interrupted_replays_ending}/{len(interrupted)}",
    )

    assert len(open_at_kill) >= load.open_at_kill, "the load never reached its size"
    assert len(done_by_client) >= load.done_before_kill
    assert not missing
    assert set(statuses) <= {"completed", "interrupted"}, statuses
    assert not done_but_not_kept_whole
    assert not completed_without_done
    assert not completed_replays_without_end
    assert interrupted_replays_ending == len(interrupted)
    # A stream open at the kill is `interrupted`, or `completed` if its end was stored just
    # before its last event went out (checked above: completed means it ends with `done`).
    assert interrupted
