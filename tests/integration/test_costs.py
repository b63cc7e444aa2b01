"""Dollars over HTTP, with the fake upstream and an ensemble that prices its models, on
SQLite and PostgreSQL: what `done` says a run cost is what its stored turn and the usage
ledger say afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.databases import BACKENDS, database_url
from tests.fake_upstream import FakeUpstream
from tests.integration.harness import RunningService, ensemble_toml, read_events, running_service

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
