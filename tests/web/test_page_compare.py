"""The compare view, in a real Chromium against the real server: the final answer beside
each member's own, a member picked by its button (which says how much of its wording the
final answer kept), side by side on a desktop and one above the other on a phone; a vote's
chosen answer first; a reopened turn compares the same."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import running_service
from tests.web.browser import BrowserThread, page_errors, screenshot
from tests.web.test_page import DONE, FAST_MOCK, ask, open_page
from tests.web.test_page_strategies import ask_with, ensembles

ALPHA = "Light scatters off small molecules; shorter wavelengths scatter more strongly."
BETA = "Sunsets look orange because light crosses more atmosphere near the horizon."
SUMMARY = "Shorter wavelengths scatter more strongly off small molecules, so the sky is blue."


def kept(member: str, final: str) -> int:
    """As the page counts it: the share of the member's words of four letters or more that
    the final answer uses too."""

    def words(text: str) -> set[str]:
        return set(re.findall(r"[^\W_]{4,}", text.lower()))

    own = words(member)
    return round(100 * len(own & words(final)) / len(own)) if own else 0


def compare(page: Page) -> dict[str, Any]:
    turn = page.locator(".turn").last
    box = turn.locator(".compare")
    panes = box.locator(".compare-pane")
    return {
        "expanded": turn.get_by_role("button", name="Compare the final answer").get_attribute(
            "aria-expanded"
        ),
        "buttons": box.locator(".compare-members button").all_inner_texts(),
        "pressed": box.locator(".compare-members button[aria-pressed='true']").all_inner_texts(),
        "titles": panes.locator("h4").all_inner_texts(),
        "texts": panes.locator(".markdown").all_inner_texts(),
        "boxes": [panes.nth(i).bounding_box() for i in range(panes.count())],
    }


async def test_the_final_answer_beside_each_members_own(
    browser: BrowserThread, tmp_path: Path
) -> None:
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(reply=ALPHA),
            "fake-b": Behaviour(reply=BETA),
            "fake-summary": Behaviour(reply=SUMMARY),
        }
    )
    async with running_service(tmp_path, fake) as service:
        seen: dict[str, Any] = {}
        for name, size in {"desktop": (1280, 900), "phone": (390, 844)}.items():
            page = await open_page(browser, service, width=size[0], height=size[1])

            def run(page: Page, name: str) -> dict[str, Any]:
                ask(page, f"Why is the sky blue? ({name})")
                page.wait_for_selector(DONE)
                turn = page.locator(".turn").last
                turn.get_by_role("button", name="Compare the final answer").click()
                first = compare(page)
                turn.locator(".compare-members button", has_text="beta").click()
                second = compare(page)
                shot = screenshot(page, f"compare-{name}")
                page.reload()
                page.wait_for_selector(DONE)
                page.locator(".turn").last.get_by_role(
                    "button", name="Compare the final answer"
                ).click()
                return {"first": first, "second": second, "reopened": compare(page), "shot": shot}

            seen[name] = await browser.run(run, page, name)
            assert page_errors(page) == []
            await browser.close_page(page)
    buttons = [f"alpha · {kept(ALPHA, SUMMARY)}%", f"beta · {kept(BETA, SUMMARY)}%"]
    assert kept(ALPHA, SUMMARY) > kept(BETA, SUMMARY)  # the figures tell them apart
    for views in seen.values():
        first, second = views["first"], views["second"]
        assert first["expanded"] == "true"
        assert first["buttons"] == buttons
        assert first["pressed"] == [buttons[0]]
        assert first["titles"] == ["Final answer", "alpha's answer"]
        assert first["texts"] == [SUMMARY, ALPHA]
        assert second["pressed"] == [buttons[1]]
        assert second["titles"] == ["Final answer", "beta's answer"]
        assert second["texts"] == [SUMMARY, BETA]
        assert views["reopened"]["buttons"] == buttons
        assert views["reopened"]["texts"] == [SUMMARY, ALPHA]
    final, member = seen["desktop"]["first"]["boxes"]
    assert member["x"] > final["x"] + final["width"] - 1  # side by side
    assert abs(member["y"] - final["y"]) < 1
    final, member = seen["phone"]["first"]["boxes"]
    assert member["y"] > final["y"] + final["height"] - 1  # one above the other
    assert all(views["shot"].stat().st_size > 0 for views in seen.values())


async def test_a_votes_compare_view_opens_on_the_answer_chosen(
    browser: BrowserThread, tmp_path: Path
) -> None:
    env = {**FAST_MOCK, "ENSEMBLE_FILE": str(ensembles(tmp_path / "ensembles"))}
    async with running_service(tmp_path, None, env=env) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            ask_with(page, "vote", "What is 17 + 25?")
            page.locator(".turn").last.get_by_role(
                "button", name="Compare the final answer"
            ).click()
            return {
                **compare(page),
                "chosen": page.locator("[data-part='chosen'] strong").inner_text(),
            }

        seen = await browser.run(run)
        await browser.close_page(page)
    chosen = seen["chosen"]
    assert len(seen["buttons"]) == 5
    assert seen["pressed"][0].startswith(f"{chosen} · 100%")  # the reply is its answer
    assert seen["titles"] == ["Final answer", f"{chosen}'s answer (the one chosen)"]
    assert seen["texts"][0] == seen["texts"][1]
    assert page_errors(page) == []
