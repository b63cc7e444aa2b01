"""Strategies on the page, in a real Chromium against the real server and the mock, which
plays every strategy (examples/*.toml): a council's reviews and aggregate ranking, a debate's
and a mixture's rounds as rows of columns that fold once the final answer is in, a vote's
tally, and sixteen members as a strip of tiles that expand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from tests.integration.harness import RunningService, running_service
from tests.web.browser import BrowserThread, page_errors, screenshot
from tests.web.test_page import FAST_MOCK, ask, open_page

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STRATEGIES = ("council", "debate", "moa", "vote", "usc")
SIXTEEN = [f"member-{n:02}" for n in range(1, 17)]


def ensembles(folder: Path) -> Path:
    """A folder of ensembles: each strategy's example, and `default`, sixteen members."""
    folder.mkdir()
    for name in STRATEGIES:
        shutil.copy(EXAMPLES / f"{name}.toml", folder / f"{name}.toml")
    members = "".join(
        f'[[agents]]\nname = "{name}"\nsystem_prompt = "Answer."\n\n' for name in SIXTEEN
    )
    summarizer = '[summarizer]\nname = "combine"\nsystem_prompt = "Combine."\n'
    (folder / "default.toml").write_text(members + summarizer)
    return folder


def ask_with(page: Page, ensemble: str, question: str) -> None:
    """Ask with that ensemble, and wait for this turn's end."""
    turns = page.locator("#thread > .turn").count()
    page.select_option("#ensemble", ensemble)
    ask(page, question)
    page.wait_for_function(
        """(n) => { const turns = document.querySelectorAll("#thread > .turn");
            return turns.length === n && turns[n - 1].dataset.state === "done"
                && !document.body.classList.contains("running"); }""",
        arg=turns + 1,
    )


def steps(page: Page) -> list[dict[str, Any]]:
    """The newest turn's rows: phase, round, open, the agents in its columns."""
    return page.eval_on_selector_all(
        ".turn:last-child .step",
        """rows => rows.map(r => ({
            phase: r.dataset.phase, round: Number(r.dataset.round),
            open: r.tagName === "DETAILS" ? r.open : null,
            agents: [...r.querySelectorAll(".agent")].map(a => a.dataset.agent),
            states: [...new Set([...r.querySelectorAll(".agent")].map(a => a.dataset.state))],
        }))""",
    )


def verdict(page: Page) -> dict[str, Any]:
    return page.evaluate(
        """() => {
            const turn = document.querySelector(".turn:last-child");
            const rows = (part) => [...turn.querySelectorAll(`[data-part="${part}"] li`)]
                .map(li => li.innerText.replace(/\\s+/g, " ").trim());
            return {
                reviews: rows("reviews"), ranking: rows("ranking"), tally: rows("tally"),
                chosen: turn.querySelector('[data-part="chosen"] p')?.innerText ?? null,
                marked: [...turn.querySelectorAll(".verdict .chosen .bar-name")]
                    .map(name => name.innerText),
                title: turn.querySelector(".summary-title").innerText,
            };
        }"""
    )


async def strategy_service(tmp_path: Path) -> Any:
    env = {**FAST_MOCK, "ENSEMBLE_FILE": str(ensembles(tmp_path / "ensembles"))}
    return running_service(tmp_path, None, env=env)


