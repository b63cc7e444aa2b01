"""A soak: thousands of requests, some read to their end and some hung up on at a random
point of their stream (or as soon as the headers arrive), against the service on
PostgreSQL. Afterwards its open file descriptors are back to what they were after a
warm-up batch, its resident memory is within a stated allowance of it, and no message is
left `running`."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from service.storage.database import POOL_SIZE
from tests.databases import POSTGRES_URL
from tests.faults.clients import StreamOutcome, ask
from tests.faults.probes import Held, log_matches
from tests.faults.records import stored_messages
from tests.faults.report import CaseReport
from tests.service_process import served

POSTGRES_PORT = urlsplit(POSTGRES_URL).port or 5432

MOCK = {"MOCK_FIRST_TOKEN_MS": "5", "MOCK_TOKEN_MS": "1"}
CLIENTS = 8
# What a warmed-up process may still grow by: allocator arenas and caches filling up.
RSS_ALLOWANCE_MIB = 16
SEED = 20261130
WRITE_FAILED = r"storing message (\d+) failed(?: in time)?; the stream went on"


@dataclass(frozen=True)
class Soak:
    warm_up: int
    requests: int


async def batch(base_url: str, prefix: str, count: int, rng: random.Random) -> list[StreamOutcome]:
    """`count` requests from CLIENTS clients at once: half read to the end, half hang up
    after a random number of events (0: at the headers). The clients' connections are
    closed when it returns."""
    outcomes: list[StreamOutcome] = []
    numbers = iter(range(count))
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:

        async def one_client() -> None:
            for number in numbers:
                hang_up_after = None if rng.random() < 0.5 else rng.randint(0, 30)
                payload = {"message": f"Soak {number}?", "message_id": f"{prefix}-{number}"}
                await ask(client, payload, hang_up_after=hang_up_after, into=outcomes)

        async with trio.open_nursery() as nursery:
            for _ in range(CLIENTS):
                nursery.start_soon(one_client)
    return outcomes


async def settled(pid: int, *, fds_at_most: int, within_s: float) -> Held:
    """What the process holds once its fds are down to `fds_at_most` (or `within_s` passed).
    The database pool's connections are counted apart: the pool keeps up to POOL_SIZE."""
    held = Held.of(pid, pool_port=POSTGRES_PORT)
    with trio.move_on_after(within_s):
        while held.fds > fds_at_most:
            await trio.sleep(0.2)
            held = Held.of(pid, pool_port=POSTGRES_PORT)
    await trio.sleep(0.5)
    return Held.of(pid, pool_port=POSTGRES_PORT)


@pytest.mark.parametrize(
    "soak",
    [
        pytest.param(Soak(100, 300), id="small"),
        pytest.param(Soak(500, 5000), id="full", marks=pytest.mark.faults),
    ],
)
async def test_a_soak_of_completions_and_hang_ups_leaves_nothing_behind(
    tmp_path: Path, postgres_url: str, report: CaseReport, soak: Soak
) -> None:
    report.did(
        f"soak, {soak.requests} requests",
        f"PostgreSQL; {CLIENTS} clients, {soak.warm_up} requests to warm up, then "
        f"{soak.requests}: half read to the end, half hung up on after 0-30 events",
    )
    rng = random.Random(SEED)
    async with served(tmp_path, DATABASE_URL=postgres_url, **MOCK) as service:
        pid = service.process.pid
        await batch(service.url, "warm", soak.warm_up, rng)
        baseline = await settled(pid, fds_at_most=0, within_s=2)
        started = trio.current_time()
        outcomes = await batch(service.url, "soak", soak.requests, rng)
        took = trio.current_time() - started
        after = await settled(pid, fds_at_most=baseline.fds, within_s=15)
        kept = await stored_messages(postgres_url)
        with trio.move_on_after(10):
            while any(m.status == "running" for m in kept.values()):
                await trio.sleep(0.5)
                kept = await stored_messages(postgres_url)
        failed_writes = log_matches(service.log, WRITE_FAILED)

    read_through = [o for o in outcomes if not o.hung_up]
    statuses = Counter(m.status for m in kept.values())
    report.count(
        requests=len(outcomes),
        seconds=round(took),
        read_to_the_end=len(read_through),
        hung_up=sum(o.hung_up for o in outcomes),
        read_to_the_end_with_one_terminal_event=sum(o.ends_well for o in read_through),
        not_200=sum(o.status != 200 for o in outcomes),
        stored=dict(sorted(statuses.items())),
        failed_writes_logged=len(failed_writes),
        fds_baseline=baseline.fds,
        fds_after=after.fds,
        database_connections=after.pooled,
        rss_baseline_mib=round(baseline.rss_mib, 1),
        rss_after_mib=round(after.rss_mib, 1),
        rss_allowance_mib=RSS_ALLOWANCE_MIB,
    )

    assert len(outcomes) == soak.requests
    assert all(o.status == 200 for o in outcomes)
    assert all(o.ends_well for o in read_through)
    assert statuses["running"] == 0, f"left running; writes that failed: {failed_writes}"
    assert after.fds <= baseline.fds
    assert after.pooled <= POOL_SIZE
    assert after.rss_mib <= baseline.rss_mib + RSS_ALLOWANCE_MIB
