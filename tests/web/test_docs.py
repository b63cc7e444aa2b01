"""The API reference at /docs, in a real Chromium: every operation of /openapi.json is on
the page, the event schemas with it, and nothing is fetched from anywhere but the server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.contract.conftest import operations, published
from tests.integration.harness import running_service
from tests.web.browser import BrowserThread, page_errors, screenshot


async def test_the_reference_shows_every_operation_from_the_server_alone(
    browser: BrowserThread, tmp_path: Path
) -> None:
    async with running_service(tmp_path, None, env={"AUTH": "keys"}) as service:
        document = await published(service.client)
        page = await browser.new_page(service.url)
        fetched: list[str] = []

        def read() -> dict[str, Any]:
            page.on("request", lambda request: fetched.append(request.url))
            page.goto("/docs")
            page.wait_for_selector("#loading", state="detached")
            return {
                "operations": page.eval_on_selector_all(
                    "section.operation",
                    "nodes => Object.fromEntries(nodes.map(n => [n.id, n.querySelector('h3')"
                    ".textContent]))",
                ),
                "toc": page.locator("#toc a").count(),
                "stream_event": page.locator("#schema-StreamEvent").inner_text(),
                "process": page.locator("#streams_process").inner_text(),
                "health": page.locator("#routes_healthz").inner_text(),
                "title": page.title(),
                "shot": screenshot(page, "docs"),
            }

        seen = await browser.run(read)
        errors = page_errors(page)
        await browser.close_page(page)
    expected = {
        operation["operationId"]: f"{method} {path}"
        for method, path, operation in operations(document)
    }
    assert seen["operations"] == expected
    assert seen["toc"] == len(expected)
    assert "AgentStartedEvent" in seen["stream_event"]
    assert "DoneEvent" in seen["stream_event"]
    assert "JSON StreamEvent" in seen["process"]
    assert "Needs a key or token" in seen["process"]
    assert "Open: no key needed." in seen["health"]
    assert seen["title"] == f"llm-fanout API {document['info']['version']}"
    assert errors == []
    assert fetched
    assert all(url.startswith(service.url) for url in fetched), fetched
