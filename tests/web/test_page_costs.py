"""Cost and time at a glance, in a real Chromium against the real server and the fake
upstream: each agent's tokens, seconds and dollars under its column, the summarizer's by the
summary, the turn's whole below it, and the part of it paid for calls whose output went
nowhere; a turn reopened from the history shows the same tokens, seconds and dollars."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import ensemble_toml, running_service
from tests.integration.test_upstream_faults import ensemble
from tests.web.browser import BrowserThread, page_errors, screenshot
from tests.web.test_page import DONE, ask, open_page

# Dear enough that every figure shows four decimals: "$0.1234".
PRICES = {"fake-a": (1000.0, 2000.0), "fake-b": (3000.0, 4000.0), "fake-summary": (500.0, 500.0)}
PRICED = ensemble_toml({"alpha": "fake-a", "beta": "fake-b"}, "fake-summary") + "".join(
    f'\n[prices."{model}"]\ninput_per_million = {given}\noutput_per_million = {taken}\n'
    for model, (given, taken) in PRICES.items()
)
MODELS = {"alpha": "fake-a", "beta": "fake-b", "combine": "fake-summary"}


def dollars(caller: str, usage: dict[str, int]) -> float:
    given, taken = PRICES[MODELS[caller]]
    return (usage["prompt_tokens"] * given + usage["completion_tokens"] * taken) / 1e6


def figures(tokens: int, seconds: float | None, cost: float | None) -> str:
    parts = [f"{tokens:,} token{'' if tokens == 1 else 's'}"]
    if seconds is not None:
        parts.append(f"{seconds:.1f} s")
    if cost is not None:
        parts.append(f"${cost:.4f}")
    return " · ".join(parts)


async def test_each_agent_and_the_turn_show_tokens_seconds_and_dollars(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with running_service(tmp_path, FakeUpstream(), ensemble=PRICED) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            ask(page, "What does it cost?")
            page.wait_for_selector(DONE)

            def shown() -> dict[str, Any]:
                return {
                    "alpha": page.locator('.agent[data-agent="alpha"] .agent-figures').inner_text(),
                    "beta": page.locator('.agent[data-agent="beta"] .agent-figures').inner_text(),
                    "alpha_title": page.get_attribute(
                        '.agent[data-agent="alpha"] .agent-figures', "title"
                    ),
                    "summary": page.locator(".summary-figures").inner_text(),
                    "footer": page.locator(".turn .footer").inner_text(),
                }

            live = shown()
            live["shot"] = screenshot(page, "costs")
            page.reload()
            page.wait_for_selector(DONE)
            return {"live": live, "stored": shown()}

        seen = await browser.run(run)
        listed = (await service.client.get("/api/conversations")).json()["conversations"]
        detail = (await service.client.get(f"/api/conversations/{listed[0]['id']}")).json()
        await browser.close_page(page)
    message = detail["messages"][0]
    usage, timings = message["usage"], message["timings"]
    tokens = {caller: u["prompt_tokens"] + u["completion_tokens"] for caller, u in usage.items()}
    cost = {caller: dollars(caller, u) for caller, u in usage.items()}
    assert set(usage) == {"alpha", "beta", "combine"}
    assert all(cost.values())
    live, stored = seen["live"], seen["stored"]
    for agent in ("alpha", "beta"):
        seconds = timings["agents_ms"][agent] / 1000
        assert live[agent] == figures(tokens[agent], seconds, cost[agent])
    alpha = usage["alpha"]
    assert live["alpha_title"] == (
        f"{alpha['prompt_tokens']} prompt + {alpha['completion_tokens']} completion tokens"
    )
    assert live["summary"] == figures(tokens["combine"], None, cost["combine"])
    whole = figures(sum(tokens.values()), timings["total_ms"] / 1000, sum(cost.values()))
    assert live["footer"].startswith(f"This turn: {whole} (the answer began at ")
    # Nothing was cut or lost: no wasted dollars are shown.
    assert message["cost"]["wasted_usd"] == 0
    assert "wasted" not in live["footer"]
    # Reopened: the same tokens and dollars, from the record (each answer's time is its own).
    answers = {answer["agent"]: answer for answer in message["agents"]}
    for agent in ("alpha", "beta"):
        seconds = answers[agent]["latency_ms"] / 1000
        assert stored[agent] == figures(tokens[agent], seconds, cost[agent])
        assert stored[agent].endswith(live[agent].rsplit(" · ", 1)[1])
    assert stored["summary"] == live["summary"]
    assert stored["footer"].startswith(f"This turn: {whole}")
    assert seen["live"]["shot"].stat().st_size > 0
    assert page_errors(page) == []


async def test_the_turn_says_what_went_into_no_final_answer(
    browser: BrowserThread, tmp_path: Path
) -> None:
    fake = FakeUpstream({"fake-b": Behaviour(status=500, first_token_delay_s=0.3)})
    async with running_service(tmp_path, fake) as service:
        page = await open_page(browser, service)

        def run() -> str:
            ask(page, "Who answered?")
            page.wait_for_selector(DONE)
            return page.locator(".turn .footer").inner_text()

        footer = await browser.run(run)
        await browser.close_page(page)
    # beta failed after its 0.3 s: its time went into no answer (a failure reports no tokens).
    wasted = footer.split("; not used: ", 1)[1]
    name, rest = wasted.split(" (", 1)
    assert name == "beta"
    state, seconds = rest.rstrip(")").split(", ")
    assert state == "failed"
    assert 0.3 <= float(seconds.removesuffix(" s")) < 5
    assert page_errors(page) == []


def money(dollars: float) -> str:
    """As the page writes dollars: four decimals from a cent, else two significant digits."""
    if dollars == 0:
        return "$0"
    if dollars >= 0.01:
        return f"${dollars:.4f}"
    return f"${dollars:.{1 - math.floor(math.log10(dollars))}f}"


async def test_the_dollars_wasted_on_a_cut_straggler_are_shown_apart_live_and_reopened(
    browser: BrowserThread, tmp_path: Path
) -> None:
    fake = FakeUpstream(
        {
            # Its first piece at once, the next 30 s later: cut after the grace, with one.
            "fake-straggle": Behaviour(tokens=("Slow ", "and ", "late."), token_delay_s=30),
        }
    )
    prices = {**PRICES, "fake-straggle": (5000.0, 6000.0)}
    agents = {"alpha": {"model": "fake-a"}, "beta": {"model": "fake-b"}}
    text = ensemble(
        {**agents, "slow": {"model": "fake-straggle"}}, min_agents=2, straggler_grace_ms=300
    ) + "".join(
        f'\n[prices."{model}"]\ninput_per_million = {given}\noutput_per_million = {taken}\n'
        for model, (given, taken) in prices.items()
    )
    async with running_service(tmp_path, fake, ensemble=text) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            ask(page, "Who is slow?")
            page.wait_for_selector(DONE)
            footer = page.locator(".turn .footer")
            live = {"footer": footer.inner_text(), "apart": footer.locator(".wasted-cost").count()}
            page.reload()
            page.wait_for_selector(DONE)
            return {"live": live, "stored": page.locator(".turn .footer").inner_text()}

        seen = await browser.run(run)
        listed = (await service.client.get("/api/conversations")).json()["conversations"]
        detail = (await service.client.get(f"/api/conversations/{listed[0]['id']}")).json()
        await browser.close_page(page)
    cost = detail["messages"][0]["cost"]
    assert 0 < cost["wasted_usd"] < cost["total_usd"]
    wasted = f"of which {money(cost['wasted_usd'])} wasted on cut or lost calls"
    said = f"{money(cost['total_usd'])} · {wasted}"
    assert said in seen["live"]["footer"]
    assert seen["live"]["apart"] == 1
    assert "; not used: slow (cut" in seen["live"]["footer"]
    assert said in seen["stored"]
    assert page_errors(page) == []
