"""kill -9 of one replica while streams of both are open, through nginx: the streams of the
dead replica break, and each client that resumes with the last id it saw (landing on the
survivor) gets the rest and exactly one terminal event; nothing is left `running` once the
dead replica's heartbeat has expired; new messages sent right after the kill are served
(nginx passes a refused connection on to the other replica, and does for at least half of
them: it takes the replicas in turn); nginx's 5xx are counted."""

from __future__ import annotations

from collections import Counter
from functools import partial

import httpx
import pytest
import trio

from tests.cluster.balancer import nginx_statuses, replicas_tried
from tests.cluster.conftest import ClusterOf
from tests.faults.clients import StreamOutcome, ask
from tests.faults.records import stored_messages
from tests.faults.report import CaseReport
from tests.faults.sizes import sized
from tests.faults.test_crash_resume import mid_summary, resumed
from tests.integration.harness import SseEvent

# Slow enough that the kill finds every stream inside its summary.
MOCK = {"MOCK_FIRST_TOKEN_MS": "200", "MOCK_TOKEN_MS": "60", "HEARTBEAT_S": "0.2"}
NEW_AFTER_KILL = 6


@pytest.mark.parametrize("streams", sized(small=8, full=40))
async def test_kill_9_of_one_replica_every_resume_ends_once_and_new_messages_are_served(
    cluster_of: ClusterOf, report: CaseReport, streams: int
) -> None:
    report.did(
        f"kill -9 of one replica, {streams} streams",
        f"nginx, two replicas; {streams} streams read until each has a summary token, "
        f"SIGKILL to replica-1, {NEW_AFTER_KILL} new messages at once, every broken stream "
        "resumed with its last id",
    )
    outcomes: list[StreamOutcome] = []
    after_kill: list[StreamOutcome] = []
    ends: dict[str, list[SseEvent]] = {}
    async with cluster_of(**MOCK) as (cluster, database_url):
        victim = cluster.replicas[0]
        limits = httpx.Limits(max_connections=None)
        async with httpx.AsyncClient(base_url=cluster.url, timeout=30, limits=limits) as client:
            async with trio.open_nursery() as clients:
                for number in range(streams):
                    payload = {"message": f"Question {number}?", "message_id": f"m-{number}"}
                    clients.start_soon(partial(ask, client, payload, into=outcomes))
                with trio.fail_after(30):
                    while not mid_summary(outcomes, streams):  # noqa: ASYNC110
                        await trio.sleep(0.05)
                victim.kill()
                await victim.wait()
                for number in range(NEW_AFTER_KILL):
                    payload = {"message": f"After {number}?", "message_id": f"new-{number}"}
                    clients.start_soon(partial(ask, client, payload, into=after_kill))
            broken = [o for o in outcomes if o.terminals == 0]
            with trio.fail_after(30):
                async with trio.open_nursery() as resumes:
                    for outcome in broken:
                        assert outcome.last is not None
                        ends[outcome.message_id] = []
                        resumes.start_soon(
                            partial(
                                resumed,
                                cluster.url,
                                outcome.message_id,
                                outcome.last.id,
                                into=ends[outcome.message_id],
                            )
                        )
        kept = await stored_messages(database_url)
        lines = cluster.requests()

    def continues_once(outcome: StreamOutcome) -> bool:
        """Only what is new, in order, to exactly one terminal event (an interrupted run's
        is numbered past any real event: event_ids.MAX_EVENT_ID)."""
        rest = ends[outcome.message_id]
        assert outcome.last is not None
        ids = [int(outcome.last.id)] + [int(e.id) for e in rest]
        return (
            sum(e.event in ("done", "error") for e in rest) == 1
            and rest[-1].event in ("done", "error")
            and ids == sorted(set(ids))
        )

    statuses = nginx_statuses(lines)
    passed_on = sum(len(replicas_tried(line)) > 1 for line in lines)
    report.count(
        streams=len(outcomes),
        broken_by_the_kill=len(broken),
        ended_without_the_kill=sum(o.ends_well for o in outcomes),
        resumes_with_the_rest_and_one_terminal=sum(continues_once(o) for o in broken),
        resume_ends=dict(Counter(ends[o.message_id][-1].event for o in broken)),
        new_messages_served=sum(o.status == 200 and o.code == "done" for o in after_kill),
        stored_running=sum(m.status == "running" for m in kept.values()),
        nginx_statuses=dict(sorted(statuses.items())),
        nginx_5xx=sum(n for status, n in statuses.items() if status >= 500),
        passed_on_after_a_refused_connection=passed_on,
    )
    assert 0 < len(broken) < streams, "the kill did not find streams on one replica only"
    assert all(o.ends_well for o in outcomes if o not in broken)
    assert all(continues_once(o) for o in broken), {
        o.message_id: ends[o.message_id] for o in broken
    }
    assert all(o.status == 200 and o.code == "done" for o in after_kill), after_kill
    assert not any(m.status == "running" for m in kept.values())
    assert sum(n for status, n in statuses.items() if status >= 500) == 0, statuses
    # nginx runs one worker (the file sets no worker_processes) and never leaves a replica
    # out (max_fails=0): it takes the two in turn, a retry aside, so half of the messages
    # sent after the kill meet the dead one first, and each of those was passed on.
    assert passed_on >= NEW_AFTER_KILL // 2, lines
