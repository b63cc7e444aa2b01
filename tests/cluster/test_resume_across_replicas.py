"""Through nginx, a client that left a running message (`on_disconnect: "continue"`) and
comes back with the last id it saw lands on the other replica, which follows the run the
first one is still driving (Redis's relay) and sends exactly the events after that id, to
one terminal event: for runs of both replicas."""

from __future__ import annotations

from collections import Counter
from functools import partial

import httpx
import pytest
import trio

from tests.cluster.balancer import logged, served_by
from tests.cluster.conftest import ClusterOf
from tests.faults.clients import StreamOutcome, ask
from tests.faults.report import CaseReport
from tests.faults.sizes import sized
from tests.faults.test_crash_resume import resumed
from tests.integration.harness import SseEvent

# A run takes about 3 s: every resume starts while its run is still going.
MOCK = {"MOCK_FIRST_TOKEN_MS": "300", "MOCK_TOKEN_MS": "40", "HEARTBEAT_S": "0.5"}
LEFT_AFTER = 2


@pytest.mark.parametrize("streams", sized(small=4, full=20))
async def test_a_resume_lands_on_the_other_replica_and_continues_from_last_event_id(
    cluster_of: ClusterOf, report: CaseReport, streams: int
) -> None:
    report.did(
        f"resume across replicas, {streams} runs",
        f"nginx, two replicas; {streams} messages sent one after another (on_disconnect "
        f"continue), each left after {LEFT_AFTER} events, then resumed with Last-Event-ID "
        "while its run goes on",
    )
    async with cluster_of(**MOCK) as (cluster, _):
        limits = httpx.Limits(max_connections=None)
        async with httpx.AsyncClient(base_url=cluster.url, timeout=30, limits=limits) as client:
            senders: dict[str, StreamOutcome] = {}
            ran_on: dict[str, str] = {}
            for number in range(streams):
                message_id = f"m-{number}"
                payload = {"message": f"Question {number}?", "message_id": message_id}
                payload["on_disconnect"] = "continue"
                senders[message_id] = await ask(client, payload, hang_up_after=LEFT_AFTER)
                ran_on[message_id] = served_by((await logged(cluster, count=number + 2))[-1])
            # nginx takes the replicas in turn: each resume is sent to a message that ran
            # on the replica the next request is not going to (its landing is read from the
            # log afterwards, not assumed).
            replicas = sorted(set(ran_on.values()))
            next_replica = next(r for r in replicas if r != served_by(cluster.requests()[-1]))
            waiting = dict(ran_on)
            ends: dict[str, list[SseEvent]] = {}
            async with trio.open_nursery() as resumes:
                while waiting:
                    message_id = next(
                        (m for m, r in waiting.items() if r != next_replica), next(iter(waiting))
                    )
                    del waiting[message_id]
                    ends[message_id] = []
                    last = senders[message_id].events[-1].id
                    resumes.start_soon(
                        partial(resumed, cluster.url, message_id, last, into=ends[message_id])
                    )
                    with trio.fail_after(10):  # its first event: nginx has picked a replica
                        while not ends[message_id]:  # noqa: ASYNC110
                            await trio.sleep(0.01)
                    next_replica = next(r for r in replicas if r != next_replica)
            replays = {m: await resumed(cluster.url, m, None) for m in senders}
        lines = cluster.requests()

    resumed_on: dict[str, str] = {}
    for line in lines:  # each message's first GET: its resume (the replays come after)
        if line["method"] == "GET" and line["uri"].endswith("/events"):
            resumed_on.setdefault(line["uri"].split("/")[3], served_by(line))
    crossings = Counter(
        (cluster.replica_at(ran_on[m]).name, cluster.replica_at(resumed_on[m]).name)
        for m in senders
        if resumed_on.get(m) not in (None, ran_on[m])
    )

    def continues(message_id: str) -> bool:
        """The resume is exactly the replay's events after the sender's last id."""
        last = int(senders[message_id].events[-1].id)
        after = [(e.id, e.event, e.data) for e in replays[message_id] if int(e.id) > last]
        return [(e.id, e.event, e.data) for e in ends[message_id]] == after

    def one_terminal(events: list[SseEvent]) -> bool:
        return sum(e.event in ("done", "error") for e in events) == 1 and events[-1].event in (
            "done",
            "error",
        )

    report.count(
        runs=len(senders),
        runs_per_replica=dict(Counter(cluster.replica_at(r).name for r in ran_on.values())),
        resumed_on_the_other_replica=sum(crossings.values()),
        crossings={f"{a} to {b}": n for (a, b), n in sorted(crossings.items())},
        resumes_continuing_exactly=sum(continues(m) for m in senders),
        resumes_with_one_terminal=sum(one_terminal(ends[m]) for m in senders),
        resumes_ending_done=sum(ends[m][-1].event == "done" for m in senders),
    )
    assert all(len(s.events) == LEFT_AFTER and s.hung_up for s in senders.values())
    assert len(set(ran_on.values())) == 2, "the runs were not spread over both replicas"
    assert len(crossings) == 2, f"no resume crossed in each direction: {dict(crossings)}"
    for message_id in senders:
        assert one_terminal(ends[message_id]), ends[message_id]
        assert ends[message_id][-1].event == "done"
        assert continues(message_id), message_id
        assert int(ends[message_id][0].id) == int(senders[message_id].events[-1].id) + 1
