"""Scenario 12's parts (scripts/bench/strategies.py): the ensembles it writes, its upstream,
and the check that a strategy ran as meant, against the real service in its own process."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx2
import pytest

from scripts.bench.deliberating_upstream import RANKING, SELECTION
from scripts.bench.processes import ensemble_file, service_env, started
from scripts.bench.strategies import (
    AGENTS,
    STRATEGIES,
    UPSTREAM,
    check_deliberation,
    upstream_calls,
)
from service.ensemble import load_ensemble


def test_each_strategys_ensemble_loads_and_says_how_many_calls_it_makes(tmp_path: Path) -> None:
    calls = {}
    for strategy, options in STRATEGIES:
        summarizer = None if strategy == "vote" else "bench-judge"
        path = ensemble_file(
            tmp_path / f"{strategy}.toml",
            AGENTS,
            "bench-answer",
            summarizer,
            strategy=strategy,
            deliberation=options,
        )
        ensemble = load_ensemble(path)
        assert ensemble.strategy == strategy
        assert len(ensemble.agents) == AGENTS
        calls[strategy] = ensemble.calls_per_request
    # 3 agents: answers, plus reviews, layers or rounds, plus the summarizer's call.
    assert calls == {"summarize": 4, "vote": 3, "usc": 4, "council": 7, "moa": 7, "debate": 10}


async def test_the_upstream_reviews_selects_and_counts_its_calls(tmp_path: Path) -> None:
    async with started(UPSTREAM, {}, tmp_path / "upstream.log") as upstream:
        assert await upstream_calls(upstream.url) == 0
        async with httpx2.AsyncClient(base_url=f"{upstream.url}/v1", timeout=10) as http:

            async def reply(model: str, prompt: str) -> str:
                body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
                response = (await http.post("/chat/completions", json=body)).raise_for_status()
                text: str = response.json()["choices"][0]["message"]["content"]
                return text

            assert await reply("bench-answer", "What is it?") == "A short answer."
            assert await reply("bench-answer", "Rank them. FINAL RANKING: ...") == RANKING
            assert await reply("bench-judge", "Select the most consistent response") == SELECTION
        assert await upstream_calls(upstream.url) == 3


@pytest.mark.parametrize(("strategy", "other"), [("council", "usc"), ("usc", "council")])
async def test_a_strategy_reads_the_upstreams_reviews_and_choice(
    tmp_path: Path, strategy: str, other: str
) -> None:
    path = ensemble_file(
        tmp_path / "e.toml", AGENTS, "bench-answer", "bench-judge", strategy=strategy
    )
    async with started(UPSTREAM, {}, tmp_path / "upstream.log") as upstream:
        env = service_env(upstream.url, path)
        async with started([sys.executable, "-m", "service"], env, tmp_path / "svc.log") as service:
            await check_deliberation(service.url, strategy)
            calls = await upstream_calls(upstream.url)
            # A run without the other strategy's reviews (or choice) does not pass its check.
            with pytest.raises(RuntimeError, match=f"^strategy {other}: "):
                await check_deliberation(service.url, other)
    assert calls == load_ensemble(path).calls_per_request