async def test_a_council_shows_its_reviews_and_the_aggregate_ranking(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with await strategy_service(tmp_path) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            ask_with(page, "council", "Is a tomato a fruit?")
            seen = {"steps": steps(page), "verdict": verdict(page)}
            seen["shot"] = screenshot(page, "strategy-council")
            page.reload()
            page.wait_for_selector(".turn:last-child [data-part='ranking'] li")
            seen["reopened"] = {"steps": steps(page), "verdict": verdict(page)}
            return seen

        seen = await browser.run(run)
        events = await stream_of(service, "council")
        await browser.close_page(page)
    members = ["analyst", "skeptic", "teacher"]
    assert seen["steps"] == [
        {"phase": "answer", "round": 0, "open": False, "agents": members, "states": ["answered"]},
        {"phase": "review", "round": 1, "open": False, "agents": members, "states": ["answered"]},
    ]
    reviews = [e for e in events if e["type"] == "council.review"]
    ranking = next(e for e in events if e["type"] == "council.ranking")["ranking"]
    shown = seen["verdict"]
    assert shown["reviews"] == [f"{r['source']}: {' › '.join(r['ranking'])}" for r in reviews]
    plural = {1: "review"}
    assert shown["ranking"] == [
        f"{r['agent']} {r['average_rank']:g} ({r['reviews']} {plural.get(r['reviews'], 'reviews')})"
        for r in ranking
    ]
    assert shown["title"] == "Summary by chairman (3 answers)"
    # Reopened, the turn's events are replayed: the same rows and the same verdict.
    assert seen["reopened"] == {"steps": seen["steps"], "verdict": seen["verdict"]}
    assert page_errors(page) == []


async def stream_of(service: RunningService, ensemble: str) -> list[dict[str, Any]]:
    """The events of the ensemble's newest message, as the API replays them."""
    listed = (await service.client.get("/api/conversations")).json()["conversations"]
    for conversation in listed:
        detail = (await service.client.get(f"/api/conversations/{conversation['id']}")).json()
        message = detail["messages"][-1]
        if message["ensemble"] == ensemble:
            response = await service.client.get(f"/api/messages/{message['message_id']}/events")
            return [
                json.loads(line.removeprefix("data: "))
                for line in response.text.splitlines()
                if line.startswith("data: ")
            ]
    raise AssertionError(f"no message of {ensemble}")


async def test_a_debate_and_a_mixture_show_their_rounds_as_rows_that_fold_at_the_end(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with await strategy_service(tmp_path) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            page.click("#new-conversation")
            ask_with(page, "debate", "Is a tomato a fruit?")
            seen["debate"] = steps(page)
            # A folded row opens on a click (or Enter on its heading), its columns whole.
            heading = page.locator(".turn:last-child .step[data-round='1'] > summary")
            heading.focus()
            page.keyboard.press("Enter")
            seen["opened"] = steps(page)[1]["open"]
            seen["revised_text"] = page.locator(
                ".turn:last-child .step[data-round='1'] .agent-text"
            ).first.inner_text()
            seen["shot"] = screenshot(page, "strategy-debate")
            page.click("#new-conversation")
            ask_with(page, "moa", "Is a tomato a fruit?")
            seen["moa"] = steps(page)
            return seen

        seen = await browser.run(run)
        await browser.close_page(page)
    debaters = ["debater-1", "debater-2", "debater-3"]
    folded = {"open": False, "agents": debaters, "states": ["answered"]}
    assert seen["debate"] == [
        {"phase": "answer", "round": 0, **folded},
        {"phase": "revise", "round": 1, **folded},
        {"phase": "revise", "round": 2, **folded},
    ]
    assert seen["opened"] is True
    assert seen["revised_text"].startswith("(debater-1, round 1)")
    proposers = ["proposer-1", "proposer-2", "proposer-3"]
    assert seen["moa"] == [
        {"phase": "answer", "round": 0, "open": False, "agents": proposers, "states": ["answered"]},
        {"phase": "layer", "round": 1, "open": False, "agents": proposers, "states": ["answered"]},
    ]
    assert page_errors(page) == []


async def test_a_vote_shows_its_tally_and_the_answer_chosen(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with await strategy_service(tmp_path) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            ask_with(page, "vote", "What is 17 + 25?")
            seen = {"verdict": verdict(page), "shot": screenshot(page, "strategy-vote")}
            page.reload()
            page.wait_for_selector(".turn:last-child [data-part='tally'] li")
            seen["reopened"] = verdict(page)
            return seen

        seen = await browser.run(run)
        events = await stream_of(service, "vote")
        await browser.close_page(page)
    tally = next(e for e in events if e["type"] == "vote.tally")
    chosen = next(e for e in events if e["type"] == "answer.chosen")
    shown = seen["verdict"]
    assert shown["tally"] == [
        f"{', '.join(g['agents'])} {g['votes']} vote{'s' if g['votes'] > 1 else ''}"
        for g in tally["groups"]
    ]
    assert shown["chosen"] == f"{chosen['source']}: {chosen['reason']}"
    winners = [g for g in tally["groups"] if chosen["source"] in g["agents"]]
    assert shown["marked"] == [", ".join(winners[0]["agents"])]
    assert shown["title"] == f"The answer chosen: {chosen['source']}'s"
    assert seen["reopened"] == shown
    assert page_errors(page) == []


async def test_sixteen_members_are_a_strip_of_tiles_that_expand(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with await strategy_service(tmp_path) as service:
        desktop = await open_page(browser, service)
        phone = await open_page(browser, service, width=390, height=844)

        def run(page: Page, name: str) -> dict[str, Any]:
            ask_with(page, "default", "Sixteen voices, one question")
            tiles = page.locator(".turn:last-child .agents.many .agent")
            grid = page.locator(".turn:last-child .agents").bounding_box()
            first = tiles.first
            before = first.bounding_box()
            first.get_by_role("button", name="Show all of member-01's answer").click()
            after = first.bounding_box()
            text = first.locator(".agent-text")
            return {
                "tiles": tiles.count(),
                "grid_height": grid["height"] if grid else None,
                "viewport": page.viewport_size,
                "before": before,
                "after": after,
                "whole": text.evaluate("e => e.scrollHeight <= e.clientHeight"),
                "overflow": page.evaluate(
                    "document.documentElement.scrollWidth - window.innerWidth"
                ),
                "shot": screenshot(page, f"sixteen-{name}"),
            }

        wide = await browser.run(run, desktop, "desktop")
        narrow = await browser.run(run, phone, "phone")
        await browser.close_page(desktop)
        await browser.close_page(phone)
    for seen in (wide, narrow):
        assert seen["tiles"] == 16
        # All sixteen in about a screen: tiles, not sixteen full columns stacked.
        assert seen["grid_height"] <= seen["viewport"]["height"] * 1.2, seen
        assert seen["overflow"] <= 0
        # Expanded, a tile takes the row's width and shows all of its answer.
        assert seen["after"]["width"] > seen["before"]["width"] * 1.5, seen
        assert seen["whole"] is True
    assert page_errors(desktop) == page_errors(phone) == []
