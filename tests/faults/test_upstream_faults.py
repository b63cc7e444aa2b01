"""Every fault of the fake upstream (reset, cut, stall, 429, 5xx, malformed) hitting one agent
and the summarizer of 50 concurrent streams: each stream ends with exactly one terminal
event, no provider text reaches a client, every upstream call ends, and once the pool's
keep-alive has passed the service holds no connection to the upstream but those of the
one request made since."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from service.llm.pool import KEEPALIVE_S
from tests.fake_upstream import Behaviour, FakeUpstream, serve_fake_upstream
from tests.faults.clients import StreamOutcome, ask
from tests.faults.probes import connections_to
from tests.faults.report import CaseReport
from tests.faults.sizes import sized
from tests.integration.harness import host_port, upstream_env
from tests.service_process import served

FAULTS = {
    "reset": Behaviour(reset=True),
    "cut": Behaviour(
        reply="This reply stops after three tokens and never ends.", cut_after_tokens=3
    ),
    "stall": Behaviour(stall=True),
    "429": Behaviour(status=429),
    "5xx": Behaviour(status=503),
    "malformed": Behaviour(malformed=True),
}
# Each member's deadline: a stalled one is cut then, a retried one gives up by then.
MEMBER_TIMEOUT_S = 1.5


@dataclass(frozen=True)
class Fan:
    streams_per_fault: int
    # All faults at once (quick), or one fault after another (each alone at its size).
    together: bool


def ensembles() -> str:
    """One ensemble per fault: an agent and the summarizer meet it, a steady agent does
    not; `steady` meets none."""

    def ensemble(name: str, faulty: str | None) -> str:
        lines = [f"[ensembles.{name}]"]
        if faulty is not None:
            lines += [
                f"[[ensembles.{name}.agents]]",
                'name = "faulty"',
                f'model = "fake-{faulty}"',
                f"timeout_s = {MEMBER_TIMEOUT_S}",
                'system_prompt = "You meet a fault."',
            ]
        lines += [
            f"[[ensembles.{name}.agents]]",
            'name = "steady"',
            'model = "fake-ok"',
            'system_prompt = "You answer."',
            f"[ensembles.{name}.summarizer]",
            'name = "combine"',
            f'model = "fake-{faulty or "ok"}"',
            f"timeout_s = {MEMBER_TIMEOUT_S}",
            'system_prompt = "Combine."',
        ]
        return "\n".join(lines)

    parts = ['default = "steady"', ensemble("steady", None)]
    parts += [ensemble(f"fault-{fault}", fault) for fault in FAULTS]
    return "\n\n".join(parts) + "\n"


async def ask_many(
    client: httpx.AsyncClient, fault: str, count: int, outcomes: dict[str, list[StreamOutcome]]
) -> None:
    found = outcomes.setdefault(fault, [])
    async with trio.open_nursery() as nursery:
        for number in range(count):
            payload = {
                "message": f"Question {number}?",
                "message_id": f"{fault}-{number}",
                "ensemble": f"fault-{fault}",
            }
            nursery.start_soon(partial(ask, client, payload, into=found))


@pytest.mark.parametrize("fan", sized(small=Fan(5, together=True), full=Fan(50, together=False)))
async def test_every_upstream_fault_ends_each_stream_once_and_leaves_nothing_open(
    tmp_path: Path, report: CaseReport, fan: Fan
) -> None:
    order = "all at once" if fan.together else "one after another"
    report.did(
        f"upstream faults, {fan.streams_per_fault} streams each",
        f"fake upstream over HTTP: {', '.join(FAULTS)} ({order}), each for one agent and the "
        f"summarizer of {fan.streams_per_fault} concurrent streams; then "
        f"{KEEPALIVE_S:.0f} s of keep-alive and one more request",
    )
    fake = FakeUpstream(
        {
            "fake-ok": Behaviour(reply="The steady agent answers."),
            **{f"fake-{k}": b for k, b in FAULTS.items()},
        }
    )
    ensemble_file = tmp_path / "ensembles.toml"
    ensemble_file.write_text(ensembles())
    outcomes: dict[str, list[StreamOutcome]] = {}
    calls_open_after: dict[str, int] = {}
    async with trio.open_nursery() as upstream:
        binds = await upstream.start(serve_fake_upstream, fake)
        upstream_port = host_port(binds[0])[1]
        env = {**upstream_env(binds, ensemble_file), "DATABASE_URL": "none"}
        async with served(tmp_path, **env) as service:
            limits = httpx.Limits(max_connections=None)
            async with httpx.AsyncClient(base_url=service.url, timeout=30, limits=limits) as client:
                if fan.together:
                    async with trio.open_nursery() as nursery:
                        for fault in FAULTS:
                            nursery.start_soon(
                                ask_many, client, fault, fan.streams_per_fault, outcomes
                            )
                for fault in FAULTS if not fan.together else ():
                    await ask_many(client, fault, fan.streams_per_fault, outcomes)
                    with trio.move_on_after(5):
                        while fake.open_calls():  # noqa: ASYNC110
                            await trio.sleep(0.05)
                    calls_open_after[fault] = len(fake.open_calls())
                with trio.move_on_after(5):
                    while fake.open_calls():  # noqa: ASYNC110
                        await trio.sleep(0.05)
                calls_open_at_end = len(fake.open_calls())
                held_after_load = connections_to(upstream_port)
                # Idle connections are kept KEEPALIVE_S for the next call; the next request
                # after that closes the stale ones.
                await trio.sleep(KEEPALIVE_S + 0.5)
                last = await ask(client, {"message": "Still there?", "message_id": "last"})
                held_at_end = connections_to(upstream_port)
        upstream.cancel_scope.cancel()

    every = [o for found in outcomes.values() for o in found]
    per_fault = {
        fault: "/".join(
            f"{code} {n}" for code, n in Counter(str(o.code) for o in found).most_common()
        )
        for fault, found in outcomes.items()
    }
    report.count(
        streams=len(every),
        answered_200=sum(o.status == 200 for o in every),
        one_terminal_event=sum(o.ends_well for o in every),
        no_terminal_event=sum(o.terminals == 0 for o in every),
        several_terminal_events=sum(o.terminals > 1 for o in every),
        provider_text_leaked=sum(o.leaked for o in every),
        **{f"ends_{fault}": codes for fault, codes in per_fault.items()},
        upstream_calls=len(fake.calls),
        upstream_calls_left_open=calls_open_at_end,
        upstream_connections_after_load=sum(held_after_load.values()),
        upstream_connections_after_keep_alive_and_one_request=sum(held_at_end.values()),
    )

    assert len(every) == len(FAULTS) * fan.streams_per_fault
    assert all(o.status == 200 for o in every)
    assert all(o.ends_well for o in every)
    assert not any(o.leaked for o in every)
    # Every stream met the fault in its summarizer: none can end with `done`.
    assert not any(o.code == "done" for o in every), per_fault
    assert not any(calls_open_after.values()), calls_open_after
    assert calls_open_at_end == 0
    assert last.code == "done"
    # The last request made at most two calls (an agent, the summarizer), so its pool holds
    # at most two connections; anything more was left open by the faults.
    assert sum(held_at_end.values()) <= 2, held_at_end
    assert set(held_at_end) <= {"established"}, held_at_end
