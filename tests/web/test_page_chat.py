"""The page as a chat, in a real Chromium against the real server: a new turn comes into view,
Enter sends, Stop says who stopped, the open conversation survives a reload, answers and code
can be copied, tables are tables, and the small things (sign-in, plurals, the icon)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import running_service
from tests.web.browser import BrowserThread, page_errors, screenshot
from tests.web.test_page import DONE, FAST_MOCK, alices_key, ask, open_page

# Where the top of the newest turn's question is, against the viewport's height.
NEWEST_QUESTION_TOP = """() => {
    const questions = document.querySelectorAll(".turn .question");
    const top = questions[questions.length - 1].getBoundingClientRect().top;
    return { top, height: window.innerHeight };
}"""


def ask_below_the_fold(page: Page, count: int) -> list[dict[str, float]]:
    """Ask `count` questions one after the other; where each new turn was once asked, and
    where the page's end was before it (below the fold: the test means something)."""
    seen = []
    for n in range(count):
        end_before = page.evaluate("document.documentElement.scrollHeight - window.innerHeight")
        ask(page, f"Question number {n}")
        page.wait_for_function(f"document.querySelectorAll('.turn').length === {n + 1}")
        seen.append({**page.evaluate(NEWEST_QUESTION_TOP), "end_before": end_before})
        page.wait_for_selector(f".turn:nth-child({n + 1})[data-state='done']")
    return seen


