"""Versions on the page, in a real Chromium against the real server: an edit of an earlier
question branches the conversation there, a regenerate asks a question again in its place,
and `< 2/3 >` steps between the versions of a place (the turns after it following)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from tests.integration.harness import running_service
from tests.web.browser import BrowserThread, page_errors, screenshot
from tests.web.test_page import FAST_MOCK, LISTEN_TO_STATUS, announced, ask, open_page


def questions(page: Page) -> list[str]:
    return page.locator("#thread > .turn .question").all_inner_texts()


def places(page: Page) -> list[str]:
    """Each turn's `n/m`, or "" where its place has one version."""
    return page.eval_on_selector_all(
        "#thread > .turn",
        "turns => turns.map(t => { const p = t.querySelector('.versions');"
        " return p.hidden ? '' : p.querySelector('.versions-place').textContent; })",
    )


def finished(page: Page, count: int) -> None:
    page.wait_for_function(
        "n => { const turns = document.querySelectorAll('#thread > .turn');"
        " return turns.length === n && [...turns].every(t => t.dataset.state === 'done')"
        " && !document.body.classList.contains('running'); }",
        arg=count,
    )


def step(page: Page, turn: int, direction: str) -> None:
    label = "Previous version" if direction == "<" else "Next version"
    page.locator("#thread > .turn").nth(turn).get_by_role("button", name=label).click()


async def test_an_edit_branches_the_conversation_and_the_versions_can_be_stepped(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with running_service(tmp_path, None, env=FAST_MOCK) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            for n, question in enumerate(("First", "Second", "Third")):
                ask(page, question)
                finished(page, n + 1)
            second = page.locator("#thread > .turn").nth(1)
            second.get_by_role("button", name="Edit this question").click()
            editor = second.locator(".edit textarea")
            seen["editor_focused"] = editor.evaluate("e => e === document.activeElement")
            seen["editor_text"] = editor.input_value()
            editor.fill("Second, edited")
            editor.press("Enter")
            finished(page, 2)
            seen["edited"] = {"questions": questions(page), "places": places(page)}
            seen["shot"] = screenshot(page, "versions-edited")
            page.evaluate(LISTEN_TO_STATUS)
            step(page, 1, "<")
            finished(page, 3)
            seen["back"] = {"questions": questions(page), "places": places(page)}
            step(page, 1, ">")
            finished(page, 2)
            seen["forth"] = {"questions": questions(page), "places": places(page)}
            seen["announced"] = announced(page)
            page.reload()
            finished(page, 2)
            seen["reloaded"] = {"questions": questions(page), "places": places(page)}
            # A follow-up shown an earlier version continues that one.
            step(page, 1, "<")
            finished(page, 3)
            ask(page, "Fourth")
            finished(page, 4)
            seen["follow_up"] = {"questions": questions(page), "places": places(page)}
            page.reload()
            finished(page, 4)
            seen["follow_up_reloaded"] = {"questions": questions(page), "places": places(page)}
            return seen

        seen = await browser.run(run)
        listed = (await service.client.get("/api/conversations")).json()["conversations"]
        detail = (await service.client.get(f"/api/conversations/{listed[0]['id']}")).json()
        await browser.close_page(page)
    assert seen["editor_focused"] is True
    assert seen["editor_text"] == "Second"
    assert seen["edited"] == {"questions": ["First", "Second, edited"], "places": ["", "2/2"]}
    assert seen["back"] == {"questions": ["First", "Second", "Third"], "places": ["", "1/2", ""]}
    assert seen["forth"] == seen["edited"]
    # Each step is said aloud: the version now shown, of how many.
    assert seen["announced"] == ["Version 1 of 2", "Version 2 of 2"]
    assert seen["reloaded"] == seen["edited"]
    assert seen["follow_up"] == {
        "questions": ["First", "Second", "Third", "Fourth"],
        "places": ["", "1/2", "", ""],
    }
    # It is now the newest: the branch a reload shows.
    assert seen["follow_up_reloaded"] == seen["follow_up"]
    # The server agrees: the edit is the second's next version, in its place.
    messages = {m["question"]: m for m in detail["messages"]}
    assert len(listed) == 1
    assert len(messages) == 5
    first, second, edit = messages["First"], messages["Second"], messages["Second, edited"]
    assert edit["message_id"] == second["message_id"]
    assert (second["version"], edit["version"]) == (1, 2)
    assert edit["parent"] == second["parent"] == {"message_id": first["message_id"], "version": 1}
    assert messages["Fourth"]["parent"] == {
        "message_id": messages["Third"]["message_id"],
        "version": 1,
    }
    assert messages["Third"]["current"] is True
    assert edit["current"] is False
    assert seen["shot"].stat().st_size > 0
    assert page_errors(page) == []


async def test_regenerate_asks_again_in_place_and_both_answers_stay(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with running_service(tmp_path, None, env=FAST_MOCK) as service:
        page = await open_page(browser, service)

        def summaries() -> list[str]:
            return page.locator("#thread > .turn .summary-text").all_inner_texts()

        def run() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            ask(page, "Tell me a fact")
            finished(page, 1)
            ask(page, "Another one")
            finished(page, 2)
            first = page.locator("#thread > .turn").first
            first.get_by_role("button", name="Regenerate: ask this question again").click()
            page.wait_for_selector("body.running")
            seen["while_running"] = {
                "tools_hidden": page.locator("#thread > .turn .turn-tools").first.evaluate(
                    "e => getComputedStyle(e).visibility"
                ),
            }
            finished(page, 1)
            seen["regenerated"] = {
                "questions": questions(page),
                "places": places(page),
                "summaries": summaries(),
            }
            step(page, 0, "<")
            finished(page, 2)
            seen["before"] = {
                "questions": questions(page),
                "places": places(page),
                "summaries": summaries(),
            }
            seen["focused"] = page.evaluate("document.activeElement.getAttribute('aria-label')")
            return seen

        seen = await browser.run(run)
        listed = (await service.client.get("/api/conversations")).json()["conversations"]
        detail = (await service.client.get(f"/api/conversations/{listed[0]['id']}")).json()
        await browser.close_page(page)
    assert seen["while_running"]["tools_hidden"] == "hidden"
    assert seen["regenerated"]["questions"] == ["Tell me a fact"]
    assert seen["regenerated"]["places"] == ["2/2"]
    assert seen["before"]["questions"] == ["Tell me a fact", "Another one"]
    assert seen["before"]["places"] == ["1/2", ""]
    # At the first version the focus moves to the arrow that still goes somewhere.
    assert seen["focused"] == "Next version"
    versions = [m for m in detail["messages"] if m["question"] == "Tell me a fact"]
    assert [m["version"] for m in versions] == [1, 2]
    assert versions[0]["message_id"] == versions[1]["message_id"]
    # Each version shows its own stored answer.
    assert seen["regenerated"]["summaries"] == [versions[1]["summary"]]
    assert seen["before"]["summaries"][0] == versions[0]["summary"]
    assert page_errors(page) == []
