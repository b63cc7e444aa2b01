"""Evaluations on the page, in a real Chromium against the real server with the mock: an admin
starts one on the sample data set, sees its progress move as it runs (from its event stream)
and reads its report drawn from the report's JSON, the table and the plot of score against
cost; axe-core finds nothing serious there; a user who is not an admin never sees the entry,
and an admin signed in with a key does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.auth.test_access import make_key
from tests.integration.harness import RunningService, running_service
from tests.web.browser import BrowserThread, page_errors, screenshot
from tests.web.test_page import alices_key, open_page
from tests.web.test_page_access import serious_problems
from tests.web.test_page_costs import money

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "eval"
# Slow enough that the evaluation is seen running, a few seconds in all.
SAMPLE = {
    "MOCK_FIRST_TOKEN_MS": "150",
    "MOCK_TOKEN_MS": "1",
    "ENSEMBLE_FILE": str(EXAMPLES / "ensemble.toml"),
    "EVAL_DATASETS_DIR": str(EXAMPLES),
}
QUESTIONS = 6


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
async def test_an_admin_starts_an_evaluation_follows_it_and_reads_its_report(
    browser: BrowserThread, tmp_path: Path, dark: bool
) -> None:
    async with running_service(tmp_path, None, env=SAMPLE) as service:
        page = await open_page(browser, service, dark=dark)

        def run() -> dict[str, Any]:
            page.get_by_role("button", name="Evaluations").click()
            seen: dict[str, Any] = {
                "thread_hidden": page.is_hidden("#thread") and page.is_hidden("#ask"),
                "empty": page.locator("#no-evaluations").inner_text(),
            }
            problems = serious_problems(page, "evaluations, none yet")
            page.fill("#evaluation-dataset", "arithmetic")
            page.select_option("#evaluation-scorer", "numeric")
            page.fill("#evaluation-limit", str(QUESTIONS))
            page.get_by_role("button", name="Start").click()
            # Running: the bar moves between its ends, as the events say.
            page.wait_for_function(
                "() => { const bar = document.querySelector('#evaluation progress');"
                " return bar && bar.value > 0 && bar.value < bar.max; }"
            )
            seen["running"] = page.locator(".evaluation-state").inner_text()
            seen["listed_running"] = page.locator(
                "#evaluation-list tbody tr .evaluation-status"
            ).all_inner_texts()
            problems += serious_problems(page, "an evaluation running")
            page.wait_for_selector("#evaluation .report-table")
            seen["state"] = page.locator(".evaluation-state").inner_text()
            seen["bar"] = page.eval_on_selector(
                "#evaluation progress", "bar => [bar.value, bar.max]"
            )
            seen["table"] = page.eval_on_selector_all(
                ".report-table tbody tr",
                "rows => rows.map(r => [...r.cells].map(c => c.textContent))",
            )
            seen["verdicts"] = page.locator(".report-verdicts li").all_inner_texts()
            seen["points"] = page.eval_on_selector_all(
                ".report-plot .point",
                "points => points.map(p => [p.dataset.contestant,"
                " Number(p.querySelector('circle').getAttribute('cy'))])",
            )
            seen["listed"] = page.locator("#evaluation-list tbody tr").all_inner_texts()
            problems += serious_problems(page, "an evaluation's report")
            seen["problems"] = problems
            seen["shot"] = screenshot(page, f"evaluation-report{'-dark' if dark else ''}")
            page.get_by_role("button", name="Back to the conversation").click()
            seen["back"] = page.is_visible("#thread") and page.is_hidden("#evaluations")
            return seen

        seen = await browser.run(run)
        listed = (await service.client.get("/admin/evals")).json()["evaluations"]
        detail = (await service.client.get(f"/admin/evals/{listed[0]['id']}")).json()
        await browser.close_page(page)
    assert seen["thread_hidden"]
    assert seen["empty"] == "None yet."
    assert seen["running"].startswith("running: ")
    assert seen["listed_running"] == ["running"]
    assert seen["problems"] == [], json.dumps(seen["problems"], indent=1)
    report = detail["report"]
    total = detail["total"]
    assert (detail["status"], detail["questions"], report["questions"]) == (
        "completed",
        QUESTIONS,
        QUESTIONS,
    )
    assert seen["state"] == (
        f"completed: {total} of {total} results · {money(detail['spent_usd'])} spent"
    )
    assert seen["bar"] == [total, total]
    rows = report["rows"]
    assert [cells[0] for cells in seen["table"]] == [row["contestant"] for row in rows]
    for cells, row in zip(seen["table"], rows, strict=True):
        assert cells[1] == f"{row['score']:.2f}"
        assert cells[2] == f"[{row['low']:.2f}, {row['high']:.2f}]"
        assert cells[3] == f"{row['mean_latency_s']:.2f} s"
        assert cells[5] == f"{row['tokens']:,}"
        assert cells[6] == money(row["cost_usd"])
        per_right = row["cost_per_correct_usd"]
        assert cells[7] == (money(per_right) if per_right is not None else "?")
    (gain,) = report["gains"]
    assert seen["verdicts"][0].startswith(
        f"{gain['ensemble']} against its best member, {gain['best_member']}: "
    )
    # A point per contestant (each priced), higher the better its score.
    assert [name for name, _ in seen["points"]] == [row["contestant"] for row in rows]
    heights = dict(seen["points"])
    best = max(rows, key=lambda row: row["score"])
    worst = min(rows, key=lambda row: row["score"])
    if best["score"] > worst["score"]:
        assert heights[best["contestant"]] < heights[worst["contestant"]]
    assert seen["listed"][0].startswith("arithmetic (numeric)\tcompleted\t")
    assert seen["back"]
    assert seen["shot"].stat().st_size > 0
    assert page_errors(page) == []


async def signed_in(browser: BrowserThread, service: RunningService, key: str) -> tuple[Page, int]:
    """A page signed in with `key`, and the status of the page's question whether the caller
    may see evaluations."""
    page = await browser.new_page(service.url)

    def sign_in() -> int:
        page.goto("/")
        page.wait_for_selector("#sign-in:not([hidden])")
        with page.expect_response(lambda r: "/admin/evals" in r.url) as asked:
            page.fill("#key", key)
            page.press("#key", "Enter")
        status: int = asked.value.status
        page.wait_for_selector("#ensemble option", state="attached")
        return status

    return page, await browser.run(sign_in)


async def test_only_an_admin_sees_the_evaluations(browser: BrowserThread, tmp_path: Path) -> None:
    env = {**SAMPLE, "AUTH": "keys", "AUTH_CACHE_S": "0"}
    async with running_service(tmp_path, None, env=env) as service:
        user_key, _ = await alices_key(service)
        admin_key, _ = await make_key(service, "web", user="root", role="admin")
        user_page, user_asked = await signed_in(browser, service, user_key)
        admin_page, admin_asked = await signed_in(browser, service, admin_key)

        def entries() -> dict[str, Any]:
            admin_page.get_by_role("button", name="Evaluations").click()
            admin_page.wait_for_selector("#no-evaluations:not([hidden])")
            return {
                "asked": [user_asked, admin_asked],
                "user": user_page.locator("#open-evaluations").is_visible(),
                "admin": admin_page.locator("#open-evaluations").is_visible(),
                "admin_view": admin_page.is_visible("#evaluations"),
            }

        seen = await browser.run(entries)

        def sign_out() -> bool:
            admin_page.get_by_role("button", name="Sign out").click()
            admin_page.wait_for_selector("#sign-in:not([hidden])")
            return admin_page.is_hidden("#open-evaluations") and admin_page.is_hidden(
                "#evaluations"
            )

        seen["gone_after_sign_out"] = await browser.run(sign_out)
        for page in (user_page, admin_page):
            assert page_errors(page) == []
            await browser.close_page(page)
    assert seen == {
        "asked": [403, 200],
        "user": False,
        "admin": True,
        "admin_view": True,
        "gone_after_sign_out": True,
    }
