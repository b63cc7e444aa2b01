"""The page at /, in a real Chromium, against the real server on a real port: with the mock
LLM and with the fake upstream over HTTP. Screenshots go to test-artifacts/web/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from playwright.sync_api import Page, expect

from service.storage.keys import revoke_key
from tests.auth.test_access import make_key
from tests.fake_upstream import SECRET_DETAIL_MARKER, Behaviour, FakeUpstream
from tests.integration.harness import RunningService, running_service
from tests.web.browser import BrowserThread, page_errors, screenshot

FAST_MOCK = {"MOCK_FIRST_TOKEN_MS": "5", "MOCK_TOKEN_MS": "1"}
DONE = '.turn[data-state="done"]'


def ask(page: Page, question: str) -> None:
    page.fill("#question", question)
    page.click("#send")


# Each text the page's status region (role=status, aria-live=polite) is given, in order:
# what a screen reader says of the run, recorded from the moment this is evaluated.
LISTEN_TO_STATUS = """() => {
    window.__announced = [];
    new MutationObserver((records) => {
        for (const record of records)
            for (const node of record.addedNodes) window.__announced.push(node.textContent);
    }).observe(document.getElementById("status"), { childList: true });
}"""


def announced(page: Page) -> list[str]:
    said: list[str] = page.evaluate("window.__announced")
    return said


def agent_states(page: Page) -> dict[str, str]:
    states: dict[str, str] = page.eval_on_selector_all(
        ".turn:last-child .agent",
        "nodes => Object.fromEntries(nodes.map(n => [n.dataset.agent, n.dataset.state]))",
    )
    return states


def sidebar(page: Page) -> list[str]:
    return page.locator("#conversations a").all_inner_texts()


async def open_page(browser: BrowserThread, service: RunningService, **kw: Any) -> Page:
    page = await browser.new_page(service.url, **kw)
    await browser.run(lambda: page.goto("/"))
    await browser.run(lambda: page.wait_for_selector("#ensemble option", state="attached"))
    return page


async def test_the_columns_fill_and_the_summary_completes_with_the_mock(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with running_service(tmp_path, None, env=FAST_MOCK) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            page.evaluate(LISTEN_TO_STATUS)
            ask(page, "Why is the sky blue?")
            page.wait_for_selector(DONE)
            page.wait_for_selector("body:not(.running)")
            turn = page.locator(".turn").last
            return {
                "announced": announced(page),
                "status": page.locator("#status").evaluate(
                    "e => [e.getAttribute('role'), e.getAttribute('aria-live'), e.textContent]"
                ),
                "ensembles": page.locator("#ensemble option").all_inner_texts(),
                "states": agent_states(page),
                "agent_texts": turn.locator(".agent-text").all_inner_texts(),
                "metas": turn.locator(".agent-meta").all_inner_texts(),
                "figures": turn.locator(".agent-figures").all_inner_texts(),
                "summary": turn.locator(".summary-text").inner_text(),
                "footer": turn.locator(".footer").inner_text(),
                "stop_disabled": page.is_disabled("#stop"),
                "shot": screenshot(page, "mock-answered"),
            }

        seen = await browser.run(run)
        models = (await service.client.get("/v1/models")).json()["data"]
        message = (await service.client.get("/api/conversations")).json()["conversations"]
        await browser.close_page(page)
    assert seen["ensembles"] == [model["id"] for model in models]
    # A screen reader hears the run's three moments, not its tokens.
    assert seen["announced"] == [
        "The agents are answering",
        "The final answer is coming in",
        "The answer is complete",
    ]
    assert seen["status"] == ["status", "polite", "The answer is complete"]
    assert seen["states"]
    assert set(seen["states"].values()) == {"answered"}
    assert all(text.strip() for text in seen["agent_texts"])
    assert all("attempt" in meta for meta in seen["metas"])
    assert all("tokens" in line and " s" in line for line in seen["figures"])
    assert seen["summary"].strip()
    assert "tokens" in seen["footer"]
    assert seen["stop_disabled"]
    assert [c["title"] for c in message] == ["Why is the sky blue?"]
    assert seen["shot"].stat().st_size > 0
    assert page_errors(page) == []


async def test_each_column_fills_as_its_agent_writes(
    browser: BrowserThread, tmp_path: Path
) -> None:
    tokens = tuple(f"word{n} " for n in range(40))
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(tokens=tokens, token_delay_s=0.05),
            "fake-b": Behaviour(tokens=tokens, token_delay_s=0.05),
        }
    )
    async with running_service(tmp_path, fake) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            ask(page, "Why is the sky blue?")
            alpha = '.agent[data-agent="alpha"]'
            # Part of the answer is on the page while the agent is still answering.
            page.wait_for_function(
                """(selector) => {
                    const root = document.querySelector(selector);
                    const text = root ? root.querySelector(".agent-text").innerText : "";
                    return root && root.dataset.state === "answering" && text.includes("word3");
                }""",
                arg=alpha,
            )
            partial = page.locator(f"{alpha} .agent-text").inner_text()
            shot = screenshot(page, "agents-streaming")
            page.wait_for_selector(DONE)
            return {
                "partial": partial,
                "final": page.locator(f"{alpha} .agent-text").inner_text(),
                "shot": shot,
            }

        seen = await browser.run(run)
        await browser.close_page(page)
    assert "word3" in seen["partial"]
    assert "word39" not in seen["partial"]
    assert seen["final"].split() == [token.strip() for token in tokens]
    assert seen["shot"].stat().st_size > 0
    assert page_errors(page) == []


async def test_a_failing_agent_shows_its_public_reason_and_a_retry_its_attempt(
    browser: BrowserThread, tmp_path: Path
) -> None:
    fake = FakeUpstream(
        {
            "fake-a": Behaviour(status=401),
            # The retry's answer takes a while: the column says "retrying" until its text
            # begins to stream.
            "fake-b": Behaviour(status=503, fail_first=1, first_token_delay_s=0.5),
            "fake-summary": Behaviour(token_delay_s=0.05),
        }
    )
    async with running_service(tmp_path, fake, agent_extra={"retries": "1"}) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            ask(page, "Why is the sky blue?")
            # beta fails once, then answers: its column says so while it waits.
            page.wait_for_selector('.agent[data-agent="beta"][data-state="retrying"]')
            retrying = page.locator('.agent[data-agent="beta"] .agent-state').inner_text()
            page.wait_for_selector(DONE)
            return {
                "retrying": retrying,
                "states": agent_states(page),
                "alpha": page.locator('.agent[data-agent="alpha"]').inner_text(),
                "page": page.content(),
                "shot": screenshot(page, "failed-agent"),
            }

        seen = await browser.run(run)
        await browser.close_page(page)
    assert seen["retrying"] == "retrying (attempt 2)"
    assert seen["states"] == {"alpha": "failed", "beta": "answered"}
    assert "failed" in seen["alpha"]
    assert "could not authenticate with the language model provider" in seen["alpha"]
    assert SECRET_DETAIL_MARKER not in seen["page"]


async def test_stop_cancels_the_run_and_the_upstream_sees_every_call_closed(
    browser: BrowserThread, tmp_path: Path
) -> None:
    fake = FakeUpstream({"fake-a": Behaviour(stall=True), "fake-b": Behaviour(stall=True)})
    async with running_service(tmp_path, fake) as service:
        page = await open_page(browser, service)
        await browser.run(ask, page, "Tell me everything")
        with trio.fail_after(10):
            calls = [await fake.wait_for_call("fake-a"), await fake.wait_for_call("fake-b")]
        await browser.run(lambda: page.wait_for_selector("#stop:not([disabled])"))
        await browser.run(page.click, "#stop")
        with trio.fail_after(10):
            for call in calls:
                await call.ended.wait()

        def after() -> dict[str, Any]:
            page.wait_for_selector('.turn[data-state="error"]')
            # The turn ends on its terminal event; the form is given back once the stream
            # itself has closed, a moment later.
            page.wait_for_selector("#send:not([disabled])")
            return {
                "states": agent_states(page),
                "footer": page.locator(".turn .footer").inner_text(),
                "send_enabled": page.is_enabled("#send"),
            }

        seen = await browser.run(after)
        conversations = (await service.client.get("/api/conversations")).json()["conversations"]
        detail = (await service.client.get(f"/api/conversations/{conversations[0]['id']}")).json()

        def reopened() -> dict[str, Any]:
            page.reload()  # the conversation is in the address: it opens again
            # The record's drawing first, then the turn as it was seen, from its events.
            expect(page.locator(".turn .footer")).to_have_text(seen["footer"])
            return {
                "states": agent_states(page),
                "footer": page.locator(".turn .footer").inner_text(),
            }

        again = await browser.run(reopened)
        await browser.close_page(page)
    assert [call.outcome for call in calls] == ["disconnected", "disconnected"]
    assert seen["states"] == {"alpha": "cut", "beta": "cut"}
    # Who stopped it, not a hang-up (the page's run goes on without its client).
    assert seen["footer"] == "Stopped by the user before it finished"
    assert seen["send_enabled"]
    assert detail["messages"][0]["status"] == "cancelled"
    # Reopened from the history: the same words, and the columns it cut.
    assert again == {"states": {"alpha": "cut", "beta": "cut"}, "footer": seen["footer"]}


XSS = (
    "Look: <script>window.__pwned = 'script'</script> "
    '<img src="x" onerror="window.__pwned = \'img\'"> '
    "[click](javascript:window.__pwned='link') **bold** and `<b>code</b>`"
)


async def test_model_output_with_html_and_scripts_is_shown_as_text_and_runs_nothing(
    browser: BrowserThread, tmp_path: Path
) -> None:
    fake = FakeUpstream(
        {"fake-a": Behaviour(reply=XSS), "fake-summary": Behaviour(reply=f"# Summary\n\n{XSS}")}
    )
    async with running_service(tmp_path, fake) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            ask(page, "<img src=y onerror=\"window.__pwned='question'\">")
            page.wait_for_selector(DONE)
            # The links on the page: a click on a javascript: one would run it.
            for link in page.locator(".turn a").all():
                link.click(modifiers=["Control"])
            return {
                "pwned": page.evaluate("window.__pwned ?? null"),
                "scripts": page.locator(".turn script").count(),
                "images": page.locator(".turn img").count(),
                "alpha": page.locator('.agent[data-agent="alpha"] .agent-text').inner_text(),
                "summary_heading": page.locator(".summary-text h3").inner_text(),
                "bold": page.locator(".summary-text strong").inner_text(),
                "code": page.locator(".summary-text code").inner_text(),
                "question": page.locator(".turn .question").inner_text(),
            }

        seen = await browser.run(run)
        # The same, drawn again from the stored conversation.
        await browser.run(page.reload)

        def reopened() -> dict[str, Any]:
            page.click("#conversations a")
            page.wait_for_selector(DONE)
            return {
                "pwned": page.evaluate("window.__pwned ?? null"),
                "elements": page.locator(".turn script, .turn img").count(),
                "alpha": page.locator('.agent[data-agent="alpha"] .agent-text').inner_text(),
            }

        again = await browser.run(reopened)
        await browser.close_page(page)
    assert seen["pwned"] is None
    assert seen["scripts"] == 0
    assert seen["images"] == 0
    assert "<script>window.__pwned = 'script'</script>" in seen["alpha"]
    assert '<img src="x" onerror=' in seen["alpha"]
    assert "[click](javascript:" in seen["alpha"]
    assert seen["summary_heading"] == "Summary"
    assert seen["bold"] == "bold"
    assert seen["code"] == "<b>code</b>"
    assert seen["question"].startswith("<img src=y")
    assert again["pwned"] is None
    assert again["elements"] == 0
    assert "<script>" in again["alpha"]
    assert page_errors(page) == []


async def test_history_lists_opens_continues_and_deletes(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with running_service(tmp_path, None, env=FAST_MOCK) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            ask(page, "First question")
            page.wait_for_selector(DONE)
            page.click("#new-conversation")
            ask(page, "Second question")
            page.wait_for_selector(DONE)
            expect(page.locator("#conversations a")).to_have_count(2)
            seen["listed"] = sidebar(page)
            # Open the first: its turn, with every agent's answer.
            page.click("#conversations a >> text=First question")
            # (The thread held one turn before too: wait for the one asked for.)
            expect(page.locator(".turn .question")).to_have_text(["First question"])
            expect(page.locator(DONE)).to_have_count(1)
            seen["opened_question"] = page.locator(".turn .question").inner_text()
            seen["opened_states"] = agent_states(page)
            seen["opened_answers"] = page.locator(".turn .agent-text").all_inner_texts()
            # A follow-up continues it.
            ask(page, "And a follow-up?")
            expect(page.locator(DONE)).to_have_count(2)
            expect(page.locator("#conversations a").first).to_have_text("First question")
            seen["after_follow_up"] = sidebar(page)
            # Delete the second.
            page.click('#conversations li:has-text("Second question") button')
            expect(page.locator("#conversations a")).to_have_count(1)
            seen["after_delete"] = sidebar(page)
            seen["shot"] = screenshot(page, "history")
            return seen

        seen = await browser.run(run)
        stored = (await service.client.get("/api/conversations")).json()["conversations"]
        first = (await service.client.get(f"/api/conversations/{stored[0]['id']}")).json()
        await browser.close_page(page)
    assert seen["listed"] == ["Second question", "First question"]
    assert seen["opened_question"] == "First question"
    assert seen["opened_states"]
    assert set(seen["opened_states"].values()) == {"answered"}
    assert all(answer.strip() for answer in seen["opened_answers"])
    assert seen["after_follow_up"] == ["First question", "Second question"]
    assert seen["after_delete"] == ["First question"]
    assert [c["title"] for c in stored] == ["First question"]
    assert [m["question"] for m in first["messages"]] == ["First question", "And a follow-up?"]


async def test_a_reload_mid_run_resumes_it_from_the_stored_events(
    browser: BrowserThread, tmp_path: Path
) -> None:
    tokens = tuple(f"word{i} " for i in range(40))
    fake = FakeUpstream({"fake-summary": Behaviour(tokens=tokens, token_delay_s=0.05)})
    async with running_service(tmp_path, fake) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            ask(page, "A long answer, please")
            expect(page.locator(".summary-text")).to_contain_text("word3")
            page.reload()
            page.wait_for_selector(".turn")
            resumed_early = page.locator(".turn").count()
            page.wait_for_selector(DONE, timeout=20_000)
            return {
                "turns_after_reload": resumed_early,
                "turns": page.locator(".turn").count(),
                "summary": page.locator(".turn .summary-text").inner_text(),
                "states": agent_states(page),
            }

        seen = await browser.run(run)
        conversations = (await service.client.get("/api/conversations")).json()["conversations"]
        detail = (await service.client.get(f"/api/conversations/{conversations[0]['id']}")).json()
        summary_calls = len(fake.calls_for("fake-summary"))
        await browser.close_page(page)
    message = detail["messages"][0]
    assert message["status"] == "completed"
    assert seen["turns_after_reload"] == 1
    assert seen["turns"] == 1
    assert seen["summary"].strip() == "".join(tokens).strip() == message["summary"].strip()
    assert set(seen["states"].values()) == {"answered"}
    assert summary_calls == 1  # resumed, not asked again


async def alices_key(service: RunningService) -> tuple[str, str]:
    """A key for alice (acme, a user), made in the service's own store, and its id."""
    return await make_key(service, "web")


