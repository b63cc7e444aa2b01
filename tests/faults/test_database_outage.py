"""PostgreSQL unreachable for a while under load (a TcpProxy in front of it, cut and
restored): every stream still ends with exactly one terminal event; every message a client
was answered for is stored whole once the database is back, or its loss is counted and
logged (a message that could not be stored at its start runs unrecorded, a write that
failed after its retries is logged with the message); routes that do not need the
database never answer 5xx, and the history route answers 503, never 500."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.faults.clients import Probes, StreamOutcome, numbered_questions, probe, under_load
from tests.faults.outage import proxied
from tests.faults.probes import log_matches, metric
from tests.faults.records import stored_messages
from tests.faults.report import CaseReport
from tests.faults.sizes import sized
from tests.service_process import served

# A stream takes about 0.7 s.
MOCK = {"MOCK_FIRST_TOKEN_MS": "100", "MOCK_TOKEN_MS": "10"}
NO_DATABASE_NEEDED = ("/healthz", "/readyz", "/metrics", "/admin/ensemble")
HISTORY = "/api/conversations"
UNRECORDED = r"running it unrecorded .*message_id=([^\] ]+)"
WRITE_FAILED = r"storing message (\d+) failed(?: in time)?; the stream went on"


@dataclass(frozen=True)
class Outage:
    clients: int
    before_s: float
    outage_s: float
    after_s: float


@pytest.mark.parametrize("size", sized(small=Outage(4, 1, 2, 2), full=Outage(16, 3, 5, 5)))
async def test_postgresql_unreachable_under_load_loses_nothing_unaccounted(
    tmp_path: Path, postgres_url: str, report: CaseReport, size: Outage
) -> None:
    report.did(
        f"PostgreSQL unreachable {size.outage_s:g} s, {size.clients} clients",
        f"{size.clients} clients streaming back to back, probes of "
        f"{', '.join(NO_DATABASE_NEEDED)} and {HISTORY} every 0.1 s; the proxy in front of "
        f"PostgreSQL cut after {size.before_s:g} s, back {size.outage_s:g} s later, "
        f"{size.after_s:g} s more",
    )
    async with proxied(5432) as database:
        via_proxy = postgres_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{database.port}/")
        assert via_proxy != postgres_url
        async with served(tmp_path, DATABASE_URL=via_proxy, **MOCK) as service:
            limits = httpx.Limits(max_connections=None)
            async with httpx.AsyncClient(base_url=service.url, timeout=30, limits=limits) as client:
                stop = trio.Event()
                outcomes: list[StreamOutcome] = []
                plain, history = Probes(), Probes()
                questions = numbered_questions()

                async def load() -> None:
                    outcomes.extend(
                        await under_load(client, questions, workers=size.clients, stop=stop)
                    )

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(load)
                    nursery.start_soon(
                        partial(
                            probe, client, NO_DATABASE_NEEDED, every_s=0.1, stop=stop, into=plain
                        )
                    )
                    nursery.start_soon(
                        partial(probe, client, (HISTORY,), every_s=0.1, stop=stop, into=history)
                    )
                    await trio.sleep(size.before_s)
                    await database.outage(size.outage_s)
                    await trio.sleep(size.after_s)
                    stop.set()
                write_errors = await metric(
                    client, "fanout_storage_errors_total", operation="write"
                )
        log = bytes(service.log)
    kept = await stored_messages(postgres_url)

    unrecorded = set(log_matches(log, UNRECORDED))
    failed_pks = {int(pk) for pk in log_matches(log, WRITE_FAILED)}
    answered = [o for o in outcomes if o.status == 200]
    verdicts: Counter[str] = Counter()
    unaccounted: list[str] = []
    for outcome in answered:
        message = kept.get(outcome.message_id)
        if message is None:
            verdict = "unrecorded (logged)" if outcome.message_id in unrecorded else "missing"
        elif (
            message.status in ("completed", "failed")
            and message.has_events_up_to(len(outcome.events))
            and outcome.last is not None
            and message.last_event_type == outcome.last.event
        ):
            verdict = "stored whole"
        elif message.pk in failed_pks:
            verdict = f"{message.status} with a failed write (logged)"
        else:
            verdict = f"{message.status}, not whole (not logged)"
        verdicts[verdict] += 1
        if verdict != "stored whole" and "(logged)" not in verdict:
            unaccounted.append(outcome.message_id)
    history_statuses = Counter(status for (_, status) in history.statuses.elements())
    report.count(
        streams=len(outcomes),
        answered=len(answered),
        ended_with_one_terminal_event=sum(o.ends_well for o in outcomes),
        done=sum(o.code == "done" for o in outcomes),
        **{verdict.replace(" ", "_"): n for verdict, n in sorted(verdicts.items())},
        unaccounted=len(unaccounted),
        failed_writes_counted=int(write_errors),
        failed_writes_logged=len(log_matches(log, WRITE_FAILED)),
        probes=sum(plain.statuses.values()),
        probe_5xx=plain.server_errors,
        probes_unanswered=sum(plain.failures.values()),
        history_answers=dict(sorted(history_statuses.items())),
        history_unanswered=sum(history.failures.values()),
    )

    assert len(answered) == len(outcomes), Counter((o.status, o.refused_code) for o in outcomes)
    assert all(o.ends_well for o in outcomes)
    assert not unaccounted, verdicts
    assert int(write_errors) == len(log_matches(log, WRITE_FAILED))
    assert set(plain.statuses.elements()) <= {(route, 200) for route in NO_DATABASE_NEEDED}
    assert not plain.failures
    assert set(history_statuses) <= {200, 503}, history_statuses
    assert not history.failures
    # The outage was felt, or the case tested nothing.
    assert verdicts["stored whole"] < len(answered) or 503 in history_statuses
