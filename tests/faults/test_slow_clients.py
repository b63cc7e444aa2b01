"""Slow and stuck clients: slowloris connections, idle connections and a client that never
reads its stream, all at once. Other clients keep being served (their latency is reported
beside the same clients' latency before), the service's memory stays within a stated bound
per hostile connection, its file descriptors come back once the hostile clients leave, and
the stuck stream is ended by its deadline (REQUEST_TIMEOUT_S + 2 s), the service closing
the connection while its unsent data waits."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.fake_upstream import Behaviour, FakeUpstream, serve_fake_upstream
from tests.faults.clients import StreamOutcome, ask, ms, percentile
from tests.faults.hostile import StuckReader, Tally, idle, never_read, slowloris
from tests.faults.probes import Held, connections_to
from tests.faults.report import CaseReport
from tests.faults.sizes import sized
from tests.integration.harness import host_port, upstream_env
from tests.service_process import served

# A stream's writes end at its deadline: the request's, plus 2 s (README, SEND_TIMEOUT_S).
WRITE_GRACE_S = 2
# Scheduling on a loaded 2-core machine, not part of the behaviour.
LATE_S = 3
# The memory a hostile connection may cost the service, and a fixed allowance besides (the
# stuck stream's ~6 MB answer, buffers).
MIB_PER_CONNECTION = 64 / 1024
MIB_FIXED = 48
ENSEMBLES = """default = "quick"

[ensembles.quick]
[[ensembles.quick.agents]]
name = "quick"
model = "fake-quick"
system_prompt = "You answer."
[ensembles.quick.summarizer]
name = "combine"
model = "fake-quick"
system_prompt = "Combine."

[ensembles.big]
[[ensembles.big.agents]]
name = "quick"
model = "fake-quick"
system_prompt = "You answer."
[ensembles.big.summarizer]
name = "combine"
model = "fake-big"
system_prompt = "Combine."
"""
# About 6 MB of summary: more than the socket buffers hold for a reader that never reads.
BIG_TOKENS = ("x" * 4000 + " ",) * 1500


@dataclass(frozen=True)
class Crowd:
    slowloris: int
    idle: int
    request_timeout_s: int

    @property
    def stream_deadline_s(self) -> int:
        return self.request_timeout_s + WRITE_GRACE_S


def ensure_file_limit(needed: int) -> int:
    """Raise this process's soft limit on open files to `needed` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"{needed} open files are needed; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def served_steadily(
    client: httpx.AsyncClient, stop: trio.Event, into: list[StreamOutcome]
) -> None:
    """One well-behaved client asking again as soon as its last stream ended."""
    number = 0
    while not stop.is_set():
        number += 1
        payload = {"message": f"Steady {number}?", "message_id": f"steady-{len(into)}"}
        await ask(client, payload, into=into)


def pooled(upstream_port: int) -> int:
    """The service's connections to the upstream (idle ones are kept for reuse)."""
    return sum(connections_to(upstream_port).values())


def latency(outcomes: list[StreamOutcome]) -> str:
    seconds = [o.seconds for o in outcomes]
    return (
        f"p50 {ms(percentile(seconds, 0.5))} p95 {ms(percentile(seconds, 0.95))} "
        f"max {ms(max(seconds, default=0))} ({len(seconds)})"
    )


