"""Dollars over HTTP, with the fake upstream and an ensemble that prices its models, on
SQLite and PostgreSQL: what `done` says a run cost is what its stored turn and the usage
ledger say afterwards, and the calls it paid for and did not use (a straggler cut, a hedge
that lost, a call broken off and retried) are shown apart as `wasted_usd`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from service.ensemble.loader import parse_ensemble
from service.ensemble.prices import run_cost
from service.llm import Usage
from tests.databases import BACKENDS, database_url
from tests.fake_upstream import Behaviour, CallRecord, FakeUpstream
from tests.integration.harness import (
    RunningService,
    ensemble_toml,
    iter_events,
    read_events,
    running_service,
)
from tests.integration.test_upstream_faults import BODY, ask, ensemble, upstream

# Per million tokens: (input, output).
PRICES = {"fake-a": (1.0, 10.0), "fake-b": (2.0, 20.0), "fake-summary": (3.0, 30.0)}


def priced(ensemble: str, prices: dict[str, tuple[float, float]] = PRICES) -> str:
    return ensemble + "".join(
        f'\n[prices."{model}"]\ninput_per_million = {i}\noutput_per_million = {o}\n'
        for model, (i, o) in prices.items()
    )


def dollars(model: str, usage: dict[str, int]) -> float:
    per_input, per_output = PRICES[model]
    return (usage["prompt_tokens"] * per_input + usage["completion_tokens"] * per_output) / 1e6


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


async def run(service: RunningService, message_id: str) -> dict[str, Any]:
    body = {"message": "Why is the sky blue?", "message_id": message_id}
    async with service.client.stream("POST", "/api/process", json=body) as response:
        events = await read_events(response)
    assert events[-1].event == "done", events[-1]
    return events[-1].data


async def test_a_reopened_turn_and_the_usage_ledger_show_what_done_said_it_cost(
    tmp_path: Path, url: str
) -> None:
    ensemble = priced(ensemble_toml({"alpha": "fake-a", "beta": "fake-b"}, "fake-summary"))
    async with running_service(
        tmp_path, FakeUpstream(), ensemble=ensemble, env={"DATABASE_URL": url}
    ) as service:
        first = await run(service, "m-1")
        second = await run(service, "m-2")
        stored = (await service.client.get("/api/messages/m-1")).json()
        ledger = (await service.client.get("/api/usage")).json()

    members = {"alpha": "fake-a", "beta": "fake-b", "combine": "fake-summary"}
    expected = {name: dollars(model, first["usage"][name]) for name, model in members.items()}
    assert first["cost"]["members"] == pytest.approx(expected)
    assert first["cost"]["total_usd"] == pytest.approx(sum(expected.values()))
    # The turn, reopened: the run's cost as done gave it, and each answer's own.
    assert stored["cost"] == first["cost"]
    assert {a["agent"]: a["cost_usd"] for a in stored["agents"]} == pytest.approx(
        {"alpha": expected["alpha"], "beta": expected["beta"]}
    )
    # The ledger: each model's dollars over both runs, and the total.
    by_model = {line["model"]: line["cost_usd"] for line in ledger["usage"]}
    for name, model in members.items():
        assert by_model[model] == pytest.approx(
            first["cost"]["members"][name] + second["cost"]["members"][name]
        )
    assert ledger["total"]["cost_usd"] == pytest.approx(
        first["cost"]["total_usd"] + second["cost"]["total_usd"]
    )


WASTE_PRICES = {
    "fake-ok": (1.0, 10.0),
    "fake-straggle": (2.0, 20.0),
    "fake-slowstart": (3.0, 30.0),
    "fake-quick": (4.0, 40.0),
    "fake-cut": (5.0, 50.0),
    "fake-summary": (6.0, 60.0),
}


def reckoned_dollars(call: CallRecord, pieces: int) -> float:
    """What a call cut before its provider reported tokens is reckoned at: a token per four
    characters of what it was sent, and one per piece of text it sent back."""
    prompt = math.ceil(sum(len(m["content"]) for m in call.messages) / 4)
    per_input, per_output = WASTE_PRICES[call.model]
    return (prompt * per_input + pieces * per_output) / 1e6


async def test_stragglers_cut_hedges_lost_and_calls_broken_off_are_shown_as_wasted(
    tmp_path: Path, url: str
) -> None:
    fake = upstream(
        # Each sends its first piece at once, the next 30 s later: cut with exactly one.
        fake_straggle=Behaviour(tokens=("Slow ", "and ", "late."), token_delay_s=30),
        fake_slowstart=Behaviour(tokens=("Late ", "one."), token_delay_s=30),
        fake_quick=Behaviour(reply="Quick hedge."),
        # Two pieces, then the connection drops; the retry answers.
        fake_cut=Behaviour(tokens=("Cut ", "short ", "here."), cut_after_tokens=2, fail_first=1),
    )
    agents = {
        "ok": {"model": "fake-ok"},
        "straggler": {"model": "fake-straggle"},
        "hedged": {
            "model": "fake-slowstart",
            "fallback_models": ["fake-quick"],
            "hedge_after_ms": 100,
        },
        "retried": {"model": "fake-cut", "retries": 1},
    }
    text = priced(ensemble(agents, min_agents=3, straggler_grace_ms=300), WASTE_PRICES)
    async with running_service(tmp_path, fake, ensemble=text, env={"DATABASE_URL": url}) as service:
        events = await ask(service, fake)
        stored = (await service.client.get(f"/api/messages/{BODY['message_id']}")).json()
        ledger = {
            line["model"]: line for line in (await service.client.get("/api/usage")).json()["usage"]
        }

    done = events[-1].data
    assert done["agents"] == {"succeeded": 3, "failed": 0, "cut": 1}
    (straggled,) = fake.calls_for("fake-straggle")
    (lost,) = fake.calls_for("fake-slowstart")
    broken, _ = fake.calls_for("fake-cut")
    assert [c.outcome for c in (straggled, lost, broken)] == ["disconnected", "disconnected", "cut"]
    wasted = {
        "fake-straggle": reckoned_dollars(straggled, 1),
        "fake-slowstart": reckoned_dollars(lost, 1),
        "fake-cut": reckoned_dollars(broken, 2),
    }
    cost = done["cost"]
    assert cost["wasted_usd"] == pytest.approx(sum(wasted.values()))
    # The members' dollars are their answering calls; the total adds the waste.
    assert "straggler" not in cost["members"]
    assert cost["total_usd"] == pytest.approx(sum(cost["members"].values()) + cost["wasted_usd"])
    assert stored["cost"] == cost
    # The ledger counts the wasted calls with their model, tokens and dollars.
    assert ledger["fake-straggle"]["calls"] == 1
    assert ledger["fake-straggle"]["completion_tokens"] == 1
    assert ledger["fake-straggle"]["cost_usd"] == pytest.approx(wasted["fake-straggle"])
    assert ledger["fake-slowstart"]["cost_usd"] == pytest.approx(wasted["fake-slowstart"])
    assert ledger["fake-cut"]["calls"] == 2  # the broken call and the one that answered
    assert ledger["fake-cut"]["cost_usd"] == pytest.approx(
        wasted["fake-cut"] + cost["members"]["retried"]
    )


async def test_a_run_that_wasted_nothing_says_so(tmp_path: Path) -> None:
    ensemble = priced(ensemble_toml({"alpha": "fake-a", "beta": "fake-b"}, "fake-summary"))
    async with running_service(tmp_path, FakeUpstream(), ensemble=ensemble) as service:
        done = await run(service, "m-1")
    assert done["cost"]["wasted_usd"] == 0
    assert done["cost"]["total_usd"] == pytest.approx(sum(done["cost"]["members"].values()))


ERROR_PRICES = {**WASTE_PRICES, "fake-stall": (7.0, 70.0)}


async def ledger_of(service: RunningService) -> dict[str, dict[str, Any]]:
    lines = (await service.client.get("/api/usage")).json()["usage"]
    return {line["model"]: line for line in lines}


async def test_a_run_whose_summary_broke_off_still_puts_the_calls_it_paid_for_in_the_ledger(
    tmp_path: Path, url: str
) -> None:
    fake = upstream(fake_summary=Behaviour(tokens=("Half ", "a ", "summary."), cut_after_tokens=2))
    agents = {"ok": {"model": "fake-ok"}}
    text = priced(ensemble(agents, {"retries": 0}), ERROR_PRICES)
    async with running_service(tmp_path, fake, ensemble=text, env={"DATABASE_URL": url}) as service:
        events = await ask(service, fake)
        ledger = await ledger_of(service)

    assert events[-1].event == "error"
    (answered,) = [e.data for e in events if e.event == "agent.completed"]
    (broken,) = fake.calls_for("fake-summary")
    assert broken.outcome == "cut"
    # The answer the run paid for, and the summary that broke off after two pieces.
    assert (ledger["fake-ok"]["calls"], ledger["fake-ok"]["cost_usd"]) == (
        1,
        pytest.approx(answered["cost_usd"]),
    )
    prompt = math.ceil(sum(len(m["content"]) for m in broken.messages) / 4)
    summary = ledger["fake-summary"]
    assert (summary["calls"], summary["prompt_tokens"], summary["completion_tokens"]) == (
        1,
        prompt,
        2,
    )
    assert summary["cost_usd"] == pytest.approx((prompt * 6.0 + 2 * 60.0) / 1e6)


async def test_a_client_that_hangs_up_still_pays_for_the_answers_and_the_calls_in_flight(
    tmp_path: Path, url: str
) -> None:
    fake = upstream(fake_stall=Behaviour(stall=True))
    agents = {"ok": {"model": "fake-ok"}, "stalled": {"model": "fake-stall"}}
    text = priced(ensemble(agents), ERROR_PRICES)
    async with running_service(tmp_path, fake, ensemble=text, env={"DATABASE_URL": url}) as service:
        async with service.client.stream("POST", "/api/process", json=BODY) as response:
            events = iter_events(response)
            while (answered := await anext(events)).event != "agent.completed":
                pass
            with trio.fail_after(5):
                stalled = await fake.wait_for_call("fake-stall")
        with trio.fail_after(5):
            await stalled.ended.wait()
            path = f"/api/messages/{BODY['message_id']}"
            while (await service.client.get(path)).json()["status"] == "running":  # noqa: ASYNC110
                await trio.sleep(0.02)
        status = (await service.client.get(path)).json()["status"]
        ledger = await ledger_of(service)

    assert status == "cancelled"
    assert stalled.outcome == "disconnected"
    assert (ledger["fake-ok"]["calls"], ledger["fake-ok"]["cost_usd"]) == (
        1,
        pytest.approx(answered.data["cost_usd"]),
    )
    # The call cut in flight: its prompt was sent, nothing came back.
    prompt = math.ceil(sum(len(m["content"]) for m in stalled.messages) / 4)
    line = ledger["fake-stall"]
    assert (line["calls"], line["prompt_tokens"], line["completion_tokens"]) == (1, prompt, 0)
    assert line["cost_usd"] == pytest.approx(prompt * 7.0 / 1e6)


OPENAI_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openai.toml"


async def test_the_mock_answering_for_real_models_costs_nothing(tmp_path: Path) -> None:
    """USE_LLM_MOCK=true with an ensemble of real OpenAI models: the mock answers, and a
    mock answer spends no money, though the table knows those models' prices."""
    real = parse_ensemble(OPENAI_EXAMPLE.read_text(), source=str(OPENAI_EXAMPLE))
    tokens = {"combine": Usage(1000, 1000)}
    # The real rate, which a mock call must not be charged.
    assert run_cost(real, tokens, {"combine": "gpt-4o-mini"})["combine"] == pytest.approx(0.00075)
    env = {
        "USE_LLM_MOCK": "true",
        "ENSEMBLE_FILE": str(OPENAI_EXAMPLE),
        "MOCK_FIRST_TOKEN_MS": "0",
        "MOCK_TOKEN_MS": "0",
    }
    async with running_service(tmp_path, None, env=env) as service:
        done = await run(service, "m-1")
        stored = (await service.client.get("/api/messages/m-1")).json()
        ledger = await ledger_of(service)

    assert set(done["cost"]["members"]) == {"creative", "factual", "combine"}
    assert done["cost"] == {
        "members": {"creative": 0.0, "factual": 0.0, "combine": 0.0},
        "wasted_usd": 0.0,
        "total_usd": 0.0,
    }
    assert [a["cost_usd"] for a in stored["agents"]] == [0.0, 0.0]
    assert ledger
    assert all(line["cost_usd"] == 0 for line in ledger.values())
    assert sum(line["completion_tokens"] for line in ledger.values()) > 0
