"""Cost and time at a glance, in a real Chromium against the real server and the fake
upstream: each agent's tokens, seconds and dollars under its column, the summarizer's by the
summary, the turn's whole below it; a turn reopened from the history keeps its tokens and
seconds (the record keeps no dollars)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import ensemble_toml, running_service
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
    # Reopened: the same tokens and times, from the record; no dollars (it keeps none).
    answers = {answer["agent"]: answer for answer in message["agents"]}
    for agent in ("alpha", "beta"):
        seconds = answers[agent]["latency_ms"] / 1000
        assert stored[agent] == figures(tokens[agent], seconds, None)
    assert stored["summary"] == figures(tokens["combine"], None, None)
    assert stored["footer"].startswith(
        f"This turn: {figures(sum(tokens.values()), timings['total_ms'] / 1000, None)}"
    )
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