async def test_sign_in_with_a_key_and_a_401_brings_the_sign_in_back(
    browser: BrowserThread, tmp_path: Path
) -> None:
    env = {"AUTH": "keys", "AUTH_CACHE_S": "0", **FAST_MOCK}
    async with running_service(tmp_path, None, env=env) as service:
        key, key_id = await alices_key(service)
        page = await browser.new_page(service.url)

        def sign_in() -> dict[str, Any]:
            page.goto("/")
            page.wait_for_selector("#sign-in:not([hidden])")
            seen: dict[str, Any] = {"ask_hidden": page.is_hidden("#ask")}
            page.fill("#key", "fo_not-a-real-key")
            page.press("#key", "Enter")
            page.wait_for_selector("#sign-in-error:not([hidden])")
            seen["error"] = page.locator("#sign-in-error").inner_text()
            page.fill("#key", key)
            page.press("#key", "Enter")
            page.wait_for_selector("#ensemble option", state="attached")
            seen["signed_in"] = page.is_hidden("#sign-in") and page.is_visible("#ask")
            ask(page, "Who am I?")
            page.wait_for_selector(DONE)
            expect(page.locator("#conversations a")).to_have_count(1)
            seen["listed"] = sidebar(page)
            seen["stored_in"] = page.evaluate(
                "[sessionStorage.getItem('fanout.key') !== null, localStorage.length]"
            )
            seen["html"] = page.content()
            return seen

        seen = await browser.run(sign_in)
        store = service.resources.store
        assert store is not None
        await store.read(lambda c: revoke_key(c, key_id=key_id, tenant=None))

        def after_revoke() -> bool:
            ask(page, "Still there?")
            page.wait_for_selector("#sign-in:not([hidden])")
            return page.is_hidden("#ask")

        hidden_after_revoke = await browser.run(after_revoke)
        other_tab = await browser.new_page(service.url)

        def fresh_tab() -> bool:
            other_tab.goto("/")
            other_tab.wait_for_selector("#sign-in:not([hidden])")
            return other_tab.is_visible("#sign-in")

        fresh_tab_asks = await browser.run(fresh_tab)
        await browser.close_page(page)
        await browser.close_page(other_tab)
    assert seen["ask_hidden"]
    assert "key" in seen["error"].lower()
    assert seen["signed_in"]
    assert seen["listed"] == ["Who am I?"]
    assert seen["stored_in"] == [True, 0]  # this tab only, never localStorage
    assert key not in seen["html"]
    assert hidden_after_revoke
    assert fresh_tab_asks


