"""A rolling restart under steady load, through nginx: SIGTERM one replica, start it again
once it has exited, then the other, while clients send message after message. No request
fails: a draining replica stops accepting at once (nginx passes the refused connection on
to the other), closes its idle keep-alive connections, and finishes the streams it has;
the restarted one takes requests as soon as it listens, its database and Redis open. Each
exits once its streams have ended, long before its grace is out: nginx's next request on a
connection the draining replica is closing no longer keeps that connection's task alive
until Hypercorn's graceful timeout (it did: each exit took the grace plus 2 s)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio

from tests.cluster.balancer import nginx_statuses, replicas_tried, served_by
from tests.cluster.conftest import ClusterOf
from tests.faults.clients import StreamOutcome, numbered_questions, under_load
from tests.faults.report import CaseReport
from tests.faults.sizes import sized

MOCK = {"MOCK_FIRST_TOKEN_MS": "50", "MOCK_TOKEN_MS": "5"}
# Far longer than a stream (about 0.2 s): an exit that waits for it is a connection held.
GRACE_S = 5
# Requests the restarted replica answers before the next one is stopped.
SERVED_AFTER_RESTART = 5


@pytest.mark.parametrize("clients", sized(small=6, full=20))
async def test_a_rolling_restart_under_steady_load_fails_no_request(
    cluster_of: ClusterOf, report: CaseReport, clients: int
) -> None:
    report.did(
        f"rolling restart, {clients} clients",
        f"nginx, two replicas; {clients} clients sending messages back to back; SIGTERM "
        f"replica-1, start it again, {SERVED_AFTER_RESTART} requests served by it, then "
        "the same for replica-2",
    )
    outcomes: list[StreamOutcome] = []
    exits: list[tuple[str, int | None, float]] = []
    async with cluster_of(**MOCK, SHUTDOWN_GRACE_S=str(GRACE_S)) as (cluster, _):
        limits = httpx.Limits(max_connections=None)
        stop = trio.Event()
        async with (
            httpx.AsyncClient(base_url=cluster.url, timeout=30, limits=limits) as client,
            trio.open_nursery() as load,
        ):

            async def steady() -> None:
                outcomes.extend(
                    await under_load(client, numbered_questions(), workers=clients, stop=stop)
                )

            load.start_soon(steady)
            with trio.fail_after(60):
                for replica in cluster.replicas:
                    await _served(cluster.requests, replica.address, SERVED_AFTER_RESTART)
                    signalled = trio.current_time()
                    replica.terminate()
                    code = await replica.wait()
                    exits.append((replica.name, code, trio.current_time() - signalled))
                    await replica.start()
                    await _served(cluster.requests, replica.address, SERVED_AFTER_RESTART)
            stop.set()
        lines = cluster.requests()

    failed = [o for o in outcomes if not (o.status == 200 and o.ends_well and o.code == "done")]
    statuses = nginx_statuses(lines)
    report.count(
        requests=len(outcomes),
        failed=len(failed),
        failures=dict(
            Counter(f"{o.status} {o.code or o.refused_code or o.broken}" for o in failed)
        ),
        exits={name: f"{code} after {seconds:.1f} s" for name, code, seconds in exits},
        restarts=sum(replica.starts - 1 for replica in cluster.replicas),
        nginx_statuses=dict(sorted(statuses.items())),
        passed_on_after_a_refused_connection=sum(len(replicas_tried(line)) > 1 for line in lines),
    )
    assert [code for _, code, _ in exits] == [0, 0]
    assert all(seconds < GRACE_S for _, _, seconds in exits), exits
    assert not failed, failed[:3]
    assert sum(n for status, n in statuses.items() if status >= 500) == 0, statuses


async def _served(requests: Callable[[], list[dict[str, Any]]], address: str, count: int) -> None:
    """Until `count` more requests have been answered by the replica at `address`."""
    before = sum(served_by(line) == address for line in requests())
    while sum(served_by(line) == address for line in requests()) < before + count:  # noqa: ASYNC110
        await trio.sleep(0.02)