async def test_a_new_turn_scrolls_into_view_on_desktop_and_phone(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with running_service(tmp_path, None, env=FAST_MOCK) as service:
        desktop = await open_page(browser, service, width=1280, height=800)
        wide = await browser.run(ask_below_the_fold, desktop, 3)
        phone = await open_page(browser, service, width=390, height=844)
        small = await browser.run(ask_below_the_fold, phone, 3)
        await browser.close_page(desktop)
        await browser.close_page(phone)
    for seen in (wide, small):
        # By the last question the earlier answers fill more than a screen...
        assert seen[-1]["end_before"] > 0
        # ...and each new question is on screen all the same.
        for turn in seen:
            assert 0 <= turn["top"] < turn["height"] - 100, seen
    assert page_errors(desktop) == page_errors(phone) == []


async def test_enter_sends_and_shift_enter_starts_a_new_line(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with running_service(tmp_path, None, env=FAST_MOCK) as service:
        page = await open_page(browser, service)

        def type_and_send() -> dict[str, Any]:
            page.focus("#question")
            page.keyboard.type("first line")
            page.keyboard.press("Shift+Enter")
            page.keyboard.type("second line")
            before = {
                "turns": page.locator(".turn").count(),
                "typed": page.input_value("#question"),
            }
            page.keyboard.press("Enter")
            page.wait_for_selector(DONE)
            return {
                **before,
                "question": page.locator(".turn .question").inner_text(),
                "left": page.input_value("#question"),
            }

        seen = await browser.run(type_and_send)
        stored = (await service.client.get("/api/conversations")).json()["conversations"]
        detail = (await service.client.get(f"/api/conversations/{stored[0]['id']}")).json()
        await browser.close_page(page)
    assert seen["turns"] == 0
    assert seen["typed"] == "first line\nsecond line"
    assert seen["question"] == "first line\nsecond line"
    assert seen["left"] == ""
    assert detail["messages"][0]["question"] == "first line\nsecond line"


async def test_the_open_conversation_is_in_the_address_and_a_reload_shows_it(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with running_service(tmp_path, None, env=FAST_MOCK) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            ask(page, "Remember me")
            page.wait_for_selector(DONE)
            seen["address"] = page.evaluate("location.hash")
            page.reload()
            page.wait_for_selector(DONE)
            seen["after_reload"] = page.locator(".turn .question").all_inner_texts()
            page.click("#new-conversation")
            seen["new"] = {
                "address": page.evaluate("location.hash"),
                "turns": page.locator(".turn").count(),
            }
            page.go_back()
            page.wait_for_selector(DONE)
            seen["back"] = page.locator(".turn .question").all_inner_texts()
            return seen

        seen = await browser.run(run)
        stored = (await service.client.get("/api/conversations")).json()["conversations"]
        await browser.close_page(page)
    assert seen["address"] == f"#{stored[0]['id']}"
    assert seen["after_reload"] == ["Remember me"]
    assert seen["new"] == {"address": "", "turns": 0}
    assert seen["back"] == ["Remember me"]
    assert page_errors(page) == []


async def test_on_a_phone_the_sidebar_starts_closed_and_closes_on_a_choice(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with running_service(tmp_path, None, env=FAST_MOCK) as service:
        page = await open_page(browser, service, width=390, height=844)

        def run() -> dict[str, Any]:
            seen: dict[str, Any] = {
                "at_load": page.is_visible("#sidebar"),
                "expanded_at_load": page.get_attribute("#toggle-sidebar", "aria-expanded"),
            }
            ask(page, "On the go")
            page.wait_for_selector(DONE)
            page.click("#new-conversation")
            page.click("#toggle-sidebar")
            seen["opened"] = page.is_visible("#sidebar")
            seen["expanded"] = page.get_attribute("#toggle-sidebar", "aria-expanded")
            page.click("#conversations a")
            page.wait_for_selector(DONE)
            seen["after_choice"] = page.is_visible("#sidebar")
            return seen

        seen = await browser.run(run)
        desktop = await open_page(browser, service)
        desktop_sidebar = await browser.run(desktop.is_visible, "#sidebar")
        await browser.close_page(page)
        await browser.close_page(desktop)
    assert seen["at_load"] is False
    assert seen["expanded_at_load"] == "false"
    assert seen["opened"] is True
    assert seen["expanded"] == "true"
    assert seen["after_choice"] is False
    assert desktop_sidebar is True


LONG_LINE = "print(" + " + ".join(f"value_{n}" for n in range(40)) + ")"
ANSWER = (
    "| Colour | Wavelength |\n"
    "|:-------|-----------:|\n"
    "| blue | 450 nm |\n"
    "| red \\| deep | 700 nm |\n"
    "\n"
    f"```python\n{LONG_LINE}\nprint('<b>not bold</b>')\n```\n"
)


# A promise (window.saidNext) of a button's text at its next change.
SAID_NEXT = """button => {
    window.saidNext = new Promise(resolve => {
        const watch = new MutationObserver(() => {
            watch.disconnect();
            resolve(button.textContent);
        });
        watch.observe(button, { childList: true, characterData: true, subtree: true });
    });
}"""


async def test_answers_and_code_copy_tables_render_and_code_scrolls_sideways(
    browser: BrowserThread, tmp_path: Path
) -> None:
    fake = FakeUpstream(
        {"fake-a": Behaviour(reply=ANSWER), "fake-summary": Behaviour(reply=f"# Both\n\n{ANSWER}")}
    )
    async with running_service(tmp_path, fake) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            page.context.grant_permissions(["clipboard-read", "clipboard-write"])
            ask(page, "Colours, with code")
            page.wait_for_selector(DONE)
            alpha = page.locator('.agent[data-agent="alpha"]')
            summary = page.locator(".summary")
            seen: dict[str, Any] = {
                "headers": summary.locator("th").all_inner_texts(),
                "cells": summary.locator("td").all_inner_texts(),
                "alignments": summary.locator("td").evaluate_all(
                    "cells => cells.map(c => getComputedStyle(c).textAlign)"
                ),
                "raw_pipes": summary.locator(".summary-text p").all_inner_texts(),
                "alpha_table": alpha.locator("table").count(),
                "code_bar": alpha.locator(".code-bar").inner_text(),
                "pre": alpha.locator("pre").evaluate(
                    """pre => {
                        const column = pre.closest(".agent").getBoundingClientRect();
                        const box = pre.getBoundingClientRect();
                        const text = pre.closest(".agent-text");
                        return { scrolls: pre.scrollWidth > pre.clientWidth,
                                 inside: box.right <= column.right + 0.5,
                                 column_scrolls: text.scrollWidth - text.clientWidth,
                                 text: pre.innerText };
                    }"""
                ),
                "overflow": page.evaluate(
                    "document.documentElement.scrollWidth - window.innerWidth"
                ),
            }
            copied = {}
            for name, button in (
                ("code", alpha.locator(".code-bar button")),
                ("alpha", alpha.locator("header button")),
                ("summary", summary.locator("header button")),
            ):
                # What the button says first after the click: it says "Copy" again 1.5 s
                # later, which a busy machine can pass before the text is read back.
                button.evaluate(SAID_NEXT)
                button.click()
                copied[f"{name}_said"] = page.evaluate("window.saidNext")
                copied[name] = page.evaluate("navigator.clipboard.readText()")
            seen["copied"] = copied
            seen["shot"] = screenshot(page, "tables-and-code")
            return seen

        seen = await browser.run(run)
        await browser.close_page(page)
    assert seen["headers"] == ["Colour", "Wavelength"]
    assert seen["cells"] == ["blue", "450 nm", "red | deep", "700 nm"]
    assert seen["alignments"] == ["left", "right", "left", "right"]
    assert not any("|" in text for text in seen["raw_pipes"])
    assert seen["alpha_table"] == 1
    assert seen["code_bar"].split() == ["python", "Copy"]
    # The block scrolls sideways within the column; the column itself does not.
    assert seen["pre"]["scrolls"], seen["pre"]
    assert seen["pre"]["inside"], seen["pre"]
    assert seen["pre"]["column_scrolls"] <= 0, seen["pre"]
    assert seen["pre"]["text"] == f"{LONG_LINE}\nprint('<b>not bold</b>')"
    assert seen["overflow"] <= 0
    copied = seen["copied"]
    assert copied["code"] == f"{LONG_LINE}\nprint('<b>not bold</b>')"
    assert copied["alpha"] == ANSWER
    assert copied["summary"] == f"# Both\n\n{ANSWER}"
    assert copied["code_said"] == copied["alpha_said"] == copied["summary_said"] == "Copied"
    assert seen["shot"].stat().st_size > 0
    assert page_errors(page) == []


async def test_a_wrong_key_leaves_the_sign_in_card_alone(
    browser: BrowserThread, tmp_path: Path
) -> None:
    env = {"AUTH": "keys", "AUTH_CACHE_S": "0", **FAST_MOCK}
    async with running_service(tmp_path, None, env=env) as service:
        key, _ = await alices_key(service)
        page = await browser.new_page(service.url)

        def controls() -> dict[str, bool]:
            return {
                name: page.is_visible(selector)
                for name, selector in {
                    "sign_in": "#sign-in",
                    "sign_out": "#sign-out",
                    "picker": "#ensemble",
                    "new": "#new-conversation",
                    "sidebar": "#sidebar",
                }.items()
            }

        def run() -> dict[str, Any]:
            page.goto("/")
            page.wait_for_selector("#sign-in:not([hidden])")
            seen = {"first": controls()}
            page.fill("#key", "fo_not-a-real-key")
            page.press("#key", "Enter")
            page.wait_for_selector("#sign-in-error:not([hidden])")
            seen["wrong_key"] = controls()
            page.fill("#key", key)
            page.press("#key", "Enter")
            page.wait_for_selector("#sign-out:not([hidden])")
            seen["right_key"] = controls()
            seen["ensembles"] = page.locator("#ensemble option").count()
            page.click("#sign-out")
            page.wait_for_selector("#sign-in:not([hidden])")
            seen["signed_out"] = controls()
            return seen

        seen = await browser.run(run)
        await browser.close_page(page)
    alone = {"sign_in": True, "sign_out": False, "picker": False, "new": False, "sidebar": False}
    assert seen["first"] == alone
    assert seen["wrong_key"] == alone
    assert seen["right_key"] == {
        "sign_in": False,
        "sign_out": True,
        "picker": True,
        "new": True,
        "sidebar": True,
    }
    assert seen["ensembles"] > 0
    assert seen["signed_out"] == alone
    assert page_errors(page) == []


async def test_counts_are_plural_only_when_more_than_one_and_no_request_fails(
    browser: BrowserThread, tmp_path: Path
) -> None:
    fake = FakeUpstream({"fake-b": Behaviour(status=503, fail_first=1)})
    async with running_service(tmp_path, fake, agent_extra={"retries": "1"}) as service:
        page = await browser.new_page(service.url)

        def run() -> dict[str, Any]:
            failed: list[str] = []
            icons: list[tuple[str, int]] = []
            page.on(
                "response",
                lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            page.on(
                "response",
                lambda r: icons.append((r.url, r.status)) if "icon" in r.url else None,
            )
            page.goto("/")
            page.wait_for_selector("#ensemble option", state="attached")
            ask(page, "Count them")
            page.wait_for_selector(DONE)
            seen = {
                "alpha": page.locator('.agent[data-agent="alpha"] .agent-meta').inner_text(),
                "beta": page.locator('.agent[data-agent="beta"] .agent-meta').inner_text(),
                "title": page.locator(".summary-title").inner_text(),
                "icon_link": page.get_attribute("link[rel=icon]", "href"),
            }
            page.reload()
            page.wait_for_selector(DONE)
            seen["stored_alpha"] = page.locator(
                '.agent[data-agent="alpha"] .agent-meta'
            ).inner_text()
            seen["stored_beta"] = page.locator('.agent[data-agent="beta"] .agent-meta').inner_text()
            seen["failed"] = failed
            seen["icons"] = icons
            return seen

        seen = await browser.run(run)
        icon = await service.client.get("/web/icon.svg")
        await browser.close_page(page)
    for meta in (seen["alpha"], seen["stored_alpha"]):
        assert "1 attempt ·" in meta or meta.endswith("1 attempt"), meta
        assert "(s)" not in meta
    for meta in (seen["beta"], seen["stored_beta"]):
        assert "2 attempts" in meta, meta
    assert seen["title"].endswith("(2 answers)")
    assert seen["icon_link"] == "/web/icon.svg"
    assert icon.status_code == 200
    assert icon.headers["Content-Type"] == "image/svg+xml"
    assert "<svg" in icon.text
    # Chromium asks for the page's icon (before, /favicon.ico: a 404 on every load).
    assert seen["failed"] == []
    assert seen["icons"]
    assert all(status == 200 for _, status in seen["icons"])


async def test_a_reopened_council_or_selection_shows_each_agents_answer_not_its_review(
    browser: BrowserThread, tmp_path: Path
) -> None:
    columns: dict[str, dict[str, str]] = {}
    for example in ("council", "usc"):
        env = {**FAST_MOCK, "ENSEMBLE_FILE": str(Path("examples") / f"{example}.toml")}
        async with running_service(tmp_path / example, None, env=env) as service:
            page = await open_page(browser, service)

            def run(page: Page) -> dict[str, str]:
                ask(page, "What is 17 + 25?")
                page.wait_for_selector(DONE)
                page.reload()
                page.wait_for_selector(DONE)
                # The first answers' row (a council's reviews, a selection: rows of their own).
                agents = page.locator('.turn:last-child .step[data-phase="answer"] .agent')
                return {
                    agents.nth(i).get_attribute("data-agent") or "": agents.nth(i)
                    .locator(".agent-text")
                    .text_content()
                    or ""
                    for i in range(agents.count())
                }

            columns[example] = await browser.run(run, page)
            await browser.close_page(page)
    for example, texts in columns.items():
        # The agents' columns only (no chairman, no selector), each with its own answer.
        assert "chairman" not in texts
        assert "selector" not in texts
        assert len(texts) == {"council": 3, "usc": 4}[example], texts
        for text in texts.values():
            assert "The answer is 42." in text
            assert "FINAL RANKING" not in text
