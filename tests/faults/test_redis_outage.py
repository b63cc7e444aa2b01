"""Redis unreachable for a while under load, with the Redis limiter on (a TcpProxy in front
of it, cut and restored): each request gets the policy RATE_LIMIT_ON_ERROR names, `open`
admits it and `closed` refuses it with 503 `rate_limiter_unavailable` and a Retry-After;
never another 5xx, never a request left hanging, every admitted stream ends with exactly
one terminal event, and limits are checked in Redis again once it is back."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import coredis
import httpx
import pytest
import trio

from tests.databases import redis_reachable, worker_number
from tests.faults.clients import (
    Probes,
    StreamOutcome,
    ms,
    numbered_questions,
    percentile,
    probe,
    under_load,
)
from tests.faults.outage import proxied
from tests.faults.probes import metric
from tests.faults.report import CaseReport
from tests.faults.sizes import sized
from tests.service_process import served

# A Redis database of the suite's own, emptied afterwards: other tests use database 0.
# Emptied whole at the end: one of its own per test process (tests/databases.py has 1 to 8).
REDIS_DATABASE = 9 + worker_number()
MOCK = {"MOCK_FIRST_TOKEN_MS": "100", "MOCK_TOKEN_MS": "10"}
LIMITS = "[anonymous]\nrequests_per_minute = 60000\nburst = 1000\nconcurrent_streams = 1000\n"
ROUTES = ("/healthz", "/readyz", "/metrics")


@dataclass(frozen=True)
class Outage:
    clients: int
    before_s: float
    outage_s: float
    after_s: float


async def forget_redis_database(port: int) -> None:
    client: coredis.Redis[str] = coredis.Redis(
        host="127.0.0.1", port=port, db=REDIS_DATABASE, decode_responses=True
    )
    async with client:
        keys = [key async for key in client.scan_iter(match="*")]
        if keys:
            await client.delete(keys)


@pytest.mark.parametrize("policy", ["open", "closed"])
@pytest.mark.parametrize("size", sized(small=Outage(4, 1, 1.5, 1.5), full=Outage(16, 3, 5, 5)))
async def test_redis_unreachable_under_load_is_the_configured_policy(
    tmp_path: Path, postgres_url: str, report: CaseReport, policy: str, size: Outage
) -> None:
    report.did(
        f"Redis unreachable {size.outage_s:g} s, RATE_LIMIT_ON_ERROR={policy}, "
        f"{size.clients} clients",
        f"Redis limits (rate, streams) and relay; {size.clients} clients streaming back to "
        f"back; the proxy in front of Redis cut after {size.before_s:g} s, back "
        f"{size.outage_s:g} s later, {size.after_s:g} s more",
    )
    await redis_reachable()
    limits = tmp_path / "limits.toml"
    limits.write_text(LIMITS)
    async with proxied(6379) as redis:
        env = {
            **MOCK,
            "DATABASE_URL": postgres_url,
            "LIMITS_FILE": str(limits),
            "REDIS_URL": f"redis://127.0.0.1:{redis.port}/{REDIS_DATABASE}",
            "RATE_LIMIT_ON_ERROR": policy,
        }
        try:
            async with served(tmp_path, **env) as service:
                client_limits = httpx.Limits(max_connections=None)
                async with httpx.AsyncClient(
                    base_url=service.url, timeout=30, limits=client_limits
                ) as client:
                    stop = trio.Event()
                    outcomes: list[StreamOutcome] = []
                    probes = Probes()
                    questions = numbered_questions()

                    async def load() -> None:
                        outcomes.extend(
                            await under_load(client, questions, workers=size.clients, stop=stop)
                        )

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(load)
                        nursery.start_soon(
                            partial(probe, client, ROUTES, every_s=0.1, stop=stop, into=probes)
                        )
                        await trio.sleep(size.before_s)
                        cut_at, back_at = await redis.outage(size.outage_s)
                        await trio.sleep(size.after_s)
                        stop.set()
                    limiter_errors = await metric(client, "fanout_limiter_errors_total")
        finally:
            await forget_redis_database(6379)

    def during(outcome: StreamOutcome) -> bool:
        return cut_at <= outcome.started_at < back_at

    # Once back, a request admitted by Redis again (the first after the cut may still find a
    # connection the cut broke).
    after = [o for o in outcomes if o.started_at >= back_at + 0.5]
    answers = Counter(
        (o.status, o.refused_code) if o.status != 200 else (200, None) for o in outcomes
    )
    waits = [o.headers_at - o.started_at for o in outcomes if o.headers_at is not None]
    refused = [o for o in outcomes if o.status == 503]
    report.count(
        requests=len(outcomes),
        during_the_outage=sum(during(o) for o in outcomes),
        admitted=answers[(200, None)],
        refused_503_limiter_unavailable=answers[(503, "rate_limiter_unavailable")],
        other_answers=sum(n for key, n in answers.items() if key[0] not in (200, 503)),
        unanswered=sum(o.status is None for o in outcomes),
        admitted_ended_with_one_terminal_event=sum(
            o.ends_well for o in outcomes if o.status == 200
        ),
        admitted_after_redis_returned=f"{sum(o.status == 200 for o in after)}/{len(after)}",
        limiter_errors=int(limiter_errors),
        slowest_answer=ms(max(waits, default=0)),
        median_answer=ms(percentile(waits, 0.5)),
        probe_5xx=probes.server_errors,
        probes_unanswered=sum(probes.failures.values()),
    )

    assert all(o.status is not None for o in outcomes), "a request got no answer"
    assert all(o.ends_well for o in outcomes if o.status == 200)
    assert limiter_errors > 0, "the outage was never felt"
    if policy == "open":
        assert set(answers) == {(200, None)}, answers
    else:
        assert set(answers) <= {(200, None), (503, "rate_limiter_unavailable")}, answers
        assert refused, "the closed policy refused nothing during the outage"
        # Refused while Redis was away, never once it was back.
        assert all(o.started_at < back_at + 0.5 for o in refused)
    assert after
    assert all(o.status == 200 for o in after)
    assert not probes.server_errors
    assert not probes.failures