@pytest.mark.parametrize("crowd", sized(small=Crowd(20, 200, 2), full=Crowd(200, 2000, 5)))
async def test_slow_and_stuck_clients_do_not_starve_the_others(
    tmp_path: Path, report: CaseReport, crowd: Crowd
) -> None:
    report.did(
        f"slowloris {crowd.slowloris}, idle {crowd.idle}, a stuck reader",
        f"{crowd.slowloris} slowloris connections (a header line a second), {crowd.idle} idle "
        f"connections (both reopened when the server closes them) and a client that never "
        f"reads a ~6 MB stream, until 1 s after the stuck stream ended; two steady clients "
        f"throughout; REQUEST_TIMEOUT_S={crowd.request_timeout_s}",
    )
    hostile = crowd.slowloris + crowd.idle + 1
    file_limit = ensure_file_limit(hostile + 1024)
    fake = FakeUpstream(
        {
            "fake-quick": Behaviour(reply="A quick answer."),
            "fake-big": Behaviour(tokens=BIG_TOKENS),
        }
    )
    ensemble_file = tmp_path / "ensembles.toml"
    ensemble_file.write_text(ENSEMBLES)
    before: list[StreamOutcome] = []
    during: list[StreamOutcome] = []
    slow, idling = Tally(), Tally()
    stuck = StuckReader()
    async with trio.open_nursery() as upstream:
        binds = await upstream.start(serve_fake_upstream, fake)
        upstream_port = host_port(binds[0])[1]
        env = {
            **upstream_env(binds, ensemble_file),
            "DATABASE_URL": "none",
            "REQUEST_TIMEOUT_S": str(crowd.request_timeout_s),
        }
        async with served(tmp_path, **env) as service:
            pid = service.process.pid
            host, port = host_port(service.url)
            # No keep-alive: between requests the steady clients hold no connection.
            limits = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=service.url, timeout=30, limits=limits) as client:
                for number in range(20):
                    await ask(client, {"message": "Warm up?", "message_id": f"warm-{number}"})
                baseline, baseline_pooled = Held.of(pid), pooled(upstream_port)
                stop_steady = trio.Event()
                async with trio.open_nursery() as steady:
                    for _ in range(2):
                        steady.start_soon(served_steadily, client, stop_steady, before)
                    await trio.sleep(2)
                    stop_steady.set()
                stop_steady, stop_hostile = trio.Event(), trio.Event()
                peak = baseline
                async with trio.open_nursery() as nursery:
                    for _ in range(2):
                        nursery.start_soon(served_steadily, client, stop_steady, during)
                    every = {"stop": stop_hostile}
                    nursery.start_soon(
                        partial(slowloris, host, port, crowd.slowloris, **every, tally=slow)
                    )
                    nursery.start_soon(partial(idle, host, port, crowd.idle, **every, tally=idling))
                    payload = {"message": "A long one?", "message_id": "stuck", "ensemble": "big"}
                    nursery.start_soon(
                        partial(never_read, host, port, payload, **every, into=stuck)
                    )
                    with trio.move_on_after(crowd.stream_deadline_s + LATE_S):
                        ended_at = None
                        while ended_at is None or trio.current_time() < ended_at + 1:
                            now = Held.of(pid)
                            peak = Held(max(peak.rss_mib, now.rss_mib), max(peak.fds, now.fds))
                            await trio.sleep(0.25)
                            ended_at = stuck.closed_at
                    stop_hostile.set()
                    stop_steady.set()
                # Upstream connections kept for reuse are not the hostile clients' doing.
                fds_back = Held.of(pid)
                with trio.move_on_after(10):
                    while fds_back.fds - pooled(upstream_port) > baseline.fds - baseline_pooled:
                        await trio.sleep(0.2)
                        fds_back = Held.of(pid)
                pooled_back = pooled(upstream_port)
            stopped_reading = service.log.count(b"the client stopped reading; closing")
        upstream.cancel_scope.cancel()

    stuck_after = None if stuck.closed_at is None else stuck.closed_at - stuck.sent_at
    rss_bound = baseline.rss_mib + MIB_FIXED + hostile * MIB_PER_CONNECTION
    report.count(
        file_limit=file_limit,
        steady_before=latency(before),
        steady_during=latency(during),
        steady_during_not_ending_well=sum(not o.ends_well for o in during),
        slowloris_opened=slow.opened,
        slowloris_closed_by_server=slow.closed_by_server,
        idle_opened=idling.opened,
        idle_closed_by_server=idling.closed_by_server,
        refused=slow.refused + idling.refused,
        stuck_stream_ended_after=f"{stuck_after:.1f} s ({stuck.how})" if stuck_after else "never",
        stuck_streams_logged=stopped_reading,
        fds_baseline=baseline.fds,
        fds_peak=peak.fds,
        fds_after=fds_back.fds,
        upstream_connections_baseline_after=f"{baseline_pooled}/{pooled_back}",
        rss_baseline_mib=round(baseline.rss_mib, 1),
        rss_peak_mib=round(peak.rss_mib, 1),
        rss_bound_mib=round(rss_bound, 1),
        rss_after_mib=round(fds_back.rss_mib, 1),
    )

    assert during
    assert all(o.status == 200 for o in during)
    assert all(o.ends_well for o in during)
    assert peak.fds >= baseline.fds + hostile // 2, "the hostile clients were never held"
    assert stuck_after is not None, "the stuck stream was never ended"
    assert stuck_after <= crowd.stream_deadline_s + LATE_S
    assert stopped_reading == 1
    assert peak.rss_mib <= rss_bound
    assert fds_back.fds - pooled_back <= baseline.fds - baseline_pooled
