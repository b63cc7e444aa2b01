"""PostgreSQL restarted under load, through nginx with two replicas (a cluster of the case's
own: the machine's server is shared). A fast shutdown ends every session at once, and the
server is down for a while before it starts again. What must hold is what docs/deploy.md
says: every stream ends with exactly one terminal event; every message a client was
answered for is stored whole once the database is back, or its loss is logged; no replica
takes the other's running messages for those of a dead instance because neither could
write its heartbeat meanwhile; routes that need no database never answer 5xx, the history
route 503 at worst; a resume ends with exactly one terminal event, or is refused while the
database is away (503) or for a message run unrecorded (404); a message sent to go on
without its client (`on_disconnect: "continue"`) is refused with 503 `storage_unavailable`
while the database is away (it could not be resumed); nothing is left `running`
(a phase given up while the database was away is written once it is back)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial

import httpx
import pytest
import trio

from tests.cluster.balancer import nginx_statuses
from tests.cluster.conftest import ClusterOf
from tests.cluster.load import Resume, replay, steady_load
from tests.cluster.own_servers import own_postgres
from tests.faults.clients import Probes, StreamOutcome, probe
from tests.faults.probes import log_matches
from tests.faults.records import StoredMessage, stored_messages
from tests.faults.report import CaseReport
from tests.faults.sizes import sized
from tests.faults.test_database_outage import (
    HISTORY,
    NO_DATABASE_NEEDED,
    UNRECORDED,
    WRITE_FAILED,
)

# A run takes about 2 s. Heartbeats every 0.5 s: a replica is taken for gone after 1.5 s
# without one, shorter than the time the database is down.
MOCK = {"MOCK_FIRST_TOKEN_MS": "200", "MOCK_TOKEN_MS": "30", "HEARTBEAT_S": "0.5"}
# Once the load has stopped: long enough for a few heartbeats on a loaded machine.
RUNNING_FOR_S = 10.0


@dataclass(frozen=True)
class Restart:
    readers: int
    leavers: int
    before_s: float
    down_s: float
    after_s: float


def verdict(
    outcome: StreamOutcome,
    message: StoredMessage | None,
    *,
    unrecorded: set[str],
    failed_writes: set[str],
) -> str:
    """What became of a message whose client was answered, once the database is back."""
    if message is None:
        return "unrecorded (logged)" if outcome.message_id in unrecorded else "missing"
    if (
        message.status in ("completed", "failed")
        and message.has_events_up_to(len(outcome.events))
        and outcome.last is not None
        and message.last_event_type == outcome.last.event
    ):
        return "stored whole"
    if outcome.code == "done" and message.status == "interrupted":
        # Its replica ran it to the end, but the other had marked it interrupted first.
        return "done but stored interrupted"
    if str(message.pk) in failed_writes:
        return f"{message.status} with a failed write (logged)"
    return f"{message.status}, not whole (not logged)"


@pytest.mark.parametrize(
    "size", sized(small=Restart(4, 2, 1.5, 2, 3), full=Restart(12, 6, 3, 5, 6))
)
async def test_postgres_restarted_under_load_through_nginx(
    cluster_of: ClusterOf, report: CaseReport, size: Restart
) -> None:
    report.did(
        f"PostgreSQL restarted, {size.readers} readers and {size.leavers} leavers",
        f"nginx, two replicas, heartbeats every 0.5 s; {size.readers} clients reading streams "
        f"to the end, {size.leavers} leaving each after 2 events and resuming at once, probes "
        f"every 0.1 s; PostgreSQL's fast shutdown after {size.before_s:g} s, started again "
        f"{size.down_s:g} s later, {size.after_s:g} s more",
    )
    reads: list[StreamOutcome] = []
    resumes: list[Resume] = []
    plain, history = Probes(), Probes()
    async with own_postgres() as postgres:
        async with cluster_of(database_url=postgres.url, **MOCK) as (cluster, database_url):
            limits = httpx.Limits(max_connections=None)
            async with httpx.AsyncClient(base_url=cluster.url, timeout=30, limits=limits) as client:
                stop = trio.Event()
                async with trio.open_nursery() as load:
                    load.start_soon(
                        partial(
                            steady_load,
                            client,
                            size.readers,
                            size.leavers,
                            stop=stop,
                            reads=reads,
                            resumes=resumes,
                        )
                    )
                    load.start_soon(
                        partial(
                            probe, client, NO_DATABASE_NEEDED, every_s=0.1, stop=stop, into=plain
                        )
                    )
                    load.start_soon(
                        partial(probe, client, (HISTORY,), every_s=0.1, stop=stop, into=history)
                    )
                    await trio.sleep(size.before_s)
                    await postgres.restart(down_s=size.down_s)
                    await trio.sleep(size.after_s)
                    stop.set()
                resumed = [r for r in resumes if r.started_at is not None]
                # Every run has ended; a phase given up while the database was away is
                # written at a heartbeat once it is back.
                with trio.move_on_after(RUNNING_FOR_S):
                    while any(  # noqa: ASYNC110 (the database, no event)
                        m.status == "running"
                        for m in (await stored_messages(database_url)).values()
                    ):
                        await trio.sleep(0.1)
                kept = await stored_messages(database_url)
                # A message left `running` would be followed for as long as it stays so.
                replays = {
                    r.message_id: await replay(client, r.message_id)
                    for r in resumed
                    if r.status == 200 and kept[r.message_id].status != "running"
                }
            lines = cluster.requests()
            log = b"".join(replica.log_path.read_bytes() for replica in cluster.replicas)

    failed_writes = set(log_matches(log, WRITE_FAILED))
    unrecorded = set(log_matches(log, UNRECORDED))
    left_running = [m for m in kept.values() if m.status == "running"]
    answered = [o for o in reads if o.status == 200]
    verdicts = Counter(
        verdict(o, kept.get(o.message_id), unrecorded=unrecorded, failed_writes=failed_writes)
        for o in answered
    )
    unaccounted = sum(n for v, n in verdicts.items() if v != "stored whole" and "(logged)" not in v)
    resume_ends = Counter(r.events[-1].event if r.events else r.status for r in resumed)
    history_statuses = Counter(status for (_, status) in history.statuses.elements())
    statuses = nginx_statuses(lines)
    report.count(
        streams_read=len(reads),
        answered=f"{len(answered)}/{len(reads)}",
        ended_with_one_terminal_event=sum(o.ends_well for o in answered),
        done=sum(o.code == "done" for o in answered),
        **{v.replace(" ", "_"): n for v, n in sorted(verdicts.items())},
        unaccounted=unaccounted,
        interrupted_by_the_other_replica=verdicts["done but stored interrupted"],
        continued_runs_refused=dict(
            Counter(
                f"{r.sender.status} {r.sender.refused_code or r.sender.broken}"
                for r in resumes
                if r.sender.status != 200
            )
        ),
        left_and_resumed=len(resumed),
        resumes_with_one_terminal=sum(r.one_terminal for r in resumed if r.status == 200),
        resumes_continuing_exactly=sum(
            r.continues(replays[r.message_id]) for r in resumed if r.message_id in replays
        ),
        resume_ends=dict(resume_ends),
        failed_writes_logged=len(failed_writes),
        stored_running=len(left_running),
        probe_5xx=plain.server_errors,
        probes_unanswered=sum(plain.failures.values()),
        history_answers=dict(sorted(history_statuses.items())),
        nginx_statuses=dict(sorted(statuses.items())),
    )

    assert len(answered) == len(reads), Counter((o.status, o.refused_code) for o in reads)
    assert all(o.ends_well for o in answered)
    assert verdicts["done but stored interrupted"] == 0, verdicts
    assert unaccounted == 0, verdicts
    assert resumed, "no leaver got as far as resuming"
    # A run to go on without its client must be stored: refused while the database is away.
    assert all(
        r.sender.status == 200
        or (r.sender.status, r.sender.refused_code) == (503, "storage_unavailable")
        for r in resumes
    )
    for resume in resumed:
        if resume.status == 200:
            assert resume.one_terminal, (resume.message_id, resume.events)
            if resume.message_id in replays:
                assert resume.continues(replays[resume.message_id]), resume.message_id
        elif resume.status == 404:
            assert resume.message_id in unrecorded, resume.message_id
        else:
            assert resume.status == 503, (resume.message_id, resume.status, resume.broken)
    assert not left_running, left_running
    assert set(plain.statuses.elements()) <= {(route, 200) for route in NO_DATABASE_NEEDED}
    assert not plain.failures
    assert set(history_statuses) <= {200, 503}, history_statuses
    assert not history.failures
    # The restart was felt, or the case tested nothing.
    assert verdicts["stored whole"] < len(answered) or 503 in history_statuses
