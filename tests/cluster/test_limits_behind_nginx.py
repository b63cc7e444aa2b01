"""Limits through nginx are exact across the two replicas (they share Redis), per client
address as nginx saw it: two clients on different addresses each get the whole burst, no
more, wherever nginx sends them. What a client writes in its own X-Forwarded-For or
Forwarded changes nothing, even a client whose address is itself a trusted proxy's (here
127.0.0.1, nginx's own; in compose, any client on the private networks it trusts)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx

from tests.cluster.balancer import served_by
from tests.cluster.conftest import ClusterOf
from tests.faults.report import CaseReport

BURST = 3
SENT = 2 * BURST
# One request a minute after the burst: nothing comes back while the case runs.
LIMITS = f"[anonymous]\nrequests_per_minute = 1\nburst = {BURST}\nconcurrent_streams = 50\n"
CLIENTS = ("127.0.0.2", "127.0.0.3", "127.0.0.1")


async def test_limits_are_exact_across_replicas_whatever_a_client_forwards(
    cluster_of: ClusterOf, report: CaseReport, tmp_path: Path
) -> None:
    report.did(
        "limits behind nginx",
        f"burst {BURST}, 1 a minute, per address; {SENT} messages from each of "
        f"{', '.join(CLIENTS)}, each with its own made-up X-Forwarded-For and Forwarded",
    )
    limits = tmp_path / "limits.toml"
    limits.write_text(LIMITS)
    statuses: dict[str, list[int]] = {}
    admitted_on: Counter[str] = Counter()
    async with cluster_of(LIMITS_FILE=str(limits)) as (cluster, _):
        for number, address in enumerate(CLIENTS):
            transport = httpx.AsyncHTTPTransport(local_address=address)
            async with httpx.AsyncClient(
                base_url=cluster.url, transport=transport, timeout=10
            ) as client:
                statuses[address] = []
                for sent in range(SENT):
                    made_up = f"203.0.113.{number * SENT + sent + 1}"
                    response = await client.post(
                        "/api/process",
                        json={"message": "Hi?", "message_id": f"m-{address}-{sent}"},
                        headers={"X-Forwarded-For": made_up, "Forwarded": f"for={made_up}"},
                    )
                    statuses[address].append(response.status_code)
        for line in cluster.requests():
            if line["method"] == "POST" and line["status"] == 200:
                admitted_on[cluster.replica_at(served_by(line)).name] += 1

    report.count(
        **{f"answers to {address}": dict(Counter(codes)) for address, codes in statuses.items()},
        admitted_per_replica=dict(sorted(admitted_on.items())),
    )
    for address, codes in statuses.items():
        assert codes == [200] * BURST + [429] * (SENT - BURST), (address, codes)
    assert len(admitted_on) == 2, "the admitted requests did not reach both replicas"