async def test_phone_width_dark_mode_and_the_keyboard(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with running_service(tmp_path, None, env=FAST_MOCK) as service:
        phone = await open_page(browser, service, width=390, height=844, dark=True)

        def on_phone() -> dict[str, Any]:
            phone.focus("#question")
            phone.keyboard.type("Typed, then sent with Ctrl+Enter")
            phone.keyboard.press("Control+Enter")
            phone.wait_for_selector(DONE)
            return {
                "overflow": phone.evaluate(
                    "document.documentElement.scrollWidth - window.innerWidth"
                ),
                "background": phone.evaluate("getComputedStyle(document.body).backgroundColor"),
                "column_widths": phone.eval_on_selector_all(
                    ".agent", "nodes => nodes.map(n => n.getBoundingClientRect().width)"
                ),
                "column_rows": phone.eval_on_selector_all(
                    ".agent", "nodes => new Set(nodes.map(n => n.offsetTop)).size"
                ),
                "shot": screenshot(phone, "phone-dark"),
            }

        small = await browser.run(on_phone)
        desktop = await open_page(browser, service, width=1280, height=800)

        def on_desktop() -> dict[str, Any]:
            # Every control is reachable with Tab, and has a name a screen reader can say.
            names = []
            for _ in range(12):
                desktop.keyboard.press("Tab")
                names.append(
                    desktop.evaluate(
                        "(() => { const e = document.activeElement;"
                        " return e.id || e.getAttribute('aria-label') || e.textContent; })()"
                    )
                )
            return {
                "focused": names,
                "background": desktop.evaluate("getComputedStyle(document.body).backgroundColor"),
            }

        wide = await browser.run(on_desktop)

        def opened() -> int:
            desktop.click("#conversations a")
            desktop.wait_for_selector(DONE)
            screenshot(desktop, "desktop-light")
            # How many rows the agent columns take: side by side on a wide screen.
            rows: int = desktop.eval_on_selector_all(
                ".agent", "nodes => new Set(nodes.map(n => n.offsetTop)).size"
            )
            return rows

        rows = await browser.run(opened)
        await browser.close_page(phone)
        await browser.close_page(desktop)
    assert small["overflow"] <= 0
    assert small["background"] == "rgb(17, 20, 24)"
    assert all(width <= 390 for width in small["column_widths"])
    assert wide["background"] == "rgb(255, 255, 255)"
    assert rows == 1
    assert small["column_rows"] == len(small["column_widths"]) > 1
    for control in ("toggle-sidebar", "ensemble", "new-conversation", "question", "send"):
        assert control in wide["focused"], wide["focused"]
